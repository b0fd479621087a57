package tasktest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

func testClaim(t *testing.T, s task.Store) {
	ctx := t.Context()
	lease := base.Add(time.Hour)
	var pan []*task.Task
	for i := range 4 {
		pan = append(pan, newTask(accountA, typePAN, base.Add(time.Duration(i)*time.Second)))
	}
	gst := []*task.Task{newTask(accountB, typeGST, base), newTask(accountA, typeGST, base)}
	mustCreate(t, s, pan[0], gst[0], pan[1], pan[2], gst[1], pan[3])

	got := claim(t, s, typePAN, 2, lease)
	wantIDs(t, "claim 2", got, pan[0], pan[1])
	for i, tk := range got {
		want := clone(pan[i])
		want.Attempts = 1
		sameTask(t, tk, want)
		sameTask(t, mustGet(t, s, tk), want)
	}
	wantIDs(t, "claim 1", claim(t, s, typePAN, 1, lease), pan[2])
	wantIDs(t, "claim other type", claim(t, s, typeGST, 10, lease), gst[0], gst[1])
	wantIDs(t, "claim rest", claim(t, s, typePAN, 10, lease), pan[3])
	wantIDs(t, "claim empty queue", claim(t, s, typePAN, 10, lease))
	wantIDs(t, "claim unknown type", claim(t, s, "verify_with_source/unknown", 10, lease))

	last := newTask(accountA, typePAN, base)
	mustCreate(t, s, last)
	wantIDs(t, "claim 0", claim(t, s, typePAN, 0, lease))
	wantDepth(t, s, typePAN, 1)
	if _, err := s.Claim(ctx, typePAN, 1, lease); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	wantDepth(t, s, typePAN, 0)
}

func testFinish(t *testing.T, s task.Store) {
	ctx := t.Context()
	done, failed := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base)
	mustCreate(t, s, done, failed)
	wantIDs(t, "claim", claim(t, s, typePAN, 2, base.Add(time.Hour)), done, failed)

	end := finished(done, task.Completed, base.Add(time.Minute))
	end.Attempts = 1
	mustFinish(t, s, end)
	sameTask(t, mustGet(t, s, done), end)

	again := finished(done, task.Failed, base.Add(2*time.Minute))
	if err := s.Finish(ctx, again, nil, nil); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("second Finish: err = %v, want ErrNotFound", err)
	}
	sameTask(t, mustGet(t, s, done), end)

	fail := finished(failed, task.Failed, base.Add(3*time.Minute))
	fail.Attempts = 1
	fail.Result = json.RawMessage(`{"source_output":{"status":"source_down"}}`)
	fail.Error, fail.Message = ptr("SOURCE_DOWN"), ptr("the source did not answer")
	mustFinish(t, s, fail)
	sameTask(t, mustGet(t, s, failed), fail)

	if err := s.Finish(ctx, finished(newTask(accountA, typePAN, base), task.Completed, base), nil, nil); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Finish of an unknown task: err = %v, want ErrNotFound", err)
	}

	// The leases ended with Finish: nothing comes back.
	if err := s.Release(ctx, []*task.Task{end, fail}); err != nil {
		t.Fatalf("Release of finished tasks: %v", err)
	}
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 0 {
		t.Errorf("Rescue after Finish = %d, %v; want 0", n, err)
	}
	wantDepth(t, s, typePAN, 0)
	wantIDs(t, "claim after Finish", claim(t, s, typePAN, 10, base.Add(time.Hour)))
	sameTask(t, mustGet(t, s, done), end)
	sameTask(t, mustGet(t, s, failed), fail)
}

