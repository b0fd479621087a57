package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// viaJSON returns t as a JSON round trip gives it back.
func viaJSON(t *testing.T, at time.Time) time.Time {
	t.Helper()
	b, err := json.Marshal(at)
	if err != nil {
		t.Fatal(err)
	}
	var out time.Time
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTime tells whether got is want as JSON would give it back: the same
// instant in a zone of the same name and offset.
func sameTime(t *testing.T, got, want time.Time) bool {
	want = viaJSON(t, want)
	gotName, gotOffset := got.Zone()
	wantName, wantOffset := want.Zone()
	return got.Equal(want) && gotOffset == wantOffset && gotName == wantName && got.Location().String() == want.Location().String()
}

func TestDeliveryRecordRoundTrip(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+30*60)
	instants := []time.Time{
		{},
		time.Date(2030, time.March, 4, 5, 6, 7, 890123456, ist),
		time.Date(2030, time.March, 4, 5, 6, 7, 1, time.UTC),
		time.Date(2030, time.March, 4, 5, 6, 7, 1, time.FixedZone("GMT", 0)),
		time.Date(1969, time.December, 31, 23, 59, 59, 999999999, time.FixedZone("", -7*3600-1800)),
		time.Date(2030, time.March, 4, 5, 6, 7, 0, time.Local),
		time.Unix(1, 2),
	}
	for _, at := range instants {
		for _, body := range []json.RawMessage{nil, json.RawMessage(`{ "a" : [1, "<b>&amp;</b> é"] }`)} {
			rec := deliveryRecord{
				Delivery: webhook.Delivery{
					ID: "dlv-1", AccountID: "acme", RequestID: "req-1", URL: "https://hooks.example/é?x=1",
					Event: webhook.EventTask, Body: body, Status: webhook.Pending,
					Attempts: []webhook.Attempt{
						{At: at, StatusCode: 503, Error: "HTTP 503", DurationMS: 12, RetryAfterMS: 30_000},
						{At: at.Add(time.Second), DurationMS: -1},
					},
					CreatedAt: at, NextAt: at.Add(time.Minute),
				},
				RetryRequested: true,
				Claims:         7,
			}
			var got deliveryRecord
			if err := decodeFixed([]byte(rec.Delivery.ID), encodeFixed(&rec.Delivery), &got.Delivery); err != nil {
				t.Fatal(err)
			}
			if err := decodeState(encodeState(&rec), &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Delivery.Body, body) || (got.Delivery.Body == nil) != (body == nil) {
				t.Errorf("body = %q, want %q verbatim", got.Delivery.Body, body)
			}
			if !sameTime(t, got.Delivery.CreatedAt, at) || !sameTime(t, got.Delivery.NextAt, at.Add(time.Minute)) {
				t.Errorf("times %v and %v, want %v and %v as JSON gives them back", got.Delivery.CreatedAt, got.Delivery.NextAt, at, at.Add(time.Minute))
			}
			for i, a := range got.Delivery.Attempts {
				if !sameTime(t, a.At, rec.Delivery.Attempts[i].At) {
					t.Errorf("attempt %d at %v, want %v as JSON gives it back", i, a.At, rec.Delivery.Attempts[i].At)
				}
				got.Delivery.Attempts[i].At = rec.Delivery.Attempts[i].At
			}
			got.Delivery.Body, got.Delivery.CreatedAt, got.Delivery.NextAt = body, at, at.Add(time.Minute)
			want := rec
			want.Delivery.Claim = 7
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
			}
		}
	}

	var got deliveryRecord
	got.Delivery.Claim = 7
	if err := decodeLease(encodeLease(&deliveryRecord{Lease: 1 << 60, Claims: 300}), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Leased || got.Lease != 1<<60 || got.Claims != 300 || got.Delivery.Claim != 300 {
		t.Errorf("lease round trip = %+v, want leased until 1<<60 under claim 300", got)
	}
}

func TestDeliveryRecordCorrupt(t *testing.T) {
	rec := deliveryRecord{Delivery: webhook.Delivery{ID: "d", URL: "https://a.example", Status: webhook.Pending,
		Attempts: []webhook.Attempt{{Error: "x"}}}}
	state, fixed := encodeState(&rec), encodeFixed(&rec.Delivery)
	for n := range len(state) {
		if err := decodeState(state[:n], new(deliveryRecord)); !errors.Is(err, errCorrupt) {
			t.Errorf("state cut to %d of %d bytes: err = %v, want errCorrupt", n, len(state), err)
		}
	}
	if err := decodeState(append(state, 0), new(deliveryRecord)); !errors.Is(err, errCorrupt) {
		t.Errorf("state with a byte too many: err = %v, want errCorrupt", err)
	}
	// The body runs to the end of the value: only cuts before it show.
	for n := range len(fixed) {
		if err := decodeFixed([]byte("d"), fixed[:n], new(webhook.Delivery)); !errors.Is(err, errCorrupt) {
			t.Errorf("fixed part cut to %d of %d bytes: err = %v, want errCorrupt", n, len(fixed), err)
		}
	}
	if err := decodeLease([]byte{1, 2, 3, 4, 5, 6, 7, 8}, new(deliveryRecord)); !errors.Is(err, errCorrupt) {
		t.Errorf("lease without a claim: err = %v, want errCorrupt", err)
	}
}

