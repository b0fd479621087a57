package task

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
)

// TestAppendJSON holds AppendJSON to encoding/json's bytes (HTML left
// unescaped), over tasks of every shape and strings that need escaping.
func TestAppendJSON(t *testing.T) {
	done := time.Date(2030, time.March, 4, 5, 6, 7, 891011, time.FixedZone("IST", 19800))
	errText, message := "SOURCE_DOWN", "the source answered 503"
	tasks := []*Task{
		{},
		{
			RequestID: "0193b0c5-7d4e-7a8b-9c0d-1e2f3a4b5c6d", AccountID: "acct_1", Action: "verify_with_source",
			Type: "ind_pan", TaskID: "t", GroupID: "g", Data: json.RawMessage(`{"n":1}`), Status: InProgress,
			CreatedAt: time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC), Async: true,
		},
		{
			RequestID: "r", Data: json.RawMessage(" {\n \"a\" : [1, 2, {\"b\": \"<&>\"}] }\t"), Status: Failed,
			CreatedAt: done.Add(-time.Second), CompletedAt: &done, Result: json.RawMessage(`null`),
			Error: &errText, Message: &message, Attempts: 3, Rescues: 2,
		},
		{Data: json.RawMessage(`"x"`), Result: json.RawMessage(`[]`), Attempts: -1, Rescues: -7, Error: new(string)},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "Z", "0", " ", "~", "\"", "\\", "/", "<", ">", "&", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
		"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xed\xa0\x80"}
	random := func() string {
		var sb strings.Builder
		for range rng.IntN(8) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return sb.String()
	}
	for range 2000 {
		e, m := random(), random()
		tasks = append(tasks, &Task{
			RequestID: random(), AccountID: random(), Action: random(), Type: random(), TaskID: random(), GroupID: random(),
			Data: json.RawMessage(`{"s":` + string(mustJSON(t, random())) + `}`), Status: Status(random()),
			CreatedAt: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("", 60*rng.IntN(1440)-720*60)),
			Error:     &e, Message: &m, Async: rng.IntN(2) == 0, Attempts: rng.IntN(10), Rescues: rng.IntN(3),
		})
	}
	for _, tk := range tasks {
		want, err := jsonenc.Marshal(tk)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tk.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON(%+v)\n got %s\nwant %s", tk, got, want)
		}
	}
}

// TestAppendJSONRefuses refuses what encoding/json refuses: data that is
// not JSON, a time past year 9999.
func TestAppendJSONRefuses(t *testing.T) {
	for _, tk := range []*Task{
		{Data: json.RawMessage(`{"a":`)},
		{Data: json.RawMessage{}},
		{Result: json.RawMessage(`nope`)},
		{CreatedAt: time.Date(10000, time.January, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := jsonenc.Marshal(tk); err == nil {
			t.Fatalf("encoding/json encodes %+v", tk)
		}
		if b, err := tk.AppendJSON(nil); err == nil {
			t.Errorf("AppendJSON(%+v) = %s, want an error", tk, b)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := jsonenc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkAppendJSON encodes a task as created, with encoding/json (the
// baseline) and with AppendJSON.
func BenchmarkAppendJSON(b *testing.B) {
	tk := &Task{
		RequestID: "0193b0c5-7d4e-7a8b-9c0d-1e2f3a4b5c6d", AccountID: "acct_1", Action: "verify_with_source",
		Type: "ind_pan", TaskID: "task-123", GroupID: "group-7", Status: InProgress, CreatedAt: time.Now(), Async: true,
		Data: json.RawMessage(`{"id_number":"ABCDE1234F","name":"A Person","dob":"1990-01-01"}`),
	}
	b.Run("encoding-json", func(b *testing.B) { // jsonenc.Marshal
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonenc.Marshal(tk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tk.AppendJSON(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