// testFinishRefunds: the end of a task gives back the quota units it is
// given in its own transaction, once per task: not when the end is
// refused, and not again when QuotaRefund gives the same task's units
// back (or Finish is tried again); a counter not stored stays so.
func testFinishRefunds(t *testing.T, s task.Store) {
	ctx := t.Context()
	qs := s.(quota.Store)
	day := base.UTC().Truncate(24 * time.Hour)
	month := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
	counters := []quota.Counter{
		{AccountID: accountA, Quota: "daily", Start: day, End: day.AddDate(0, 0, 1), Limit: 10},
		{AccountID: accountA, Quota: "monthly", Start: month, End: month.AddDate(0, 1, 0), Limit: 10},
	}
	gone := quota.Counter{AccountID: accountA, Quota: "gone", Start: day, End: day.AddDate(0, 0, 1), Limit: 10}
	for range 2 {
		if res, err := qs.QuotaSpend(ctx, quota.SpendParams{Counters: counters}); err != nil || !res.Spent {
			t.Fatalf("QuotaSpend = %+v, %v", res, err)
		}
	}
	wantUsed := func(what string, want ...int64) {
		t.Helper()
		got, err := qs.QuotaUsed(ctx, append(slices.Clone(counters), gone))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: used %v, %v; want %v", what, got, err, want)
		}
	}
	refund := append(slices.Clone(counters), gone)

	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	claim(t, s, typePAN, 1, base.Add(time.Hour))
	end := finished(tk, task.Failed, base.Add(time.Minute))
	end.Error, end.Message = ptr("SOURCE_DOWN"), ptr("the source did not answer")

	stale := clone(end)
	stale.Attempts = 2
	if err := s.Finish(ctx, stale, nil, refund); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("Finish under a claim not the task's: err = %v, want ErrNotFound", err)
	}
	wantUsed("after a refused end", 2, 2, 0)

	// With deliveries, which the store takes before the counters.
	end.Attempts = 1
	ds := []*webhook.Delivery{newDelivery(end, "https://a.example/hooks", base, base), newDelivery(end, "https://b.example/hooks", base, base)}
	if err := s.Finish(ctx, end, ds, refund); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	wantUsed("after the end", 1, 1, 0)
	ws := s.(webhook.Store)
	for _, d := range ds {
		sameDelivery(t, mustGetDelivery(t, ws, d), d)
	}
	if err := s.Finish(ctx, end, nil, refund); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("second Finish: err = %v, want ErrNotFound", err)
	}
	if again, err := qs.QuotaRefund(ctx, quota.RefundParams{Counters: counters, RequestID: tk.RequestID}); err != nil || again {
		t.Errorf("QuotaRefund of the task after its end = %v, %v; want false (given back already)", again, err)
	}
	wantUsed("after the task's units were given back again", 1, 1, 0)

	// Counters of another account are not the task's: passed over.
	other := newTask(accountB, typePAN, base)
	mustCreate(t, s, other)
	claim(t, s, typePAN, 1, base.Add(time.Hour))
	otherEnd := finished(other, task.Failed, base.Add(time.Minute))
	otherEnd.Attempts, otherEnd.Error = 1, ptr("SOURCE_DOWN")
	if err := s.Finish(ctx, otherEnd, nil, counters); err != nil {
		t.Fatalf("Finish with another account's counters: %v", err)
	}
	wantUsed("after a task of another account ended", 1, 1, 0)

	// Another task's refund still gives its unit back.
	if ok, err := qs.QuotaRefund(ctx, quota.RefundParams{Counters: counters, RequestID: "another"}); err != nil || !ok {
		t.Errorf("QuotaRefund of another task = %v, %v; want true", ok, err)
	}
	wantUsed("after another task's refund", 0, 0, 0)
	sameTask(t, mustGet(t, s, tk), end)
}

func testFinishNotTerminal(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	claim(t, s, typePAN, 1, base.Add(time.Hour))
	want := clone(tk)
	want.Attempts = 1

	notTerminal := finished(tk, task.InProgress, base.Add(time.Minute))
	if err := s.Finish(ctx, notTerminal, nil, nil); err == nil {
		t.Errorf("Finish with status in_progress succeeded, want an error")
	}
	noTime := finished(tk, task.Completed, base)
	noTime.CompletedAt = nil
	if err := s.Finish(ctx, noTime, nil, nil); err == nil {
		t.Errorf("Finish without a completion time succeeded, want an error")
	}
	sameTask(t, mustGet(t, s, tk), want)
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 1 {
		t.Errorf("Rescue = %d, %v; want 1 (the lease is untouched)", n, err)
	}
}

