package tasktest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// The webhook URLs of the delivery tests.
const (
	hookA       = "https://hooks.example.com/a"
	hookB       = "https://hooks.example.com/b"
	hookC       = "https://other.example.net/c?x=1"
	hookFailure = "https://hooks.example.com/failures"
)

// deliveryTests are the subtests of Run for webhook.Store and the outbox
// of task.Store.Finish.
var deliveryTests = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"DeliveriesFinish", testDeliveriesFinish},
	{"DeliveriesFinishRejected", testDeliveriesFinishRejected},
	{"DeliveriesClaimOrder", testDeliveriesClaimOrder},
	{"DeliveriesSkip", testDeliveriesSkip},
	{"DeliveriesRecordPending", testDeliveriesRecordPending},
	{"DeliveriesRecordEnded", testDeliveriesRecordEnded},
	{"DeliveriesAttempts", testDeliveriesAttempts},
	{"DeliveriesCopies", testDeliveriesCopies},
	{"DeliveriesGetList", testDeliveriesGetList},
	{"DeliveriesRetry", testDeliveriesRetry},
	{"DeliveriesRescue", testDeliveriesRescue},
	{"DeliveriesRetryLateRecord", testDeliveriesRetryLateRecord},
	{"DeliveriesExtendLeases", testDeliveriesExtendLeases},
	{"DeliveriesLostClaim", testDeliveriesLostClaim},
	{"DeliveriesCount", testDeliveriesCount},
	{"DeliveriesPurge", testDeliveriesPurge},
	{"DeliveriesConcurrency", testDeliveriesConcurrency},
	{"DeliveriesClose", testDeliveriesClose},
	{"DeliveriesSaturatedBacklog", testDeliveriesSaturatedBacklog},
	{"DeliveriesSkipOncePerURL", testDeliveriesSkipOncePerURL},
	{"DeliveriesClaimOrderAcrossURLs", testDeliveriesClaimOrderAcrossURLs},
	{"DeliveriesClaimModel", testDeliveriesClaimModel},
	{"DeliveriesRecordClaiming", testDeliveriesRecordClaiming},
}

// testDeliveriesFinish stores deliveries with the end of their task: they
// are pending, and claimable once due.
func testDeliveriesFinish(t *testing.T, s Store) {
	now := base.Add(time.Minute)
	tk := claimed(t, s, accountA, now)
	first := newDelivery(tk, hookA, now, now)
	later := newDelivery(tk, hookB, now, now.Add(time.Minute))
	end := finished(tk, task.Completed, now)
	end.Attempts = 1
	mustFinish(t, s, end, first, later)
	sameTask(t, mustGet(t, s, tk), end)
	sameDelivery(t, mustGetDelivery(t, s, first), first)
	sameDelivery(t, mustGetDelivery(t, s, later), later)
	wantCount(t, s, webhook.Pending, 2)

	lease := now.Add(time.Hour)
	wantDeliveries(t, "claim before due", claimDeliveries(t, s, now.Add(-time.Nanosecond), 10, lease, nil))
	got := claimDeliveries(t, s, now, 10, lease, nil)
	wantDeliveries(t, "claim at NextAt", got, first)
	if len(got) == 1 {
		sameDelivery(t, got[0], first)
	}
	wantDeliveries(t, "claim before the second is due", claimDeliveries(t, s, now.Add(time.Minute-time.Nanosecond), 10, lease, nil))
	wantDeliveries(t, "claim at the second's NextAt", claimDeliveries(t, s, now.Add(time.Minute), 10, lease, nil), later)
	wantDeliveries(t, "claim again", claimDeliveries(t, s, farFuture, 10, lease, nil))
	wantCount(t, s, webhook.Pending, 2)
	wantDeliveries(t, "claim 0", claimDeliveries(t, s, farFuture, 0, lease, nil))
}

// testDeliveriesFinishRejected checks that a Finish that fails stores no
// delivery, and that a delivery that cannot be stored fails its Finish.
func testDeliveriesFinishRejected(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	stored := newDelivery(tk, hookA, base, base)
	end := finished(tk, task.Completed, base)
	end.Attempts = 1
	mustFinish(t, s, end, stored)

	notStored := func(what string, d *webhook.Delivery) {
		t.Helper()
		if _, err := s.GetDelivery(ctx, d.AccountID, d.ID); !errors.Is(err, webhook.ErrNotFound) {
			t.Errorf("%s: GetDelivery: err = %v, want ErrNotFound", what, err)
		}
	}
	again := newDelivery(tk, hookB, base, base)
	if err := s.Finish(ctx, finished(tk, task.Failed, base.Add(time.Minute)), []*webhook.Delivery{again}, nil); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("second Finish: err = %v, want ErrNotFound", err)
	}
	notStored("second Finish", again)
	sameTask(t, mustGet(t, s, tk), end)

	unknown := newTask(accountA, typePAN, base)
	ofUnknown := newDelivery(unknown, hookA, base, base)
	if err := s.Finish(ctx, finished(unknown, task.Completed, base), []*webhook.Delivery{ofUnknown}, nil); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Finish of an unknown task: err = %v, want ErrNotFound", err)
	}
	notStored("Finish of an unknown task", ofUnknown)

	running := claimed(t, s, accountA, base)
	want := clone(running)
	want.Attempts = 1
	ofRunning := newDelivery(running, hookA, base, base)
	if err := s.Finish(ctx, finished(running, task.InProgress, base), []*webhook.Delivery{ofRunning}, nil); err == nil {
		t.Errorf("Finish with status in_progress succeeded, want an error")
	}
	notStored("Finish with status in_progress", ofRunning)

	// An id already stored fails the whole Finish: the task stays as it
	// was and no other delivery of the call is stored.
	dup := clone(running)
	dup.Status, dup.CompletedAt = task.Completed, &base
	if err := s.Finish(ctx, dup, []*webhook.Delivery{ofRunning, stored}, nil); err == nil {
		t.Errorf("Finish with a delivery id already stored succeeded, want an error")
	}
	sameTask(t, mustGet(t, s, running), want)
	notStored("Finish with a delivery id already stored", ofRunning)
	wantCount(t, s, webhook.Pending, 1)
	wantDeliveries(t, "claim", claimDeliveries(t, s, farFuture, 10, farFuture, nil), stored)

	done := finished(running, task.Completed, base)
	done.Attempts = 1
	mustFinish(t, s, done, ofRunning)
	sameTask(t, mustGet(t, s, running), done)
	sameDelivery(t, mustGetDelivery(t, s, ofRunning), ofRunning)
}

