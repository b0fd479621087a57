package tasktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
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
	{"DeliveriesExtendLeases", testDeliveriesExtendLeases},
	{"DeliveriesCount", testDeliveriesCount},
	{"DeliveriesPurge", testDeliveriesPurge},
	{"DeliveriesConcurrency", testDeliveriesConcurrency},
	{"DeliveriesClose", testDeliveriesClose},
	{"DeliveriesSaturatedBacklog", testDeliveriesSaturatedBacklog},
	{"DeliveriesSkipOncePerURL", testDeliveriesSkipOncePerURL},
	{"DeliveriesClaimOrderAcrossURLs", testDeliveriesClaimOrderAcrossURLs},
	{"DeliveriesClaimModel", testDeliveriesClaimModel},
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
	if err := s.Finish(ctx, finished(tk, task.Failed, base.Add(time.Minute)), []*webhook.Delivery{again}); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("second Finish: err = %v, want ErrNotFound", err)
	}
	notStored("second Finish", again)
	sameTask(t, mustGet(t, s, tk), end)

	unknown := newTask(accountA, typePAN, base)
	ofUnknown := newDelivery(unknown, hookA, base, base)
	if err := s.Finish(ctx, finished(unknown, task.Completed, base), []*webhook.Delivery{ofUnknown}); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Finish of an unknown task: err = %v, want ErrNotFound", err)
	}
	notStored("Finish of an unknown task", ofUnknown)

	running := claimed(t, s, accountA, base)
	want := clone(running)
	want.Attempts = 1
	ofRunning := newDelivery(running, hookA, base, base)
	if err := s.Finish(ctx, finished(running, task.InProgress, base), []*webhook.Delivery{ofRunning}); err == nil {
		t.Errorf("Finish with status in_progress succeeded, want an error")
	}
	notStored("Finish with status in_progress", ofRunning)

	// An id already stored fails the whole Finish: the task stays as it
	// was and no other delivery of the call is stored.
	dup := clone(running)
	dup.Status, dup.CompletedAt = task.Completed, &base
	if err := s.Finish(ctx, dup, []*webhook.Delivery{ofRunning, stored}); err == nil {
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

	extend := func(ids []string, leaseUntil time.Time) {
		t.Helper()
		if err := s.ExtendDeliveryLeases(ctx, ids, leaseUntil); err != nil {
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
			if err := s.Finish(ctx, ends[i], all[i]); err != nil {
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
		"ExtendDeliveryLeases": func() error { return s.ExtendDeliveryLeases(ctx, []string{d.ID}, base) },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s after Close succeeded, want an error", name)
		}
	}
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

// lastDeliveryID numbers delivery ids, so that no two deliveries of a test
// binary share one, even across stores.
var lastDeliveryID atomic.Uint64

// newDelivery returns a pending delivery of tk's end to url, created and
// due at the given times, with a new id.
func newDelivery(tk *task.Task, url string, created, next time.Time) *webhook.Delivery {
	return &webhook.Delivery{
		ID:        fmt.Sprintf("dlv-%08d", lastDeliveryID.Add(1)),
		AccountID: tk.AccountID,
		RequestID: tk.RequestID,
		URL:       url,
		Event:     webhook.EventTask,
		Body:      json.RawMessage(`{"request_id":"` + tk.RequestID + `","status":"completed","note":"<b>&amp;</b> \u00e9"}`),
		Status:    webhook.Pending,
		CreatedAt: created,
		NextAt:    next,
	}
}

// claimed creates an in-progress task of the account and claims it. The
// store must have no other queued task of its type.
func claimed(t *testing.T, s task.Store, accountID string, created time.Time) *task.Task {
	t.Helper()
	tk := newTask(accountID, typePAN, created)
	mustCreate(t, s, tk)
	wantIDs(t, "claim", claim(t, s, typePAN, 1, farFuture), tk)
	return tk
}

// attempted returns a copy of d after the attempts, with the status and
// NextAt they gave.
func attempted(d *webhook.Delivery, status webhook.Status, next time.Time, attempts ...webhook.Attempt) *webhook.Delivery {
	c := cloneDelivery(d)
	c.Status, c.NextAt = status, next
	c.Attempts = append(c.Attempts, attempts...)
	return c
}

// cloneDelivery returns a deep copy of d.
func cloneDelivery(d *webhook.Delivery) *webhook.Delivery {
	c := *d
	c.Body = bytes.Clone(d.Body)
	c.Attempts = slices.Clone(d.Attempts)
	return &c
}

func mustGetDelivery(t *testing.T, s webhook.Store, d *webhook.Delivery) *webhook.Delivery {
	t.Helper()
	got, err := s.GetDelivery(t.Context(), d.AccountID, d.ID)
	if err != nil {
		t.Fatalf("GetDelivery %s: %v", d.ID, err)
	}
	return got
}

// mustRecord records d's attempt with the deliveries in also.
func mustRecord(t *testing.T, s webhook.Store, d *webhook.Delivery, also ...*webhook.Delivery) {
	t.Helper()
	if err := s.RecordAttempt(t.Context(), d, also); err != nil {
		t.Fatalf("RecordAttempt %s: %v", d.ID, err)
	}
}

// claimDeliveries claims up to n deliveries and checks the answer is a
// non-nil slice of pending deliveries due at now.
func claimDeliveries(t *testing.T, s webhook.Store, now time.Time, n int, leaseUntil time.Time, skip func(string) bool) []*webhook.Delivery {
	t.Helper()
	got, err := s.ClaimDeliveries(t.Context(), now, n, leaseUntil, skip)
	if err != nil {
		t.Fatalf("ClaimDeliveries(%v, %d): %v", now, n, err)
	}
	if got == nil {
		t.Errorf("ClaimDeliveries(%v, %d) returned a nil slice, want an empty one", now, n)
	}
	for _, d := range got {
		if d.Status != webhook.Pending || d.NextAt.After(now) {
			t.Errorf("ClaimDeliveries(%v) returned %s with status %s, due at %v", now, d.ID, d.Status, d.NextAt)
		}
	}
	return got
}

func wantCount(t *testing.T, s webhook.Store, status webhook.Status, want int) {
	t.Helper()
	if n, err := s.CountDeliveries(t.Context(), status); err != nil || n != want {
		t.Errorf("CountDeliveries(%s) = %d, %v; want %d", status, n, err, want)
	}
}

// wantDeliveries checks that got holds the wanted deliveries, in that
// order.
func wantDeliveries(t *testing.T, what string, got []*webhook.Delivery, want ...*webhook.Delivery) {
	t.Helper()
	if g, w := deliveryIDs(got), deliveryIDs(want); !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// wantDeliverySet checks that got holds the wanted deliveries, in any
// order.
func wantDeliverySet(t *testing.T, what string, got []*webhook.Delivery, want ...*webhook.Delivery) {
	t.Helper()
	g, w := deliveryIDs(got), deliveryIDs(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v (in any order)", what, g, w)
	}
}

func deliveryIDs(ds []*webhook.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

// sameDelivery checks every field of got against want: the body by its
// compact form, times by the instant, attempts one by one.
func sameDelivery(t *testing.T, got, want *webhook.Delivery) {
	t.Helper()
	var diffs []string
	check := func(field string, equal bool, got, want any) {
		if !equal {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("AccountID", got.AccountID == want.AccountID, got.AccountID, want.AccountID)
	check("RequestID", got.RequestID == want.RequestID, got.RequestID, want.RequestID)
	check("URL", got.URL == want.URL, got.URL, want.URL)
	check("Event", got.Event == want.Event, got.Event, want.Event)
	check("Body", sameJSON(got.Body, want.Body), string(got.Body), string(want.Body))
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("NextAt", got.NextAt.Equal(want.NextAt), got.NextAt, want.NextAt)
	check("len(Attempts)", len(got.Attempts) == len(want.Attempts), len(got.Attempts), len(want.Attempts))
	for i := range min(len(got.Attempts), len(want.Attempts)) {
		g, w := got.Attempts[i], want.Attempts[i]
		field := fmt.Sprintf("Attempts[%d]", i)
		check(field+".At", g.At.Equal(w.At), g.At, w.At)
		check(field+".StatusCode", g.StatusCode == w.StatusCode, g.StatusCode, w.StatusCode)
		check(field+".Error", g.Error == w.Error, fmt.Sprintf("%q", g.Error), fmt.Sprintf("%q", w.Error))
		check(field+".DurationMS", g.DurationMS == w.DurationMS, g.DurationMS, w.DurationMS)
	}
	if len(diffs) > 0 {
		t.Errorf("delivery %s:\n\t%s", want.ID, strings.Join(diffs, "\n\t"))
	}
}

// testDeliveriesSaturatedBacklog checks that a URL at its cap with a large
// backlog neither hides another URL's delivery due after it nor is asked
// about more than once per claim, and that its backlog stays due in order.
func testDeliveriesSaturatedBacklog(t *testing.T, s Store) {
	const backlog = 5000
	slow := storeBacklog(t, s, hookA, backlog, base)
	tk := claimed(t, s, accountB, base)
	later := newDelivery(tk, hookB, base, base.Add(time.Second))
	notDue := newDelivery(tk, hookC, base, base.Add(time.Hour))
	mustFinish(t, s, finished(tk, task.Completed, base), later, notDue)
	now := base.Add(time.Minute)
	lease := base.Add(2 * time.Hour)

	asked := make(map[string]int)
	atCap := func(url string) bool {
		asked[url]++
		return url == hookA
	}
	wantDeliveries(t, "claim past the backlog", claimDeliveries(t, s, now, 10, lease, atCap), later)
	if want := map[string]int{hookA: 1, hookB: 1}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}
	clear(asked)
	wantDeliveries(t, "claim with the backlog alone due", claimDeliveries(t, s, now, 10, lease, atCap))
	if want := map[string]int{hookA: 1}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}
	wantCount(t, s, webhook.Pending, backlog+2)

	// The dispatcher's skip: two attempts per URL at most, one in flight.
	inFlight := map[string]int{hookA: 1}
	perURL := func(url string) bool {
		asked[url]++
		if inFlight[url] >= 2 {
			return true
		}
		inFlight[url]++
		return false
	}
	clear(asked)
	wantDeliveries(t, "claim under the cap", claimDeliveries(t, s, now, 10, lease, perURL), slow[0])
	if want := map[string]int{hookA: 2}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}

	// What was passed over stays due, in its order.
	var rest []*webhook.Delivery
	for len(rest) < backlog {
		got := claimDeliveries(t, s, farFuture, 1500, lease, nil)
		if len(got) == 0 {
			break
		}
		rest = append(rest, got...)
	}
	wantDeliveries(t, "claim the backlog", rest, append(slices.Clone(slow[1:]), notDue)...)
}

// testDeliveriesSkipOncePerURL checks that skip is asked before each
// delivery taken and, in one call, at most once more per URL: a URL it
// turned down is passed over for the rest of the call, however many of its
// deliveries fall due among those taken.
func testDeliveriesSkipOncePerURL(t *testing.T, s Store) {
	tk := claimed(t, s, accountA, base)
	at := func(url string, ms int) *webhook.Delivery {
		return newDelivery(tk, url, base, base.Add(time.Duration(ms)*time.Millisecond))
	}
	a1, b15, a2, b25, a3, b35, a4, a5, c6 := at(hookA, 1000), at(hookB, 1500), at(hookA, 2000), at(hookB, 2500),
		at(hookA, 3000), at(hookB, 3500), at(hookA, 4000), at(hookA, 5000), at(hookC, 6000)
	mustFinish(t, s, finished(tk, task.Completed, base), a1, b15, a2, b25, a3, b35, a4, a5, c6)
	now := base.Add(10 * time.Second)
	lease := base.Add(time.Hour)

	// Two per URL, and one to A in flight already.
	inFlight := map[string]int{hookA: 1}
	var asked []string
	perURL := func(url string) bool {
		asked = append(asked, url)
		if inFlight[url] >= 2 {
			return true
		}
		inFlight[url]++
		return false
	}
	wantDeliveries(t, "claim two per URL", claimDeliveries(t, s, now, 10, lease, perURL), a1, b15, b25, c6)
	if want := []string{hookA, hookB, hookA, hookB, hookB, hookC}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	// n reached: the call stops asking.
	asked = nil
	clear(inFlight)
	wantDeliveries(t, "claim 2", claimDeliveries(t, s, now, 2, lease, perURL), a2, a3)
	if want := []string{hookA, hookA}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	asked = nil
	all := func(url string) bool {
		asked = append(asked, url)
		return true
	}
	wantDeliveries(t, "claim skipping all", claimDeliveries(t, s, now, 10, lease, all))
	if want := []string{hookB, hookA}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	wantDeliveries(t, "claim the rest", claimDeliveries(t, s, now, 10, lease, nil), b35, a4, a5)
}

// testDeliveriesClaimOrderAcrossURLs checks that among the URLs not turned
// down the earliest due deliveries are taken first, whatever their URL,
// also after a retry moves a URL's delivery ahead of the others.
func testDeliveriesClaimOrderAcrossURLs(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	at := func(url string, seconds int) *webhook.Delivery {
		return newDelivery(tk, url, base, base.Add(time.Duration(seconds)*time.Second))
	}
	a1, b2, c3, a4, b5, c6, a7, c8 := at(hookA, 1), at(hookB, 2), at(hookC, 3), at(hookA, 4), at(hookB, 5),
		at(hookC, 6), at(hookA, 7), at(hookC, 8)
	// Stored out of order, and across two tasks.
	mustFinish(t, s, finished(tk, task.Completed, base), c6, a4, b5, a1)
	tk2 := claimed(t, s, accountA, base)
	mustFinish(t, s, finished(tk2, task.Completed, base), c8, a7, c3, b2)
	now := base.Add(10 * time.Second)
	lease := base.Add(time.Hour)
	skipB := func(url string) bool { return url == hookB }
	wantDeliveries(t, "claim 4 skipping B", claimDeliveries(t, s, now, 4, lease, skipB), a1, c3, a4, c6)
	// c8 falls due before a7 and b2.
	if _, err := s.RetryDelivery(ctx, accountA, c8.ID, base.Add(time.Second+time.Millisecond)); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	wantDeliveries(t, "claim 1", claimDeliveries(t, s, now, 1, lease, nil), c8)
	wantDeliveries(t, "claim the rest", claimDeliveries(t, s, now, 10, lease, nil), b2, b5, a7)
}

// testDeliveriesClaimModel runs random changes against the store and a
// model of the contract, and checks that every claim takes what the model
// takes, in its order, with skip asked what the model asks: the due
// deliveries earliest first, passing over the URLs skip turned down.
func testDeliveriesClaimModel(t *testing.T, s Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	urls := []string{hookA, hookB, hookC, hookFailure, hookA + "/2"}
	type state struct {
		d      *webhook.Delivery
		leased bool
		retry  bool // RetryDelivery while leased
	}
	var all []*state
	byID := make(map[string]*state)
	// Every NextAt is new, so that the order has no ties.
	used := make(map[time.Time]bool)
	newTime := func() time.Time {
		for {
			at := base.Add(time.Duration(rng.Int64N(int64(100 * time.Second))))
			if !used[at] {
				used[at] = true
				return at
			}
		}
	}
	modelClaim := func(now time.Time, n int, skip func(string) bool) []*webhook.Delivery {
		var due []*state
		for _, st := range all {
			if st.d.Status == webhook.Pending && !st.leased && !st.d.NextAt.After(now) {
				due = append(due, st)
			}
		}
		slices.SortFunc(due, func(a, b *state) int { return a.d.NextAt.Compare(b.d.NextAt) })
		out := []*webhook.Delivery{}
		turnedDown := make(map[string]bool)
		for _, st := range due {
			if len(out) == n {
				break
			}
			if turnedDown[st.d.URL] {
				continue
			}
			if skip(st.d.URL) {
				turnedDown[st.d.URL] = true
				continue
			}
			st.leased = true
			out = append(out, st.d)
		}
		return out
	}
	pick := func(ok func(*state) bool) *state {
		var from []*state
		for _, st := range all {
			if ok(st) {
				from = append(from, st)
			}
		}
		if len(from) == 0 {
			return nil
		}
		return from[rng.IntN(len(from))]
	}

	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 3:
			tk := claimed(t, s, accountA, base)
			var ds []*webhook.Delivery
			for range 1 + rng.IntN(6) {
				d := newDelivery(tk, urls[rng.IntN(len(urls))], base, newTime())
				ds = append(ds, d)
				st := &state{d: cloneDelivery(d)}
				all = append(all, st)
				byID[d.ID] = st
			}
			mustFinish(t, s, finished(tk, task.Completed, base), ds...)
		case op < 6:
			now := base.Add(time.Duration(rng.Int64N(int64(120 * time.Second))))
			n := 1 + rng.IntN(8)
			caps := make(map[string]int)
			for _, u := range urls {
				caps[u] = rng.IntN(4)
			}
			asker := func(asked *[]string) func(string) bool {
				counts := make(map[string]int)
				return func(url string) bool {
					*asked = append(*asked, url)
					if counts[url] >= caps[url] {
						return true
					}
					counts[url]++
					return false
				}
			}
			var asked, modelAsked []string
			got := claimDeliveries(t, s, now, n, base.Add(time.Hour), asker(&asked))
			want := modelClaim(now, n, asker(&modelAsked))
			wantDeliveries(t, fmt.Sprintf("step %d: claim", step), got, want...)
			if !slices.Equal(asked, modelAsked) {
				t.Errorf("step %d: skip was asked about %q, want %q", step, asked, modelAsked)
			}
		case op < 8:
			st := pick(func(st *state) bool { return st.leased })
			if st == nil {
				continue
			}
			status := []webhook.Status{webhook.Pending, webhook.Pending, webhook.Delivered, webhook.Failed}[rng.IntN(4)]
			next := newTime()
			mustRecord(t, s, attempted(st.d, status, next, webhook.Attempt{At: base, StatusCode: 500}))
			st.leased = false
			switch {
			case st.retry:
				st.retry = false
			case status == webhook.Pending:
				st.d.NextAt = next
			default:
				st.d.Status = status
			}
		case op < 9:
			st := pick(func(*state) bool { return true })
			if st == nil {
				continue
			}
			now := newTime()
			if _, err := s.RetryDelivery(ctx, accountA, st.d.ID, now); err != nil {
				t.Fatalf("step %d: RetryDelivery: %v", step, err)
			}
			st.d.Status, st.d.NextAt = webhook.Pending, now
			if st.leased {
				st.retry = true
			}
		default:
			want := 0
			for _, st := range all {
				if st.leased {
					st.leased, st.retry = false, false
					want++
				}
			}
			if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != want {
				t.Fatalf("step %d: RescueDeliveries = %d, %v; want %d", step, n, err, want)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	want := modelClaim(farFuture, len(all), func(string) bool { return false })
	wantDeliveries(t, "claim everything", claimDeliveries(t, s, farFuture, len(all), farFuture, nil), want...)
}

// storeBacklog stores count pending deliveries to url, due one nanosecond
// apart from first on, with the ends of as many tasks as it takes (at most
// 1,000 deliveries each), and returns them in the order they fall due.
func storeBacklog(tb testing.TB, s Store, url string, count int, first time.Time) []*webhook.Delivery {
	tb.Helper()
	ctx := tb.Context()
	out := make([]*webhook.Delivery, 0, count)
	for len(out) < count {
		tk := newTask(accountA, typeGST, base)
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			tb.Fatalf("Create: %v", err)
		}
		ds := make([]*webhook.Delivery, min(1000, count-len(out)))
		for i := range ds {
			ds[i] = newDelivery(tk, url, base, first.Add(time.Duration(len(out)+i)))
		}
		if err := s.Finish(ctx, finished(tk, task.Completed, base), ds); err != nil {
			tb.Fatalf("Finish: %v", err)
		}
		out = append(out, ds...)
	}
	return out
}

// ClaimBehindBacklog is the body of a store's benchmark of ClaimDeliveries
// behind a saturated URL: backlog deliveries to one URL are due, and skip
// says that URL is at its cap (as the dispatcher's does while a slow
// receiver holds all its slots); a few deliveries to another URL are due
// after the whole backlog. Each op is a claim of up to 4, which must take
// the earliest of those few, and an attempt recorded that leaves it
// pending where it was, for the next op. It reports how often skip is
// asked per claim.
func ClaimBehindBacklog(b *testing.B, s Store, backlog int) {
	ctx := b.Context()
	storeBacklog(b, s, hookA, backlog, base)
	others := storeBacklog(b, s, hookB, 4, base.Add(time.Duration(backlog)))
	now := base.Add(time.Hour)
	asked, taken := 0, 0
	skip := func(url string) bool {
		asked++
		if url == hookA || taken > 0 {
			return true
		}
		taken++
		return false
	}
	claims := 0
	b.ReportAllocs()
	for b.Loop() {
		taken = 0
		got, err := s.ClaimDeliveries(ctx, now, 4, farFuture, skip)
		if err != nil {
			b.Fatalf("ClaimDeliveries: %v", err)
		}
		if len(got) != 1 || got[0].ID != others[0].ID {
			b.Fatalf("claim took %v, want %s", deliveryIDs(got), others[0].ID)
		}
		if err := s.RecordAttempt(ctx, got[0], nil); err != nil {
			b.Fatalf("RecordAttempt: %v", err)
		}
		claims++
	}
	b.ReportMetric(float64(asked)/float64(claims), "skips/op")
}
