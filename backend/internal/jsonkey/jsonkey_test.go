package jsonkey

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type hook struct {
	URL   string   `json:"url"`
	Types []string `json:"types,omitempty"`
}

type inner struct {
	Depth int `json:"depth"`
}

// self decodes itself: its content is not looked at.
type self struct{ Raw string }

func (s *self) UnmarshalJSON(b []byte) error { s.Raw = string(b); return nil }

type body struct {
	TaskID  *string         `json:"task_id"`
	Data    json.RawMessage `json:"data"`
	Hooks   []hook          `json:"hooks"`
	ByName  map[string]hook `json:"by_name"`
	Self    self            `json:"self"`
	At      time.Time       `json:"at"`
	Plain   string
	Skipped string `json:"-"`
	hidden  string
	inner
	*hook `json:"hook_ptr"`
}

type node struct {
	Name string `json:"name"`
	Kids []node `json:"kids"`
}

func TestCheck(t *testing.T) {
	s := For(reflect.TypeFor[body]())
	for _, tc := range []struct {
		name, body, key, field string
	}{
		{"exact keys", `{"task_id":"t","data":{"TASK_ID":1},"hooks":[{"url":"u","types":[]}],"Plain":"p","depth":1}`, "", ""},
		{"unknown keys are not its concern", `{"colour":"red","nested":{"Task_Id":1}}`, "", ""},
		{"upper case", `{"TASK_ID":"t"}`, "TASK_ID", "task_id"},
		{"after an exact one", `{"task_id":"t","Task_ID":"u"}`, "Task_ID", "task_id"},
		{"Unicode folding", `{"taſk_id":"t"}`, "taſk_id", "task_id"},
		{"Kelvin sign", `{"hoo\u212a_ptr":{}}`, "hoo\u212a_ptr", "hook_ptr"},
		{"escaped", `{"\u0054ASK_ID":"t"}`, "TASK_ID", "task_id"},
		{"escaped exact key", `{"task\u005fid":"t"}`, "", ""},
		{"in a slice of structs", `{"hooks":[{"url":"u"},{"URL":"u"}]}`, "URL", "url"},
		{"in a map of structs", `{"by_name":{"A":{"Url":"u"}}}`, "Url", "url"},
		{"map keys are data", `{"by_name":{"URL":{"url":"u"}}}`, "", ""},
		{"untagged field", `{"plain":"p"}`, "plain", "Plain"},
		{"embedded field", `{"DEPTH":1}`, "DEPTH", "depth"},
		{"a field named -", `{"skipped":1,"hidden":1}`, "", ""},
		{"raw data left alone", `{"data":{"Task_Id":1}}`, "", ""},
		{"a self-decoding type left alone", `{"self":{"RAW":1},"at":"2026-01-01T00:00:00Z"}`, "", ""},
		{"not an object", `["TASK_ID"]`, "", ""},
		{"a string ending in a backslash", `{"data":"x\\","TASK_ID":1}`, "TASK_ID", "task_id"},
		{"strings with braces", `{"data":"}{\"","hooks":[{"url":"]\\\"}"},{"URL":1}]}`, "URL", "url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Check([]byte(tc.body))
			if tc.key == "" {
				if err != nil {
					t.Fatalf("%s: %v, want none", tc.body, err)
				}
				return
			}
			var ce *CaseError
			if !errors.As(err, &ce) || ce.Key != tc.key || ce.Field != tc.field {
				t.Fatalf("%s: %v, want key %q for field %q", tc.body, err, tc.key, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
}

func TestCheckRecursiveTypes(t *testing.T) {
	s := For(reflect.TypeFor[node]())
	if err := s.Check([]byte(`{"name":"a","kids":[{"name":"b","kids":[{"name":"c"}]}]}`)); err != nil {
		t.Fatal(err)
	}
	var ce *CaseError
	if err := s.Check([]byte(`{"name":"a","kids":[{"name":"b","kids":[{"NAME":"c"}]}]}`)); !errors.As(err, &ce) || ce.Key != "NAME" {
		t.Fatalf("%v, want NAME refused three levels down", err)
	}
}

func TestNothingToCheck(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[string](), reflect.TypeFor[[]int](), reflect.TypeFor[json.RawMessage](), reflect.TypeFor[struct{}]()} {
		if s := For(typ); s != nil {
			t.Errorf("%v: a schema, want none", typ)
		}
	}
	var s *Schema
	if err := s.Check([]byte(`{"A":1}`)); err != nil {
		t.Errorf("nil schema: %v", err)
	}
}

// FuzzCheck feeds arbitrary bytes to Check. It must never panic; on valid
// JSON it must refuse every case variant of a top-level field, and what it
// refuses must be a case variant of the field it names.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"task_id":"t","data":{}}`, `{"TASK_ID":"t"}`, `{"hooks":[{"URL":1}]}`, `{"\u0054ASK_ID":1}`,
		`{"a":"\"","task_id":[{"}":"]"}]}`, `{`, `{"task_id"`, `[`, `"\`, `{"x":1,}`, `{"taſk_id":1}`,
	} {
		f.Add([]byte(s))
	}
	s := For(reflect.TypeFor[body]())
	top := []string{"task_id", "data", "hooks", "by_name", "self", "at", "Plain", "depth", "hook_ptr"}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := s.Check(b)
		var keys map[string]json.RawMessage
		if json.Unmarshal(b, &keys) != nil {
			return
		}
		variant := ""
		for k := range keys {
			for _, name := range top {
				if k != name && strings.EqualFold(k, name) {
					variant = k
				}
			}
		}
		var ce *CaseError
		isCase := errors.As(err, &ce)
		if variant != "" && !isCase {
			t.Fatalf("%s: key %q not refused", b, variant)
		}
		if isCase && (ce.Key == ce.Field || !strings.EqualFold(ce.Key, ce.Field)) {
			t.Fatalf("%s: %v names a key that is not a variant", b, err)
		}
	})
}

// BenchmarkCheck is the cost Check adds to decoding a task body: a small
// one and one with 2 KiB of data.
func BenchmarkCheck(b *testing.B) {
	type createBody struct {
		TaskID  *string         `json:"task_id"`
		GroupID *string         `json:"group_id"`
		Data    json.RawMessage `json:"data"`
	}
	s := For(reflect.TypeFor[createBody]())
	for _, bb := range []struct{ name, body string }{
		{"small", `{"task_id":"t1","group_id":"g1","data":{"id_number":"ABCDE1234F"}}`},
		{"2KiB", `{"task_id":"t1","group_id":"g1","data":{"id_number":"ABCDE1234F","note":"` + strings.Repeat("x", 2<<10) + `","list":[1,2,3,{"k":"v"}]}}`},
	} {
		body := []byte(bb.body)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Check(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