func testDeliveriesClaimOrder(t *testing.T, s Store) {
	tk := claimed(t, s, accountA, base)
	at := func(seconds float64) *webhook.Delivery {
		return newDelivery(tk, hookA, base, base.Add(time.Duration(seconds*float64(time.Second))))
	}
	third, first, fourth, second := at(3), at(1), at(4), at(2)
	mustFinish(t, s, finished(tk, task.Completed, base), third, first, fourth, second)
	other := claimed(t, s, accountB, base)
	ofOther := newDelivery(other, hookB, base, base.Add(2500*time.Millisecond))
	mustFinish(t, s, finished(other, task.Completed, base), ofOther)

	lease := base.Add(time.Hour)
	now := base.Add(10 * time.Second)
	wantDeliveries(t, "claim 2", claimDeliveries(t, s, now, 2, lease, nil), first, second)
	wantDeliveries(t, "claim 1", claimDeliveries(t, s, now, 1, lease, nil), ofOther)
	wantDeliveries(t, "claim rest", claimDeliveries(t, s, now, 10, lease, nil), third, fourth)
	wantDeliveries(t, "claim none left", claimDeliveries(t, s, now, 10, lease, nil))
}

func testDeliveriesSkip(t *testing.T, s Store) {
	tk := claimed(t, s, accountA, base)
	at := func(url string, seconds int) *webhook.Delivery {
		return newDelivery(tk, url, base, base.Add(time.Duration(seconds)*time.Second))
	}
	a1, b2, a3, b4, c5 := at(hookA, 1), at(hookB, 2), at(hookA, 3), at(hookB, 4), at(hookC, 5)
	notDue := at(hookB, 60)
	mustFinish(t, s, finished(tk, task.Completed, base), a1, b2, a3, b4, c5, notDue)
	lease := base.Add(time.Hour)
	now := base.Add(10 * time.Second)

	// skip is asked about each due delivery looked at, once, in order,
	// until n are taken; a URL it turned down is not looked at again in
	// the call.
	var asked []string
	skipA := func(url string) bool {
		asked = append(asked, url)
		return url == hookA
	}
	wantDeliveries(t, "claim 1 skipping A", claimDeliveries(t, s, now, 1, lease, skipA), b2)
	if want := []string{hookA, hookB}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	asked = nil
	wantDeliveries(t, "claim skipping A", claimDeliveries(t, s, now, 10, lease, skipA), b4, c5)
	if want := []string{hookA, hookB, hookC}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	wantDeliveries(t, "claim skipping all", claimDeliveries(t, s, now, 10, lease, func(string) bool { return true }))
	wantDeliveries(t, "claim without skip", claimDeliveries(t, s, now, 10, lease, nil), a1, a3)

	// A false answer takes the delivery, so skip may count what it lets
	// through: here, one delivery per URL.
	tk2 := claimed(t, s, accountA, base)
	at = func(url string, seconds int) *webhook.Delivery {
		return newDelivery(tk2, url, base, base.Add(time.Duration(seconds)*time.Second))
	}
	a6, a7, b8, b9 := at(hookA, 6), at(hookA, 7), at(hookB, 8), at(hookB, 9)
	mustFinish(t, s, finished(tk2, task.Completed, base), a6, a7, b8, b9)
	taken := make(map[string]bool)
	onePerURL := func(url string) bool {
		if taken[url] {
			return true
		}
		taken[url] = true
		return false
	}
	wantDeliveries(t, "claim one per URL", claimDeliveries(t, s, now, 10, lease, onePerURL), a6, b8)
	wantDeliveries(t, "claim the others", claimDeliveries(t, s, now, 10, lease, nil), a7, b9)
	wantDeliveries(t, "claim when due", claimDeliveries(t, s, base.Add(time.Minute), 10, lease, nil), notDue)
}

// testDeliveriesRecordPending records a failed attempt to be retried: the
// delivery is claimable again once its new NextAt comes.
func testDeliveriesRecordPending(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	d := newDelivery(tk, hookA, base, base)
	mustFinish(t, s, finished(tk, task.Completed, base), d)
	got := claimDeliveries(t, s, base, 10, base.Add(time.Minute), nil)
	wantDeliveries(t, "claim", got, d)

	retry := attempted(d, webhook.Pending, base.Add(10*time.Minute), webhook.Attempt{
		At: base.Add(time.Second), StatusCode: 503, Error: "503 Service Unavailable", DurationMS: 120,
	})
	mustRecord(t, s, retry)
	sameDelivery(t, mustGetDelivery(t, s, d), retry)
	wantCount(t, s, webhook.Pending, 1)
	if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != 0 {
		t.Errorf("RescueDeliveries after RecordAttempt = %d, %v; want 0 (the lease ended)", n, err)
	}
	wantDeliveries(t, "claim before NextAt", claimDeliveries(t, s, base.Add(10*time.Minute-time.Nanosecond), 10, farFuture, nil))
	got = claimDeliveries(t, s, base.Add(10*time.Minute), 10, base.Add(time.Hour), nil)
	wantDeliveries(t, "claim at NextAt", got, d)
	if len(got) == 1 {
		sameDelivery(t, got[0], retry)
	}

	// A late worker's attempt on a delivery rescued meanwhile is stored
	// too, and takes it out of the due ones.
	if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != 1 {
		t.Fatalf("RescueDeliveries = %d, %v; want 1", n, err)
	}
	late := attempted(retry, webhook.Pending, base.Add(time.Hour), webhook.Attempt{At: base.Add(11 * time.Minute), Error: "timeout", DurationMS: 30000})
	if len(got) == 1 {
		late.Claim = got[0].Claim // the late worker's claim, the latest
	}
	mustRecord(t, s, late)
	sameDelivery(t, mustGetDelivery(t, s, d), late)
	wantDeliveries(t, "claim before the late NextAt", claimDeliveries(t, s, base.Add(time.Hour-time.Nanosecond), 10, farFuture, nil))
	wantDeliveries(t, "claim at the late NextAt", claimDeliveries(t, s, base.Add(time.Hour), 10, farFuture, nil), d)
}