// TestOpenMovesDeliveriesToFormat3 checks that a file of format 2, where
// a delivery was one JSON value and a due index listed the due ones, is
// moved to format 3 at its first open with every delivery as it was: due,
// leased under its claim with a retry requested, and ended with its
// attempts.
func TestOpenMovesDeliveriesToFormat3(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tasks.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.FixedZone("IST", 5*3600+30*60))
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "a", Type: "b", Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt = task.Completed, &now
	var deliveries []*webhook.Delivery
	for i, url := range []string{"https://a.example", "https://b.example", "https://a.example", "https://b.example"} {
		d := &webhook.Delivery{
			ID: string(rune('w' + i)), AccountID: "acme", RequestID: "req-1", URL: url, Event: webhook.EventTask,
			Body: json.RawMessage(`{"n":` + string(rune('0'+i)) + `}`), Status: webhook.Pending,
			CreatedAt: now, NextAt: now.Add(time.Duration(i) * time.Second),
		}
		if i == 3 {
			d.Body = nil
		}
		deliveries = append(deliveries, d)
	}
	if err := s.Finish(ctx, &end, deliveries, nil); err != nil {
		t.Fatal(err)
	}
	// w is leased with a retry requested, x ended after two claims, y and
	// z are due.
	claimed, err := s.ClaimDeliveries(ctx, now.Add(time.Second), 2, now.Add(time.Hour), nil)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("ClaimDeliveries = %v, %v", claimed, err)
	}
	if n, err := s.RescueDeliveries(ctx, now.Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("RescueDeliveries = %d, %v", n, err)
	}
	claimed, err = s.ClaimDeliveries(ctx, now.Add(time.Second), 2, now.Add(time.Hour), nil)
	if err != nil || len(claimed) != 2 || claimed[1].ID != "x" {
		t.Fatalf("ClaimDeliveries = %v, %v", claimed, err)
	}
	x := *claimed[1]
	x.Status = webhook.Delivered
	x.Attempts = []webhook.Attempt{{At: now, StatusCode: 503, Error: "HTTP 503", DurationMS: 3}, {At: now.Add(time.Second), StatusCode: 204, DurationMS: 4}}
	if err := s.RecordAttempt(ctx, &x, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RetryDelivery(ctx, "acme", "w", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := make(map[string]*webhook.Delivery)
	for _, d := range deliveries {
		if before[d.ID], err = s.GetDelivery(ctx, "acme", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The file as format 2 had it.
	RewriteFile(t, path, func(tx *bbolt.Tx) error {
		due, err := tx.CreateBucket(bucketDeliveriesDueV2)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketDeliveries).Cursor()
		for id, _ := c.First(); id != nil; id, _ = c.Next() {
			rec, err := getDelivery(tx, id)
			if err != nil {
				return err
			}
			if rec.Delivery.Status == webhook.Pending && !rec.Leased {
				if err := due.Put(timeKey(rec.Delivery.NextAt, id), []byte(rec.Delivery.URL)); err != nil {
					return err
				}
			}
			v, err := jsonenc.Marshal(&deliveryRecordJSON{Delivery: rec.Delivery, Leased: rec.Leased, Lease: rec.Lease,
				RetryRequested: rec.RetryRequested, Claims: rec.Claims})
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketDeliveries).Put(bytes.Clone(id), v); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketDeliveryStates, bucketDeliveryClaims} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(formatKey, formatV2)
	})

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.db.View(func(tx *bbolt.Tx) error {
		if got := tx.Bucket(bucketMeta).Get(formatKey); !bytes.Equal(got, formatVersion) {
			t.Errorf("format after the move = %q, want %q", got, formatVersion)
		}
		if tx.Bucket(bucketDeliveriesDueV2) != nil {
			t.Errorf("the due index of format 2 is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDueIndexes(t, s)
	for _, d := range deliveries {
		got, err := s.GetDelivery(ctx, "acme", d.ID)
		if err != nil {
			t.Fatal(err)
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(before[d.ID])
		if !bytes.Equal(gotJSON, wantJSON) || got.Claim != before[d.ID].Claim || (got.Body == nil) != (before[d.ID].Body == nil) {
			t.Errorf("delivery %s after the move:\n got %s (claim %d)\nwant %s (claim %d)", d.ID, gotJSON, got.Claim, wantJSON, before[d.ID].Claim)
		}
	}
	// w's attempt is recorded under its claim, and the retry requested
	// during it keeps it pending, due at the retry.
	w := *before["w"]
	w.Status, w.Attempts = webhook.Failed, []webhook.Attempt{{At: now, StatusCode: 500}}
	if err := s.RecordAttempt(ctx, &w, nil); err != nil {
		t.Fatalf("RecordAttempt of the leased delivery after the move: %v", err)
	}
	got, err := s.ClaimDeliveries(ctx, now.Add(time.Hour), 10, now.Add(2*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"y", "z", "w"}; !reflect.DeepEqual(ids(got), want) {
		t.Errorf("claimed %q after the move, want %q", ids(got), want)
	}
	if got[2].Claim != 3 || got[0].Claim != 1 {
		t.Errorf("claims after the move: w %d, y %d; want 3 and 1", got[2].Claim, got[0].Claim)
	}
	checkDueIndexes(t, s)
}

// TestOpenRefusesOtherFormat checks that a file of a format this program
// does not read is refused, naming both formats, and left as it was.
func TestOpenRefusesOtherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	RewriteFile(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(formatKey, []byte("taskgate-tasks-9"))
	})
	s, err = Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a file of format 9 succeeded")
	}
	if !strings.Contains(err.Error(), `"taskgate-tasks-9"`) || !strings.Contains(err.Error(), `"taskgate-tasks-3"`) {
		t.Errorf("Open: %v; want it to name both formats", err)
	}
	RewriteFile(t, path, func(tx *bbolt.Tx) error {
		if got := tx.Bucket(bucketMeta).Get(formatKey); string(got) != "taskgate-tasks-9" {
			t.Errorf("format after the refusal = %q", got)
		}
		return nil
	})
}
