package redis

import (
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestFinishRefundPassesOver: the script that stores a task's end gives
// back only what counters it finds: one not stored is not made (it would
// live without the expiry a spend gives it), and a key that is not a
// counter, or a count that is not an integer, is passed over without
// failing the end, which the script has already written by then.
func TestFinishRefundPassesOver(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("refund"))
	now := time.Now().UTC()
	day := now.Truncate(24 * time.Hour)
	counter := func(id string) quota.Counter {
		return quota.Counter{AccountID: "acme", Quota: id, Start: day, End: day.AddDate(0, 0, 1), Limit: 10}
	}
	spent, missing, notHash, notInt := counter("spent"), counter("missing"), counter("not-hash"), counter("not-int")
	if res, err := s.QuotaSpend(ctx, quota.SpendParams{Counters: []quota.Counter{spent}}); err != nil || !res.Spent {
		t.Fatalf("QuotaSpend = %+v, %v", res, err)
	}
	if err := s.rdb.Set(ctx, s.quotaKey(notHash), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HSet(ctx, s.quotaKey(notInt), "used", "1.5").Err(); err != nil {
		t.Fatal(err)
	}
	tk := &task.Task{RequestID: "req-refund", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
		Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt, end.Error = task.Failed, &now, new("SOURCE_DOWN")
	if err := s.Finish(ctx, &end, nil, []quota.Counter{notHash, notInt, missing, spent}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if got, err := s.Get(ctx, "acme", tk.RequestID); err != nil || got.Status != task.Failed {
		t.Fatalf("Get after Finish = %+v, %v; want failed", got, err)
	}
	if n, err := s.rdb.Exists(ctx, s.quotaKey(missing)).Result(); err != nil || n != 0 {
		t.Errorf("the counter not stored exists after the refund: %d, %v", n, err)
	}
	if used, err := s.QuotaUsed(ctx, []quota.Counter{spent}); err != nil || used[0] != 0 {
		t.Errorf("the counter spent: used %v, %v after the refund; want 0", used, err)
	}
	if v, err := s.rdb.Get(ctx, s.quotaKey(notHash)).Result(); err != nil || v != "x" {
		t.Errorf("the key that is not a counter = %q, %v; want it untouched", v, err)
	}
	if v, err := s.rdb.HGet(ctx, s.quotaKey(notInt), "used").Result(); err != nil || v != "1.5" {
		t.Errorf("the count that is not an integer = %q, %v; want it untouched", v, err)
	}
}