// testDeliveriesRecordEnded records deliveries that ended: they are never
// claimed again, and a failure notification comes with its failure.
func testDeliveriesRecordEnded(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	ok, bad := newDelivery(tk, hookA, base, base), newDelivery(tk, hookB, base, base.Add(time.Second))
	mustFinish(t, s, finished(tk, task.Completed, base), ok, bad)
	wantDeliveries(t, "claim", claimDeliveries(t, s, base.Add(time.Second), 10, base.Add(time.Minute), nil), ok, bad)

	delivered := attempted(ok, webhook.Delivered, ok.NextAt, webhook.Attempt{At: base.Add(time.Second), StatusCode: 204, DurationMS: 35})
	mustRecord(t, s, delivered)
	failed := attempted(bad, webhook.Failed, bad.NextAt, webhook.Attempt{At: base.Add(2 * time.Second), StatusCode: 410, Error: "410 Gone", DurationMS: 12})
	notice := newDelivery(tk, hookFailure, base.Add(2*time.Second), base.Add(3*time.Second))
	notice.Event = webhook.EventFailed
	notice.Body = json.RawMessage(`{"event":"webhook.failed","delivery_id":"` + bad.ID + `"}`)
	// also is stored with the attempt or not at all: an id already
	// stored fails the whole record.
	if err := s.RecordAttempt(ctx, failed, []*webhook.Delivery{notice, ok}); err == nil {
		t.Errorf("RecordAttempt with a delivery id already stored succeeded, want an error")
	}
	sameDelivery(t, mustGetDelivery(t, s, bad), bad)
	if _, err := s.GetDelivery(ctx, notice.AccountID, notice.ID); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("GetDelivery of what came with a failed record: err = %v, want ErrNotFound", err)
	}
	mustRecord(t, s, failed, notice)

	sameDelivery(t, mustGetDelivery(t, s, ok), delivered)
	sameDelivery(t, mustGetDelivery(t, s, bad), failed)
	sameDelivery(t, mustGetDelivery(t, s, notice), notice)
	wantCount(t, s, webhook.Pending, 1)
	wantCount(t, s, webhook.Delivered, 1)
	wantCount(t, s, webhook.Failed, 1)
	if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != 0 {
		t.Errorf("RescueDeliveries = %d, %v; want 0", n, err)
	}
	wantDeliveries(t, "claim after the ends", claimDeliveries(t, s, farFuture, 10, farFuture, nil), notice)

	// An ended delivery takes no more attempts (another worker recorded
	// its end), and what came with the late attempt is not stored.
	extra := newDelivery(tk, hookFailure, base, base)
	if err := s.RecordAttempt(ctx, attempted(failed, webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200}), []*webhook.Delivery{extra}); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("RecordAttempt of a failed delivery: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetDelivery(ctx, extra.AccountID, extra.ID); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("GetDelivery of what came with a rejected attempt: err = %v, want ErrNotFound", err)
	}
	sameDelivery(t, mustGetDelivery(t, s, bad), failed)
	unknown := newDelivery(tk, hookA, base, base)
	if err := s.RecordAttempt(ctx, unknown, nil); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("RecordAttempt of an unknown delivery: err = %v, want ErrNotFound", err)
	}
	wantCount(t, s, webhook.Pending, 1)
}

// testDeliveriesAttempts checks that attempts keep every field.
func testDeliveriesAttempts(t *testing.T, s Store) {
	tk := claimed(t, s, accountA, base)
	d := newDelivery(tk, hookA, base, base)
	mustFinish(t, s, finished(tk, task.Completed, base), d)
	if got := mustGetDelivery(t, s, d); len(got.Attempts) != 0 {
		t.Errorf("a new delivery has %d attempts, want none", len(got.Attempts))
	}
	claimDeliveries(t, s, base, 1, base.Add(time.Minute), nil)
	attempts := []webhook.Attempt{
		{At: base, StatusCode: 0, Error: "dial tcp 203.0.113.7:443: connect: connection refused \u00e9 <&>", DurationMS: 0},
		{At: base.Add(2*time.Second + 7).UTC(), StatusCode: 503, Error: "503 Service Unavailable", DurationMS: 30001},
		{At: base.Add(9 * time.Second).In(time.FixedZone("PST", -8*3600)), StatusCode: 204, DurationMS: 87},
	}
	want := attempted(d, webhook.Pending, base.Add(time.Minute), attempts...)
	mustRecord(t, s, want)
	sameDelivery(t, mustGetDelivery(t, s, d), want)
	got := claimDeliveries(t, s, base.Add(time.Minute), 1, base.Add(time.Hour), nil)
	wantDeliveries(t, "claim", got, d)
	if len(got) == 1 {
		sameDelivery(t, got[0], want)
	}
	list, err := s.ListDeliveries(t.Context(), accountA, webhook.Filter{}, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListDeliveries = %d deliveries, %v; want 1", len(list), err)
	}
	sameDelivery(t, list[0], want)
}