// testFinishRescued finishes a task whose worker was presumed dead: it
// leaves the queue instead of running again.
func testFinishRescued(t *testing.T, s task.Store) {
	ctx := t.Context()
	slow, next := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base)
	mustCreate(t, s, slow, next)
	claim(t, s, typePAN, 1, base.Add(time.Minute))
	if n, err := s.Rescue(ctx, base.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1", n, err)
	}
	wantDepth(t, s, typePAN, 2)

	end := finished(slow, task.Completed, base.Add(3*time.Minute))
	end.Attempts = 1
	mustFinish(t, s, end)
	sameTask(t, mustGet(t, s, slow), end)
	wantDepth(t, s, typePAN, 1)
	wantIDs(t, "claim after finishing a rescued task", claim(t, s, typePAN, 10, base.Add(time.Hour)), next)
}

func testRelease(t *testing.T, s task.Store) {
	ctx := t.Context()
	lease := base.Add(time.Hour)
	a, b, c := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base), newTask(accountA, typePAN, base)
	mustCreate(t, s, a, b, c)
	first := claim(t, s, typePAN, 2, lease)
	wantIDs(t, "claim", first, a, b)
	if err := s.Release(ctx, []*task.Task{first[1], first[0]}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantDepth(t, s, typePAN, 3)
	got := claim(t, s, typePAN, 3, lease)
	wantIDs(t, "claim after Release", got, a, b, c)
	for i, attempts := range []int{2, 2, 1} {
		if got[i].Attempts != attempts {
			t.Errorf("%s has Attempts %d, want %d", got[i].RequestID, got[i].Attempts, attempts)
		}
	}

	// Tasks that are not leased change nothing; releasing twice queues
	// once.
	d := newTask(accountA, typePAN, base)
	mustCreate(t, s, d)
	unknown := newTask(accountA, typePAN, base)
	if err := s.Release(ctx, []*task.Task{unknown, d, got[1], got[1]}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := s.Release(ctx, []*task.Task{got[1]}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := s.Release(ctx, nil); err != nil {
		t.Fatalf("Release of nothing: %v", err)
	}
	wantDepth(t, s, typePAN, 2)
	wantIDs(t, "claim after Release", claim(t, s, typePAN, 10, lease), b, d)
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 4 {
		t.Errorf("Rescue = %d, %v; want 4", n, err)
	}
}

// testReleaseStaleClaim releases a task under a claim that has ended: a
// worker cut off from the store past its lease comes back after another
// node rescued and claimed the task. Only the latest claim releases it.
func testReleaseStaleClaim(t *testing.T, s task.Store) {
	ctx := t.Context()
	a, b := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base)
	mustCreate(t, s, a, b)
	stale := claim(t, s, typePAN, 1, base.Add(time.Minute))
	wantIDs(t, "first claim", stale, a)
	if n, err := s.Rescue(ctx, base.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1", n, err)
	}
	latest := claim(t, s, typePAN, 2, base.Add(time.Hour))
	wantIDs(t, "claim after Rescue", latest, a, b)
	if len(stale) != 1 || len(latest) != 2 {
		t.FailNow()
	}
	if stale[0].Attempts != 1 || latest[0].Attempts != 2 {
		t.Fatalf("claims of %s returned Attempts %d then %d, want 1 then 2", a.RequestID, stale[0].Attempts, latest[0].Attempts)
	}

	if err := s.Release(ctx, stale); err != nil {
		t.Fatalf("Release of the first claim: %v", err)
	}
	wantDepth(t, s, typePAN, 0)
	wantIDs(t, "claim after Release of the first claim", claim(t, s, typePAN, 10, base.Add(time.Hour)))

	if err := s.Release(ctx, latest); err != nil {
		t.Fatalf("Release of the second claim: %v", err)
	}
	wantDepth(t, s, typePAN, 2)
	got := claim(t, s, typePAN, 10, base.Add(time.Hour))
	wantIDs(t, "claim after Release of the second claim", got, a, b)
	for i, attempts := range []int{3, 2} {
		if i < len(got) && got[i].Attempts != attempts {
			t.Errorf("%s has Attempts %d, want %d", got[i].RequestID, got[i].Attempts, attempts)
		}
	}
}

func testRescue(t *testing.T, s task.Store) {
	ctx := t.Context()
	a, b, c := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base), newTask(accountA, typeGST, base)
	mustCreate(t, s, a, b, c)
	claim(t, s, typePAN, 1, base.Add(time.Minute))
	claim(t, s, typePAN, 1, base.Add(2*time.Minute))
	claim(t, s, typeGST, 1, base.Add(3*time.Minute))
	wantDepth(t, s, typePAN, 0)

	rescue := func(before time.Time, want int) {
		t.Helper()
		if n, err := s.Rescue(ctx, before); err != nil || n != want {
			t.Fatalf("Rescue(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	rescue(base, 0)
	rescue(base.Add(time.Minute), 0) // ended before, not at
	rescue(base.Add(time.Minute+time.Nanosecond), 1)
	wantDepth(t, s, typePAN, 1)
	wantDepth(t, s, typeGST, 0)
	rescue(base.Add(time.Minute+time.Nanosecond), 0)

	got := claim(t, s, typePAN, 10, base.Add(time.Hour))
	wantIDs(t, "claim after Rescue", got, a)
	if got[0].Attempts != 2 {
		t.Errorf("rescued task has Attempts %d, want 2", got[0].Attempts)
	}
	rescue(base.Add(time.Hour), 2)
	wantIDs(t, "claim after Rescue", claim(t, s, typePAN, 10, base.Add(time.Hour)), b)
	wantIDs(t, "claim after Rescue", claim(t, s, typeGST, 10, base.Add(time.Hour)), c)
	rescue(farFuture, 3)
}

// testExtendLeases moves leases, as a node still at its tasks does: an
// extended lease is rescued only once its new end has passed, and ids of
// tasks not leased are ignored.
func testExtendLeases(t *testing.T, s task.Store) {
	ctx := t.Context()
	a, b, c, queued := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base), newTask(accountA, typePAN, base), newTask(accountA, typePAN, base)
	finishedTask := newTask(accountA, typeGST, base)
	mustCreate(t, s, a, b, c, queued, finishedTask)
	wantIDs(t, "claim", claim(t, s, typePAN, 3, base.Add(time.Minute)), a, b, c)
	claim(t, s, typeGST, 1, base.Add(time.Minute))
	end := finished(finishedTask, task.Completed, base)
	end.Attempts = 1
	mustFinish(t, s, end)

	// extend extends the claims of the ids, each under its attempts
	// (1 unless given).
	attempts := map[string]int{}
	extend := func(ids []string, leaseUntil time.Time) {
		t.Helper()
		claims := make([]task.Claim, len(ids))
		for i, id := range ids {
			claims[i] = task.Claim{RequestID: id, Attempts: max(attempts[id], 1)}
		}
		if err := s.ExtendLeases(ctx, claims, leaseUntil); err != nil {
			t.Fatalf("ExtendLeases(%v): %v", ids, err)
		}
	}
	rescue := func(before time.Time, want int) {
		t.Helper()
		if n, err := s.Rescue(ctx, before); err != nil || n != want {
			t.Fatalf("Rescue(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	// a twice in one call, and ids that are not leased: queued, finished,
	// unknown.
	extend([]string{a.RequestID, "unknown", queued.RequestID, a.RequestID, finishedTask.RequestID}, base.Add(time.Hour))
	extend([]string{c.RequestID}, base.Add(30*time.Second))
	extend(nil, base.Add(time.Hour))
	wantDepth(t, s, typePAN, 1)
	wantDepth(t, s, typeGST, 0)
	sameTask(t, mustGet(t, s, finishedTask), end)

	rescue(base.Add(30*time.Second), 0) // ended before, not at
	rescue(base.Add(30*time.Second+time.Nanosecond), 1)
	rescue(base.Add(time.Minute+time.Nanosecond), 1)
	wantIDs(t, "claim after the lease was shortened", claim(t, s, typePAN, 10, base.Add(2*time.Hour)), b, c, queued)
	rescue(base.Add(time.Hour), 0)
	rescue(base.Add(time.Hour+time.Nanosecond), 1)

	// The extended task kept its place, and its attempts.
	got := claim(t, s, typePAN, 1, base.Add(3*time.Hour))
	wantIDs(t, "claim after the extended lease ended", got, a)
	if len(got) == 1 && got[0].Attempts != 2 {
		t.Errorf("%s has Attempts %d, want 2", a.RequestID, got[0].Attempts)
	}
	// A lease extended past every rescue but the last.
	attempts[a.RequestID] = 2
	extend([]string{a.RequestID}, farFuture)
	rescue(base.Add(24*time.Hour), 3)
	wantDepth(t, s, typePAN, 3)
	if err := s.Release(ctx, got); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantIDs(t, "claim after Release of the extended lease", claim(t, s, typePAN, 10, base.Add(time.Hour)), a, b, c, queued)
}

func testQueueDepth(t *testing.T, s task.Store) {
	ctx := t.Context()
	wantDepth(t, s, typePAN, 0)
	var pan []*task.Task
	for range 3 {
		pan = append(pan, newTask(accountA, typePAN, base))
	}
	mustCreate(t, s, pan...)
	mustCreate(t, s, newTask(accountB, typeGST, base))
	wantDepth(t, s, typePAN, 3)
	wantDepth(t, s, typeGST, 1)
	wantDepth(t, s, "verify_with_source/unknown", 0)

	claimed := claim(t, s, typePAN, 2, base.Add(time.Hour))
	wantDepth(t, s, typePAN, 1)
	if err := s.Release(ctx, claimed[:1]); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantDepth(t, s, typePAN, 2)
	end := finished(claimed[1], task.Completed, base)
	mustFinish(t, s, end)
	wantDepth(t, s, typePAN, 2)
	wantDepth(t, s, typeGST, 1)
	wantQueuedTypes(t, s, typeGST, typePAN)

	// A type whose every task is leased has none queued.
	claim(t, s, typeGST, 1, base.Add(time.Hour))
	wantQueuedTypes(t, s, typePAN)
}

func wantQueuedTypes(t *testing.T, s task.Store, want ...string) {
	t.Helper()
	got, err := s.QueuedTypes(t.Context())
	if err != nil {
		t.Fatalf("QueuedTypes: %v", err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("QueuedTypes = %v, want %v", got, want)
	}
}

// testLostClaim checks the fence of claims: a worker whose lease ran out
// and whose task was claimed again since cannot extend the new lease nor
// record its end; the worker holding the task can.
func testLostClaim(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	late := claim(t, s, typePAN, 1, base.Add(time.Minute))
	if n, err := s.Rescue(ctx, base.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1", n, err)
	}
	holder := claim(t, s, typePAN, 1, base.Add(time.Hour))
	if len(late) != 1 || len(holder) != 1 || holder[0].Attempts != 2 {
		t.Fatalf("claims %v then %v, want the task twice", ids(late), ids(holder))
	}

	// The late worker's renewal leaves the holder's lease as it was.
	if err := s.ExtendLeases(ctx, []task.Claim{task.ClaimOf(late[0])}, farFuture); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Rescue(ctx, base.Add(time.Hour+time.Nanosecond)); err != nil || n != 1 {
		t.Fatalf("Rescue after a late renewal = %d, %v; want 1: the lease was not the late worker's to extend", n, err)
	}
	holder = claim(t, s, typePAN, 1, base.Add(2*time.Hour))

	// Its end is refused; the holder's is stored.
	lateEnd := finished(late[0], task.Failed, base.Add(3*time.Minute))
	if err := s.Finish(ctx, lateEnd, nil, nil); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("Finish by a worker that lost its claim: %v, want ErrNotFound", err)
	}
	if got := mustGet(t, s, tk); got.Status != task.InProgress || got.Attempts != 3 {
		t.Fatalf("after a late Finish: %s with Attempts %d, want in_progress with 3", got.Status, got.Attempts)
	}
	end := finished(holder[0], task.Completed, base.Add(4*time.Minute))
	mustFinish(t, s, end)
	sameTask(t, mustGet(t, s, tk), end)
	wantDepth(t, s, typePAN, 0)
}
