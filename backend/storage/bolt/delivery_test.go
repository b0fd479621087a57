package bolt

import (
	"errors"
	"path/filepath"
	"slices"
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
	end.Status, end.CompletedAt = task.Completed, &now
	var deliveries []*webhook.Delivery
	for i, url := range []string{"https://a.example", "https://b.example", "https://a.example"} {
		deliveries = append(deliveries, &webhook.Delivery{
			ID: string(rune('x' + i)), AccountID: "acme", RequestID: "req-1", URL: url,
			Status: webhook.Pending, CreatedAt: now, NextAt: now.Add(time.Duration(i)),
		})
	}
	if err := s.Finish(ctx, &end, deliveries); err != nil {
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