// testDeliveriesCopies checks that the store shares no memory with its
// callers.
func testDeliveriesCopies(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	d := newDelivery(tk, hookA, base, base)
	want := cloneDelivery(d)
	mustFinish(t, s, finished(tk, task.Completed, base), d)
	d.Body[2] = 'X'
	d.URL = "changed"

	got := mustGetDelivery(t, s, want)
	sameDelivery(t, got, want)
	got.Body[2] = 'X'
	sameDelivery(t, mustGetDelivery(t, s, want), want)

	claimedD := claimDeliveries(t, s, base, 1, base.Add(time.Minute), nil)
	wantDeliveries(t, "claim", claimedD, want)
	claimedD[0].Body[2] = 'X'
	sameDelivery(t, mustGetDelivery(t, s, want), want)

	rec := attempted(want, webhook.Pending, base.Add(time.Minute), webhook.Attempt{At: base, StatusCode: 500, Error: "500"})
	recWant := cloneDelivery(rec)
	mustRecord(t, s, rec)
	rec.Attempts[0].StatusCode = 200
	rec.Attempts = append(rec.Attempts, webhook.Attempt{At: base})
	sameDelivery(t, mustGetDelivery(t, s, want), recWant)

	list, err := s.ListDeliveries(ctx, accountA, webhook.Filter{}, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListDeliveries = %d deliveries, %v; want 1", len(list), err)
	}
	list[0].Attempts[0].Error = "changed"
	sameDelivery(t, mustGetDelivery(t, s, want), recWant)
}

func testDeliveriesGetList(t *testing.T, s Store) {
	ctx := t.Context()
	created := func(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }
	tkA1, tkA2 := claimed(t, s, accountA, base), claimed(t, s, accountA, base)
	tkB, tkC := claimed(t, s, accountB, base), claimed(t, s, accountC, base)
	// Created out of time order: lists go by CreatedAt.
	a1, a2 := newDelivery(tkA1, hookA, created(3), base), newDelivery(tkA1, hookB, created(1), base)
	a3, a4 := newDelivery(tkA2, hookA, created(4), base), newDelivery(tkA2, hookB, created(2), base)
	b1, c1 := newDelivery(tkB, hookA, created(5), base), newDelivery(tkC, hookA, created(6), base)
	mustFinish(t, s, finished(tkA1, task.Completed, base), a1, a2)
	mustFinish(t, s, finished(tkA2, task.Completed, base), a3, a4)
	mustFinish(t, s, finished(tkB, task.Completed, base), b1)
	mustFinish(t, s, finished(tkC, task.Completed, base), c1)
	claimDeliveries(t, s, base, 10, base.Add(time.Minute), nil)
	a2Done := attempted(a2, webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200})
	a3Failed := attempted(a3, webhook.Failed, base, webhook.Attempt{At: base, StatusCode: 404, Error: "404 Not Found"})
	mustRecord(t, s, a2Done)
	mustRecord(t, s, a3Failed)

	list := func(accountID string, f webhook.Filter, limit int) []*webhook.Delivery {
		t.Helper()
		got, err := s.ListDeliveries(ctx, accountID, f, limit)
		if err != nil {
			t.Fatalf("ListDeliveries(%s, %+v, %d): %v", accountID, f, limit, err)
		}
		if got == nil {
			t.Errorf("ListDeliveries(%s, %+v, %d) returned a nil slice, want an empty one", accountID, f, limit)
		}
		return got
	}
	all := list(accountA, webhook.Filter{}, 100)
	wantDeliveries(t, "all, newest first", all, a3, a1, a4, a2)
	if len(all) == 4 {
		sameDelivery(t, all[0], a3Failed)
		sameDelivery(t, all[3], a2Done)
	}
	wantDeliveries(t, "limit 2", list(accountA, webhook.Filter{}, 2), a3, a1)
	wantDeliveries(t, "limit 0", list(accountA, webhook.Filter{}, 0))
	wantDeliveries(t, "by request", list(accountA, webhook.Filter{RequestID: tkA1.RequestID}, 100), a1, a2)
	wantDeliveries(t, "by request, limit 1", list(accountA, webhook.Filter{RequestID: tkA1.RequestID}, 1), a1)
	wantDeliveries(t, "by request and status", list(accountA, webhook.Filter{RequestID: tkA2.RequestID, Status: webhook.Failed}, 100), a3)
	wantDeliveries(t, "by request and another status", list(accountA, webhook.Filter{RequestID: tkA2.RequestID, Status: webhook.Delivered}, 100))
	wantDeliveries(t, "pending", list(accountA, webhook.Filter{Status: webhook.Pending}, 100), a1, a4)
	wantDeliveries(t, "pending, limit 1", list(accountA, webhook.Filter{Status: webhook.Pending}, 1), a1)
	wantDeliveries(t, "delivered", list(accountA, webhook.Filter{Status: webhook.Delivered}, 100), a2)
	wantDeliveries(t, "failed", list(accountA, webhook.Filter{Status: webhook.Failed}, 100), a3)
	wantDeliveries(t, "unknown status", list(accountA, webhook.Filter{Status: "lost"}, 100))
	wantDeliveries(t, "other account", list(accountB, webhook.Filter{}, 100), b1)
	wantDeliveries(t, "shifted account", list(accountC, webhook.Filter{}, 100), c1)
	wantDeliveries(t, "another account's request", list(accountB, webhook.Filter{RequestID: tkA1.RequestID}, 100))
	wantDeliveries(t, "unknown request", list(accountA, webhook.Filter{RequestID: "unknown"}, 100))
	wantDeliveries(t, "unknown account", list("unknown", webhook.Filter{}, 100))

	sameDelivery(t, mustGetDelivery(t, s, a3), a3Failed)
	for _, accountID := range []string{accountB, accountC, "unknown"} {
		if _, err := s.GetDelivery(ctx, accountID, a1.ID); !errors.Is(err, webhook.ErrNotFound) {
			t.Errorf("GetDelivery by account %s: err = %v, want ErrNotFound", accountID, err)
		}
	}
	if _, err := s.GetDelivery(ctx, accountA, "unknown"); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("GetDelivery of an unknown id: err = %v, want ErrNotFound", err)
	}
}

