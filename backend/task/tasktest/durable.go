package tasktest

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

func runDurableTasks(t *testing.T, open func(t *testing.T, dir string) task.Store) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)

	var pan, gst []*task.Task
	for i := range 5 {
		tk := newTask(accountA, typePAN, base.Add(time.Duration(i)*time.Minute))
		tk.GroupID = "durable"
		pan = append(pan, tk)
	}
	for i := range 2 {
		tk := newTask(accountA, typeGST, base.Add(time.Duration(5+i)*time.Minute))
		tk.GroupID = "durable"
		gst = append(gst, tk)
	}
	idem := &task.Idempotency{AccountID: accountA, Key: "durable-key", Fingerprint: "f1", RequestID: pan[0].RequestID, CreatedAt: base}
	if got, err := s.Create(ctx, pan[0], idem, base.Add(-24*time.Hour)); err != nil || got != nil {
		t.Fatalf("Create with idempotency = %v, %v; want nil, nil", got, err)
	}
	mustCreate(t, s, pan[1:]...)
	mustCreate(t, s, gst...)

	wantIDs(t, "first claim", claim(t, s, typePAN, 2, base.Add(time.Hour)), pan[0], pan[1])
	wantIDs(t, "first claim", claim(t, s, typeGST, 1, base.Add(time.Hour)), gst[0])
	done := finished(pan[0], task.Completed, base.Add(10*time.Minute))
	done.Attempts = 1
	mustFinish(t, s, done)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	sameTask(t, mustGet(t, s, pan[0]), done)
	for _, tk := range slices.Concat(pan[1:], gst) {
		want := clone(tk)
		if tk == pan[1] || tk == gst[0] {
			want.Attempts = 1
		}
		sameTask(t, mustGet(t, s, tk), want)
	}
	wantDepth(t, s, typePAN, 3)
	wantDepth(t, s, typeGST, 1)
	replay := newTask(accountA, typePAN, base.Add(time.Hour))
	got, err := s.Create(ctx, replay, &task.Idempotency{AccountID: accountA, Key: "durable-key", Fingerprint: "f2", RequestID: replay.RequestID, CreatedAt: base.Add(time.Hour)}, base)
	if err != nil {
		t.Fatalf("Create replay after reopen: %v", err)
	}
	sameIdempotency(t, got, idem)
	list, err := s.ListByGroup(ctx, accountA, "durable", 100)
	if err != nil {
		t.Fatalf("ListByGroup: %v", err)
	}
	wantIDs(t, "ListByGroup after reopen", list, gst[1], gst[0], pan[4], pan[3], pan[2], pan[1], pan[0])

	// A task created after the reopen goes to the tail, and rescued leases
	// regain their place at the head.
	late := newTask(accountA, typePAN, base.Add(time.Hour))
	mustCreate(t, s, late)
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 2 {
		t.Fatalf("Rescue after reopen = %d, %v; want 2 (the leases that survived)", n, err)
	}
	claimed := claim(t, s, typePAN, 10, base.Add(2*time.Hour))
	wantIDs(t, "claim after reopen", claimed, pan[1], pan[2], pan[3], pan[4], late)
	if claimed[0].Attempts != 2 {
		t.Errorf("rescued task has Attempts %d, want 2", claimed[0].Attempts)
	}
	wantIDs(t, "claim after reopen", claim(t, s, typeGST, 10, base.Add(2*time.Hour)), gst[0], gst[1])
	if n, err := s.Purge(ctx, base.Add(time.Hour), base.Add(time.Hour), 100); err != nil || n != 1 {
		t.Fatalf("Purge after reopen = %d, %v; want 1", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	if _, err := s.Get(ctx, accountA, pan[0].RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get of a purged task after reopen: err = %v, want ErrNotFound", err)
	}
	wantDepth(t, s, typePAN, 0)
	wantDepth(t, s, typeGST, 0)
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 7 {
		t.Fatalf("Rescue after second reopen = %d, %v; want 7", n, err)
	}
	wantIDs(t, "claim after second reopen", claim(t, s, typePAN, 10, base.Add(3*time.Hour)), pan[1], pan[2], pan[3], pan[4], late)
}

// runDurableDeliveries checks that deliveries survive a reopen: pending,
// leased (still leased until rescued), ended, and a retry asked for while
// leased.
func runDurableDeliveries(t *testing.T, open func(t *testing.T, dir string) Store) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	tk := claimed(t, s, accountA, base)
	created := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	ok, leased := newDelivery(tk, hookA, created(1), base), newDelivery(tk, hookB, created(2), base.Add(time.Second))
	notDue, busy := newDelivery(tk, hookC, created(3), base.Add(time.Hour)), newDelivery(tk, hookA, created(4), base.Add(2*time.Second))
	end := finished(tk, task.Completed, base)
	end.Attempts = 1
	mustFinish(t, s, end, ok, leased, notDue, busy)
	wantDeliveries(t, "claim", claimDeliveries(t, s, base.Add(2*time.Second), 10, base.Add(5*time.Minute), nil), ok, leased, busy)
	delivered := attempted(ok, webhook.Delivered, base, webhook.Attempt{At: base.Add(time.Second), StatusCode: 204, DurationMS: 41})
	mustRecord(t, s, delivered)
	retryAt := base.Add(3 * time.Second)
	if _, err := s.RetryDelivery(ctx, accountA, busy.ID, retryAt); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	sameTask(t, mustGet(t, s, tk), end)
	sameDelivery(t, mustGetDelivery(t, s, ok), delivered)
	sameDelivery(t, mustGetDelivery(t, s, leased), leased)
	sameDelivery(t, mustGetDelivery(t, s, notDue), notDue)
	busyWant := cloneDelivery(busy)
	busyWant.NextAt = retryAt
	sameDelivery(t, mustGetDelivery(t, s, busy), busyWant)
	wantCount(t, s, webhook.Pending, 3)
	wantCount(t, s, webhook.Delivered, 1)
	list, err := s.ListDeliveries(ctx, accountA, webhook.Filter{RequestID: tk.RequestID}, 10)
	if err != nil {
		t.Fatalf("ListDeliveries: %v", err)
	}
	wantDeliveries(t, "ListDeliveries after reopen", list, busy, notDue, leased, ok)

	// The leases survived: only what was due and free is claimed.
	wantDeliveries(t, "claim after reopen", claimDeliveries(t, s, base.Add(2*time.Hour), 10, base.Add(3*time.Hour), nil), notDue)
	// So did the retry asked for while attempted.
	failedAttempt := webhook.Attempt{At: base.Add(4 * time.Second), StatusCode: 500, Error: "500 Internal Server Error", DurationMS: 9}
	mustRecord(t, s, attempted(busy, webhook.Failed, base, failedAttempt))
	busyWant.Attempts = append(busyWant.Attempts, failedAttempt)
	sameDelivery(t, mustGetDelivery(t, s, busy), busyWant)
	wantDeliveries(t, "claim the retried", claimDeliveries(t, s, retryAt, 10, base.Add(3*time.Hour), nil), busy)
	if n, err := s.RescueDeliveries(ctx, base.Add(3*time.Hour)); err != nil || n != 1 {
		t.Fatalf("RescueDeliveries after reopen = %d, %v; want 1 (the lease that survived)", n, err)
	}
	wantDeliveries(t, "claim the rescued", claimDeliveries(t, s, base.Add(2*time.Hour), 10, base.Add(3*time.Hour), nil), leased)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	wantCount(t, s, webhook.Pending, 3)
	wantCount(t, s, webhook.Delivered, 1)
	if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != 3 {
		t.Fatalf("RescueDeliveries after second reopen = %d, %v; want 3", n, err)
	}
	wantDeliveries(t, "claim after second reopen", claimDeliveries(t, s, base.Add(2*time.Hour), 10, farFuture, nil), leased, busy, notDue)

	runDurableBacklog(t, open)
}

