package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// TestClaimDeliveriesRunAgain checks that when the writer runs a claim's
// transaction again, because another change of its group failed, skip is
// not asked again about the deliveries it answered for.
func TestClaimDeliveriesRunAgain(t *testing.T) {
	ctx := t.Context()
	s, err := Open(filepath.Join(t.TempDir(), "tasks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "a", Type: "b", Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, tk.TypeName(), 1, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt, end.Attempts = task.Completed, &now, 1
	var deliveries []*webhook.Delivery
	for i, url := range []string{"https://a.example", "https://b.example", "https://a.example"} {
		deliveries = append(deliveries, &webhook.Delivery{
			ID: string(rune('x' + i)), AccountID: "acme", RequestID: "req-1", URL: url,
			Status: webhook.Pending, CreatedAt: now, NextAt: now.Add(time.Duration(i)),
		})
	}
	if err := s.Finish(ctx, &end, deliveries, nil); err != nil {
		t.Fatal(err)
	}

	var asked []string
	// One delivery per URL.
	taken := make(map[string]bool)
	c := &deliveryClaim{due: sortable(now.Add(time.Second)), lease: sortable(now.Add(time.Minute)), n: 10, skipped: make(map[string]bool)}
	c.skip = func(url string) bool {
		asked = append(asked, url)
		if taken[url] {
			return true
		}
		taken[url] = true
		return false
	}
	errFails := errors.New("fails")
	claimed, failed := make(chan error, 1), make(chan error, 1)
	s.commit([]write{{fn: c.run, done: claimed}, {fn: func(*bbolt.Tx) error { return errFails }, done: failed}})
	if err := <-claimed; err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := <-failed; !errors.Is(err, errFails) {
		t.Fatalf("failing change: err = %v, want its own error", err)
	}
	if want := []string{"https://a.example", "https://b.example", "https://a.example"}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q (once each)", asked, want)
	}
	var ids []string
	for _, d := range c.out {
		ids = append(ids, d.ID)
	}
	if want := []string{"x", "y"}; !slices.Equal(ids, want) {
		t.Errorf("claimed %q, want %q", ids, want)
	}
	left, err := s.ClaimDeliveries(ctx, now.Add(time.Second), 10, now.Add(time.Minute), nil)
	if err != nil || len(left) != 1 || left[0].ID != "z" {
		t.Errorf("ClaimDeliveries after = %v, %v; want z alone", left, err)
	}
}

// checkDueIndexes checks that the per-URL due indexes hold the due
// deliveries, the pending ones no worker holds: each under its URL at its
// NextAt, and each URL's earliest as its head; and that the leased ones
// are in both lease buckets.
func checkDueIndexes(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		wantByURL := make(map[string]bool)
		wantHeads := make(map[string]string)
		leased := 0
		c := tx.Bucket(bucketDeliveries).Cursor()
		for id, _ := c.First(); id != nil; id, _ = c.Next() {
			rec, err := getDelivery(tx, id)
			if err != nil {
				return err
			}
			if rec.Leased {
				leased++
				if tx.Bucket(bucketDeliveryLeases).Get(leaseKey(rec.Lease, id)) == nil {
					t.Errorf("delivery %s is leased, but not in %s", id, bucketDeliveryLeases)
				}
			}
			if rec.Delivery.Status != webhook.Pending || rec.Leased {
				continue
			}
			url, k := rec.Delivery.URL, string(timeKey(rec.Delivery.NextAt, id))
			prefix, err := urlDuePrefix(tx, []byte(url), false)
			if err != nil {
				return err
			}
			wantByURL[string(prefix)+k] = true
			if head, ok := wantHeads[url]; !ok || k < head {
				wantHeads[url] = k
			}
		}
		if n := tx.Bucket(bucketDeliveryLeases).Stats().KeyN; n != leased {
			t.Errorf("%s has %d keys, want %d", bucketDeliveryLeases, n, leased)
		}
		n := 0
		c = tx.Bucket(bucketDeliveriesDueByURL).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if !wantByURL[string(k)] {
				t.Errorf("%s has %q, which is not due", bucketDeliveriesDueByURL, k)
			}
			n++
		}
		if n != len(wantByURL) {
			t.Errorf("%s has %d keys, want %d", bucketDeliveriesDueByURL, n, len(wantByURL))
		}
		n = 0
		c = tx.Bucket(bucketDeliveriesDueHeads).Cursor()
		for k, url := c.First(); k != nil; k, url = c.Next() {
			if want := wantHeads[string(url)]; string(k) != want {
				t.Errorf("%s has %q for %s, want %q", bucketDeliveriesDueHeads, k, url, want)
			}
			n++
		}
		if n != len(wantHeads) {
			t.Errorf("%s has %d keys, want %d (one per URL)", bucketDeliveriesDueHeads, n, len(wantHeads))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDueIndexesBuilt checks that Open builds the per-URL due indexes of
// a file that has none, and that they stay in step with the deliveries
// through claims, attempts, retries and rescues.
func TestDueIndexesBuilt(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tasks.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "a", Type: "b", Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt = task.Completed, &now
	urls := []string{"https://a.example", "https://b.example", "https://a.example/x", "https://c.example"}
	var deliveries []*webhook.Delivery
	for i := range 40 {
		deliveries = append(deliveries, &webhook.Delivery{
			ID: fmt.Sprintf("d%03d", i), AccountID: "acme", RequestID: "req-1", URL: urls[i*7%len(urls)],
			Status: webhook.Pending, CreatedAt: now, NextAt: now.Add(time.Duration(i*13%40) * time.Millisecond),
		})
	}
	if err := s.Finish(ctx, &end, deliveries, nil); err != nil {
		t.Fatal(err)
	}
	checkDueIndexes(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The file without its per-URL indexes: Open builds them from the
	// deliveries.
	RewriteFile(t, path, func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketDeliveriesDueByURL); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketDeliveriesDueHeads)
	})

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	checkDueIndexes(t, s)
	asked := make(map[string]int)
	skipA := func(url string) bool {
		asked[url]++
		return url == urls[0]
	}
	got, err := s.ClaimDeliveries(ctx, now.Add(time.Second), 5, now.Add(time.Minute), skipA)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d037", "d034", "d031", "d025", "d022"}; !slices.Equal(ids(got), want) {
		t.Errorf("claimed %q, want %q", ids(got), want)
	}
	if asked[urls[0]] != 1 {
		t.Errorf("skip was asked %d times about %s, want once", asked[urls[0]], urls[0])
	}
	checkDueIndexes(t, s)
	// d004 becomes the head of its URL; d037 is retried during its
	// attempt, d034 retried later, d031 delivered.
	if _, err := s.RetryDelivery(ctx, "acme", "d004", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RetryDelivery(ctx, "acme", "d037", now.Add(-time.Second+time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	record := func(d *webhook.Delivery, status webhook.Status, next time.Time) {
		t.Helper()
		rec := *d
		rec.Status, rec.NextAt = status, next
		if err := s.RecordAttempt(ctx, &rec, nil); err != nil {
			t.Fatal(err)
		}
	}
	record(got[0], webhook.Failed, time.Time{})
	record(got[1], webhook.Pending, now.Add(time.Hour))
	record(got[2], webhook.Delivered, time.Time{})
	checkDueIndexes(t, s)
	if n, err := s.RescueDeliveries(ctx, now.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("RescueDeliveries = %d, %v; want 2", n, err)
	}
	checkDueIndexes(t, s)
	got, err = s.ClaimDeliveries(ctx, now.Add(time.Second), 5, now.Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d004", "d037", "d000", "d028", "d025"}; !slices.Equal(ids(got), want) {
		t.Errorf("claimed %q, want %q", ids(got), want)
	}
	checkDueIndexes(t, s)
}

func ids(ds []*webhook.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// TestDeliveriesLongURL checks that a delivery to a URL longer than a
// bbolt key is stored, passed over and claimed like any other.
func TestDeliveriesLongURL(t *testing.T) {
	ctx := t.Context()
	s, err := Open(filepath.Join(t.TempDir(), "tasks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "a", Type: "b", Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt = task.Completed, &now
	long := "https://hooks.example.com/?token=" + strings.Repeat("x", 40_000)
	var deliveries []*webhook.Delivery
	for i, url := range []string{long, "https://b.example", long} {
		deliveries = append(deliveries, &webhook.Delivery{
			ID: fmt.Sprintf("d%d", i), AccountID: "acme", RequestID: "req-1", URL: url,
			Status: webhook.Pending, CreatedAt: now, NextAt: now.Add(time.Duration(i)),
		})
	}
	if err := s.Finish(ctx, &end, deliveries, nil); err != nil {
		t.Fatal(err)
	}
	var asked []string
	skipLong := func(url string) bool {
		asked = append(asked, url)
		return url == long
	}
	got, err := s.ClaimDeliveries(ctx, now.Add(time.Second), 10, now.Add(time.Minute), skipLong)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d1"}; !slices.Equal(ids(got), want) {
		t.Errorf("claimed %q, want %q", ids(got), want)
	}
	if want := []string{long, "https://b.example"}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %d URLs, want %d", len(asked), len(want))
	}
	got, err = s.ClaimDeliveries(ctx, now.Add(time.Second), 10, now.Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d0", "d2"}; !slices.Equal(ids(got), want) || got[0].URL != long {
		t.Errorf("claimed %q, want %q to the long URL", ids(got), want)
	}
	checkDueIndexes(t, s)
}