func testDeliveriesRetry(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	ok, bad, busy, later := newDelivery(tk, hookA, base, base), newDelivery(tk, hookB, base, base),
		newDelivery(tk, hookC, base, base), newDelivery(tk, hookA, base, base)
	// waiting is due between the retries and later's NextAt: a store that
	// lost later's place would not claim it at the retry.
	waiting := newDelivery(tk, hookB, base, base.Add(30*time.Minute))
	mustFinish(t, s, finished(tk, task.Completed, base), ok, bad, busy, later, waiting)
	claimDeliveries(t, s, base, 10, base.Add(time.Minute), nil)
	okDone := attempted(ok, webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200})
	badFailed := attempted(bad, webhook.Failed, base, webhook.Attempt{At: base, StatusCode: 400, Error: "400 Bad Request"})
	laterRetry := attempted(later, webhook.Pending, base.Add(time.Hour), webhook.Attempt{At: base, StatusCode: 502, Error: "502 Bad Gateway"})
	mustRecord(t, s, okDone)
	mustRecord(t, s, badFailed)
	mustRecord(t, s, laterRetry)

	now := base.Add(10 * time.Minute)
	retry := func(d *webhook.Delivery) *webhook.Delivery {
		t.Helper()
		got, err := s.RetryDelivery(ctx, accountA, d.ID, now)
		if err != nil {
			t.Fatalf("RetryDelivery %s: %v", d.ID, err)
		}
		want := cloneDelivery(d)
		want.Status, want.NextAt = webhook.Pending, now
		sameDelivery(t, got, want)
		sameDelivery(t, mustGetDelivery(t, s, d), want)
		return want
	}
	if _, err := s.RetryDelivery(ctx, accountB, ok.ID, now); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("RetryDelivery by another account: err = %v, want ErrNotFound", err)
	}
	if _, err := s.RetryDelivery(ctx, accountA, "unknown", now); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("RetryDelivery of an unknown id: err = %v, want ErrNotFound", err)
	}
	sameDelivery(t, mustGetDelivery(t, s, ok), okDone)
	wantCount(t, s, webhook.Delivered, 1)

	retry(laterRetry)
	wantDeliveries(t, "claim before the retry", claimDeliveries(t, s, now.Add(-time.Nanosecond), 10, farFuture, nil))
	wantDeliveries(t, "claim at the retry", claimDeliveries(t, s, now, 10, now.Add(time.Minute), nil), later)
	retry(okDone)
	retry(badFailed)
	wantCount(t, s, webhook.Pending, 5)
	wantCount(t, s, webhook.Delivered, 0)
	wantCount(t, s, webhook.Failed, 0)
	wantDeliveries(t, "claim before the retry", claimDeliveries(t, s, now.Add(-time.Nanosecond), 10, farFuture, nil))
	wantDeliverySet(t, "claim at the retry", claimDeliveries(t, s, now, 10, now.Add(time.Minute), nil), ok, bad)

	// A delivery being attempted is marked, and pending again once its
	// attempt is recorded, whatever the attempt gave.
	busyWant := retry(busy)
	wantDeliveries(t, "claim while attempted", claimDeliveries(t, s, farFuture, 10, farFuture, nil), waiting)
	attempt := webhook.Attempt{At: base.Add(11 * time.Minute), StatusCode: 204, DurationMS: 10}
	mustRecord(t, s, attempted(busy, webhook.Delivered, base, attempt))
	busyWant.Attempts = append(busyWant.Attempts, attempt)
	sameDelivery(t, mustGetDelivery(t, s, busy), busyWant)
	wantCount(t, s, webhook.Delivered, 0)
	got := claimDeliveries(t, s, now, 10, now.Add(time.Minute), nil)
	wantDeliveries(t, "claim after the attempt", got, busy)
	// The mark served once: the next end is kept.
	done := attempted(busyWant, webhook.Delivered, now, webhook.Attempt{At: now, StatusCode: 200})
	mustRecord(t, s, done)
	sameDelivery(t, mustGetDelivery(t, s, busy), done)
	wantCount(t, s, webhook.Delivered, 1)
}