// runDurableBacklog checks that the order in which a URL's due deliveries
// are claimed, and the claim's passing over a URL turned down, survive
// reopens after claims, retries, records and rescues moved them.
func runDurableBacklog(t *testing.T, open func(t *testing.T, dir string) Store) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	slow := storeBacklog(t, s, hookA, 300, base)
	tk := claimed(t, s, accountB, base)
	other := newDelivery(tk, hookB, base, base.Add(time.Second))
	mustFinish(t, s, finished(tk, task.Completed, base), other)
	now := base.Add(time.Minute)
	lease := base.Add(time.Hour)
	wantDeliveries(t, "claim", claimDeliveries(t, s, now, 2, lease, nil), slow[0], slow[1])
	// slow[200] falls due first; slow[1] is retried after the backlog,
	// just before other.
	if _, err := s.RetryDelivery(ctx, accountA, slow[200].ID, base.Add(-time.Second)); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	mustRecord(t, s, attempted(slow[1], webhook.Pending, base.Add(time.Second-1), webhook.Attempt{At: base, StatusCode: 503}))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	asked := make(map[string]int)
	atCap := func(url string) bool {
		asked[url]++
		return url == hookA
	}
	wantDeliveries(t, "claim past the backlog after reopen", claimDeliveries(t, s, now, 10, lease, atCap), other)
	if want := map[string]int{hookA: 1, hookB: 1}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}
	wantDeliveries(t, "claim the backlog's head after reopen", claimDeliveries(t, s, now, 3, lease, nil), slow[200], slow[2], slow[3])
	if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != 5 {
		t.Fatalf("RescueDeliveries = %d, %v; want 5", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	want := []*webhook.Delivery{slow[200], slow[0]}
	want = append(want, slow[2:200]...)
	want = append(want, slow[201:]...)
	want = append(want, slow[1], other)
	wantDeliveries(t, "claim everything after the second reopen", claimDeliveries(t, s, now, 1000, lease, nil), want...)
}