func testDeliveriesRescue(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	d1, d2, d3 := newDelivery(tk, hookA, base, base), newDelivery(tk, hookA, base, base.Add(time.Second)), newDelivery(tk, hookA, base, base.Add(2*time.Second))
	mustFinish(t, s, finished(tk, task.Completed, base), d1, d2, d3)
	wantDeliveries(t, "claim", claimDeliveries(t, s, base.Add(time.Second), 1, base.Add(time.Minute), nil), d1)
	wantDeliveries(t, "claim", claimDeliveries(t, s, base.Add(time.Second), 1, base.Add(2*time.Minute), nil), d2)

	rescue := func(before time.Time, want int) {
		t.Helper()
		if n, err := s.RescueDeliveries(ctx, before); err != nil || n != want {
			t.Fatalf("RescueDeliveries(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	rescue(base, 0)
	rescue(base.Add(time.Minute), 0) // ended before, not at
	rescue(base.Add(time.Minute+time.Nanosecond), 1)
	rescue(base.Add(time.Minute+time.Nanosecond), 0)
	got := claimDeliveries(t, s, base.Add(10*time.Second), 10, base.Add(time.Hour), nil)
	wantDeliveries(t, "claim after RescueDeliveries", got, d1, d3)
	if len(got) == 2 {
		sameDelivery(t, got[0], d1)
	}
	rescue(base.Add(time.Hour), 1)
	wantDeliveries(t, "claim after RescueDeliveries", claimDeliveries(t, s, base.Add(10*time.Second), 10, base.Add(time.Hour), nil), d2)
	wantCount(t, s, webhook.Pending, 3)

	// A rescued delivery whose retry was asked for is due at the time of
	// the request, and its next end is kept.
	now := base.Add(time.Minute)
	if _, err := s.RetryDelivery(ctx, accountA, d1.ID, now); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	rescue(farFuture, 3)
	wantDeliveries(t, "claim before the retry", claimDeliveries(t, s, now.Add(-time.Nanosecond), 10, farFuture, nil), d2, d3)
	wantDeliveries(t, "claim at the retry", claimDeliveries(t, s, now, 10, farFuture, nil), d1)
	done := attempted(d1, webhook.Delivered, now, webhook.Attempt{At: now, StatusCode: 200})
	mustRecord(t, s, done)
	sameDelivery(t, mustGetDelivery(t, s, d1), done)
}

// testDeliveriesRetryLateRecord checks that a retry asked for since a
// delivery's last claim holds when that claim's attempt is recorded late,
// whatever the record says: after its lease ran out and it was rescued
// (not claimed again), the retry asked for before the rescue or after it;
// and a record sent again (its first answer lost) after the delivery, once
// ended, was retried. A claim answers the retry: its own record stands.
func testDeliveriesRetryLateRecord(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	before, after, again := newDelivery(tk, hookA, base, base), newDelivery(tk, hookA, base, base.Add(time.Second)),
		newDelivery(tk, hookB, base, base.Add(2*time.Second))
	mustFinish(t, s, finished(tk, task.Completed, base), before, after, again)
	got := claimDeliveries(t, s, base.Add(2*time.Second), 3, base.Add(time.Minute), nil)
	wantDeliveries(t, "claim", got, before, after, again)
	if len(got) != 3 {
		return
	}
	retryAt := base.Add(5 * time.Minute)
	retry := func(d *webhook.Delivery) {
		t.Helper()
		if _, err := s.RetryDelivery(ctx, accountA, d.ID, retryAt); err != nil {
			t.Fatalf("RetryDelivery %s: %v", d.ID, err)
		}
	}
	// again: recorded delivered, then retried; its record comes again.
	record := attempted(got[2], webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200})
	mustRecord(t, s, record)
	retry(again)
	retry(got[0])
	if n, err := s.RescueDeliveries(ctx, base.Add(2*time.Minute)); err != nil || n != 2 {
		t.Fatalf("RescueDeliveries = %d, %v; want 2", n, err)
	}
	retry(got[1])
	for _, d := range got[:2] {
		mustRecord(t, s, attempted(d, webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200}))
	}
	for range 2 {
		if err := s.RecordAttempt(ctx, record, nil); err != nil {
			t.Fatalf("RecordAttempt sent again: %v", err)
		}
	}
	wantCount(t, s, webhook.Pending, 3)
	wantDeliveries(t, "claim before the retries", claimDeliveries(t, s, retryAt.Add(-time.Nanosecond), 10, farFuture, nil))
	retried := claimDeliveries(t, s, retryAt, 10, farFuture, nil)
	wantDeliveries(t, "claim at the retries", retried, before, after, again)
	for _, d := range retried {
		mustRecord(t, s, attempted(d, webhook.Delivered, retryAt, webhook.Attempt{At: retryAt, StatusCode: 200}))
	}
	wantCount(t, s, webhook.Delivered, 3)
}

// testDeliveriesExtendLeases moves leases, as a node still attempting its
// deliveries does: an extended lease is rescued only once its new end has
// passed, and ids of deliveries not leased are ignored.
func testDeliveriesExtendLeases(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	at := func(seconds int) *webhook.Delivery {
		return newDelivery(tk, hookA, base, base.Add(time.Duration(seconds)*time.Second))
	}
	d1, d2, d3, ended, due := at(1), at(2), at(3), at(4), at(60)
	mustFinish(t, s, finished(tk, task.Completed, base), d1, d2, d3, ended, due)
	now := base.Add(10 * time.Second)
	wantDeliveries(t, "claim", claimDeliveries(t, s, now, 10, base.Add(time.Minute), nil), d1, d2, d3, ended)
	endedWant := attempted(ended, webhook.Delivered, ended.NextAt, webhook.Attempt{At: now, StatusCode: 200})
	mustRecord(t, s, endedWant)

	// extend extends the latest claims of the ids (the first, for ids
	// never claimed).
	extend := func(ids []string, leaseUntil time.Time) {
		t.Helper()
		claims := make([]webhook.Claim, len(ids))
		for i, id := range ids {
			claims[i] = webhook.Claim{ID: id, Claim: 1}
			if got, err := s.GetDelivery(ctx, accountA, id); err == nil && got.Claim > 0 {
				claims[i].Claim = got.Claim
			}
		}
		if err := s.ExtendDeliveryLeases(ctx, claims, leaseUntil); err != nil {
			t.Fatalf("ExtendDeliveryLeases(%v): %v", ids, err)
		}
	}
	rescue := func(before time.Time, want int) {
		t.Helper()
		if n, err := s.RescueDeliveries(ctx, before); err != nil || n != want {
			t.Fatalf("RescueDeliveries(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	// d1 twice in one call, and ids that are not leased: due, ended,
	// unknown.
	extend([]string{d1.ID, "unknown", due.ID, d1.ID, ended.ID}, base.Add(time.Hour))
	extend([]string{d3.ID}, base.Add(30*time.Second))
	extend(nil, base.Add(time.Hour))
	sameDelivery(t, mustGetDelivery(t, s, ended), endedWant)
	sameDelivery(t, mustGetDelivery(t, s, d1), d1)
	wantCount(t, s, webhook.Pending, 4)
	wantDeliveries(t, "claim of the due one", claimDeliveries(t, s, base.Add(time.Minute), 10, base.Add(2*time.Hour), nil), due)

	rescue(base.Add(30*time.Second), 0) // ended before, not at
	rescue(base.Add(30*time.Second+time.Nanosecond), 1)
	rescue(base.Add(time.Minute+time.Nanosecond), 1)
	wantDeliveries(t, "claim after the lease was shortened", claimDeliveries(t, s, now, 10, base.Add(2*time.Hour), nil), d2, d3)
	rescue(base.Add(time.Hour), 0)
	rescue(base.Add(time.Hour+time.Nanosecond), 1)
	wantDeliveries(t, "claim after the extended lease ended", claimDeliveries(t, s, now, 10, base.Add(3*time.Hour), nil), d1)

	// A retry asked for during an extended lease still holds when the
	// attempt is recorded.
	extend([]string{d1.ID}, farFuture)
	retryAt := base.Add(5 * time.Minute)
	if _, err := s.RetryDelivery(ctx, accountA, d1.ID, retryAt); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	rescue(base.Add(24*time.Hour), 3)
	mustRecord(t, s, attempted(d1, webhook.Delivered, now, webhook.Attempt{At: now, StatusCode: 200}))
	wantCount(t, s, webhook.Delivered, 1)
	wantDeliveries(t, "claim of the retried", claimDeliveries(t, s, farFuture, 10, farFuture, nil), d2, d3, due, d1)
}

func testDeliveriesCount(t *testing.T, s Store) {
	for _, status := range []webhook.Status{webhook.Pending, webhook.Delivered, webhook.Failed, "unknown"} {
		wantCount(t, s, status, 0)
	}
	var ds []*webhook.Delivery
	for range 3 {
		tk := claimed(t, s, accountA, base)
		d := newDelivery(tk, hookA, base, base)
		mustFinish(t, s, finished(tk, task.Completed, base), d, newDelivery(tk, hookB, base, farFuture))
		ds = append(ds, d)
	}
	wantCount(t, s, webhook.Pending, 6)
	wantDeliverySet(t, "claim", claimDeliveries(t, s, base, 10, farFuture, nil), ds...)
	wantCount(t, s, webhook.Pending, 6)
	mustRecord(t, s, attempted(ds[0], webhook.Delivered, base, webhook.Attempt{At: base, StatusCode: 200}))
	mustRecord(t, s, attempted(ds[1], webhook.Failed, base, webhook.Attempt{At: base, StatusCode: 404}))
	wantCount(t, s, webhook.Pending, 4)
	wantCount(t, s, webhook.Delivered, 1)
	wantCount(t, s, webhook.Failed, 1)
	wantCount(t, s, "unknown", 0)
}

func testDeliveriesPurge(t *testing.T, s Store) {
	ctx := t.Context()
	cutoff := base.Add(24 * time.Hour)
	tk := claimed(t, s, accountA, base)
	at := func(created time.Time) *webhook.Delivery { return newDelivery(tk, hookA, created, base) }
	first, second, third, retried := at(base), at(base.Add(time.Minute)), at(base.Add(2*time.Minute)), at(base.Add(3*time.Minute))
	atCutoff, leased, due := at(cutoff), at(base.Add(-time.Hour)), at(base.Add(-time.Hour))
	due.NextAt = farFuture
	mustFinish(t, s, finished(tk, task.Completed, cutoff.Add(-time.Hour)), first, second, third, retried, atCutoff, leased, due)
	claimDeliveries(t, s, base, 10, farFuture, nil)
	// Ended in another order than created: Purge goes by creation.
	mustRecord(t, s, attempted(third, webhook.Delivered, base, webhook.Attempt{At: base}))
	mustRecord(t, s, attempted(first, webhook.Failed, base, webhook.Attempt{At: base}))
	mustRecord(t, s, attempted(second, webhook.Delivered, base, webhook.Attempt{At: base}))
	mustRecord(t, s, attempted(retried, webhook.Failed, base, webhook.Attempt{At: base}))
	mustRecord(t, s, attempted(atCutoff, webhook.Delivered, base, webhook.Attempt{At: base}))
	if _, err := s.RetryDelivery(ctx, accountA, retried.ID, base); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}

	purge := func(limit, want int) {
		t.Helper()
		if n, err := s.Purge(ctx, cutoff, base, limit); err != nil || n != want {
			t.Fatalf("Purge(limit %d) = %d, %v; want %d", limit, n, err, want)
		}
	}
	purge(1, 1) // the task
	mustGetDelivery(t, s, first)
	purge(2, 2)
	mustGetDelivery(t, s, third)
	purge(100, 1)
	purge(100, 0)
	for _, d := range []*webhook.Delivery{first, second, third} {
		if _, err := s.GetDelivery(ctx, accountA, d.ID); !errors.Is(err, webhook.ErrNotFound) {
			t.Errorf("GetDelivery of a purged delivery: err = %v, want ErrNotFound", err)
		}
	}
	for _, d := range []*webhook.Delivery{retried, atCutoff, leased, due} {
		mustGetDelivery(t, s, d)
	}
	got, err := s.ListDeliveries(ctx, accountA, webhook.Filter{}, 100)
	if err != nil {
		t.Fatalf("ListDeliveries: %v", err)
	}
	wantDeliverySet(t, "ListDeliveries after Purge", got, atCutoff, retried, leased, due)
	for f, want := range map[webhook.Filter][]*webhook.Delivery{
		{RequestID: tk.RequestID}:   {atCutoff, retried, leased, due},
		{Status: webhook.Failed}:    nil,
		{Status: webhook.Delivered}: {atCutoff},
	} {
		got, err := s.ListDeliveries(ctx, accountA, f, 100)
		if err != nil {
			t.Fatalf("ListDeliveries: %v", err)
		}
		wantDeliverySet(t, fmt.Sprintf("ListDeliveries(%+v) after Purge", f), got, want...)
	}
	wantCount(t, s, webhook.Pending, 3)
	wantCount(t, s, webhook.Delivered, 1)
	wantCount(t, s, webhook.Failed, 0)
}

func testDeliveriesConcurrency(t *testing.T, s Store) {
	ctx := t.Context()
	const tasks, perTask, claimers = 10, 50, 4
	var wg sync.WaitGroup
	ends := make([]*task.Task, tasks)
	all := make([][]*webhook.Delivery, tasks)
	for i := range tasks {
		tk := claimed(t, s, accountA, base)
		ends[i] = finished(tk, task.Completed, base)
		for j := range perTask {
			all[i] = append(all[i], newDelivery(tk, hookA, base, base.Add(time.Duration(j*tasks+i))))
		}
	}
	for i := range tasks {
		wg.Go(func() {
			if err := s.Finish(ctx, ends[i], all[i], nil); err != nil {
				t.Errorf("Finish: %v", err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	wantCount(t, s, webhook.Pending, tasks*perTask)

	var (
		mu    sync.Mutex
		taken = make(map[string]int)
	)
	for range claimers {
		wg.Go(func() {
			for {
				ds, err := s.ClaimDeliveries(ctx, base.Add(time.Hour), 7, base.Add(2*time.Hour), nil)
				if err != nil {
					t.Errorf("ClaimDeliveries: %v", err)
					return
				}
				if len(ds) == 0 {
					return
				}
				for _, d := range ds {
					if err := s.RecordAttempt(ctx, attempted(d, webhook.Delivered, d.NextAt, webhook.Attempt{At: base, StatusCode: 200}), nil); err != nil {
						t.Errorf("RecordAttempt: %v", err)
					}
				}
				mu.Lock()
				for _, d := range ds {
					taken[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wantEachOnce(t, "deliveries", taken, tasks*perTask)
	wantCount(t, s, webhook.Pending, 0)
	wantCount(t, s, webhook.Delivered, tasks*perTask)
}

func testDeliveriesClose(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	d := newDelivery(tk, hookA, base, base)
	mustFinish(t, s, finished(tk, task.Completed, base), d)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"ClaimDeliveries": func() error {
			_, err := s.ClaimDeliveries(ctx, farFuture, 1, farFuture, nil)
			return err
		},
		"RecordAttempt": func() error { return s.RecordAttempt(ctx, d, nil) },
		"GetDelivery": func() error {
			_, err := s.GetDelivery(ctx, accountA, d.ID)
			return err
		},
		"ListDeliveries": func() error {
			_, err := s.ListDeliveries(ctx, accountA, webhook.Filter{}, 10)
			return err
		},
		"RetryDelivery": func() error {
			_, err := s.RetryDelivery(ctx, accountA, d.ID, base)
			return err
		},
		"RescueDeliveries": func() error {
			_, err := s.RescueDeliveries(ctx, farFuture)
			return err
		},
		"CountDeliveries": func() error {
			_, err := s.CountDeliveries(ctx, webhook.Pending)
			return err
		},
		"ExtendDeliveryLeases": func() error { return s.ExtendDeliveryLeases(ctx, []webhook.Claim{webhook.ClaimOf(d)}, base) },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s after Close succeeded, want an error", name)
		}
	}
}

// lastDeliveryID numbers delivery ids, so that no two deliveries of a test
// binary share one, even across stores.
var lastDeliveryID atomic.Uint64

// testDeliveriesLostClaim checks the fence of claims: a worker whose lease
// ran out and whose delivery was claimed again since cannot extend the new
// lease nor record its attempt; the worker holding the delivery can.
func testDeliveriesLostClaim(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	d := newDelivery(tk, hookA, base, base)
	mustFinish(t, s, finished(tk, task.Completed, base), d)
	late := claimDeliveries(t, s, base, 1, base.Add(time.Minute), nil)
	if n, err := s.RescueDeliveries(ctx, base.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("RescueDeliveries = %d, %v; want 1", n, err)
	}
	holder := claimDeliveries(t, s, base, 1, base.Add(time.Hour), nil)
	if len(late) != 1 || len(holder) != 1 || holder[0].Claim == late[0].Claim {
		t.Fatalf("claims %v then %v, want the delivery twice under two claims", late, holder)
	}

	// The late worker's renewal leaves the holder's lease as it was.
	if err := s.ExtendDeliveryLeases(ctx, []webhook.Claim{webhook.ClaimOf(late[0])}, farFuture); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RescueDeliveries(ctx, base.Add(time.Hour+time.Nanosecond)); err != nil || n != 1 {
		t.Fatalf("RescueDeliveries after a late renewal = %d, %v; want 1: the lease was not the late worker's to extend", n, err)
	}
	holder = claimDeliveries(t, s, base, 1, base.Add(2*time.Hour), nil)

	// Its record is refused; the holder's is stored.
	lateRecord := attempted(late[0], webhook.Delivered, base, webhook.Attempt{At: base.Add(time.Minute), StatusCode: 204})
	if err := s.RecordAttempt(ctx, lateRecord, nil); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("RecordAttempt by a worker that lost its claim: %v, want ErrNotFound", err)
	}
	if got := mustGetDelivery(t, s, d); got.Status != webhook.Pending || len(got.Attempts) != 0 {
		t.Fatalf("after a late record: %s with %d attempts, want pending with none", got.Status, len(got.Attempts))
	}
	record := attempted(holder[0], webhook.Delivered, base, webhook.Attempt{At: base.Add(2 * time.Hour), StatusCode: 204})
	mustRecord(t, s, record)
	sameDelivery(t, mustGetDelivery(t, s, d), record)
}
