// Package tasktest is the conformance suite of task.Store and
// webhook.Store, which every store implements together (deliveries enter
// the store with the end of their task). Every store implementation runs it
// from its own tests and passes it unchanged, so the engine can rely on one
// contract whatever the storage.
package tasktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// The accounts, types and times the suite works with. accountC and the
// group and task ids of the list tests are chosen so that stores which
// concatenate key parts without a separator or length would mix them up.
const (
	accountA = "acme"
	accountB = "acme.eu"
	accountC = "acm"
	typePAN  = "verify_with_source/ind_pan"
	typeGST  = "verify_with_source/ind_gst"
)

// base is the suite's "now": nanoseconds and a zone other than UTC, so a
// store that loses either is caught.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.FixedZone("IST", 5*3600+30*60))

// farFuture is later than any lease; it is beyond what int64 nanoseconds
// since 1970 can hold, which stores must cope with.
var farFuture = time.Date(9999, time.December, 31, 0, 0, 0, 0, time.UTC)

// Store is what the suite tests: a store of tasks and of their webhook
// deliveries.
type Store interface {
	task.Store
	webhook.Store
}

// Run tests the contracts of task.Store and webhook.Store on stores made
// by open, a new empty one for every subtest. The subtests run in
// parallel; open should register the store's Close with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s task.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"CreateCanceled", testCreateCanceled},
		{"GetNotFound", testGetNotFound},
		{"Copies", testCopies},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"ListByGroup", testListByGroup},
		{"ListByTaskID", testListByTaskID},
		{"Claim", testClaim},
		{"Finish", testFinish},
		{"FinishNotTerminal", testFinishNotTerminal},
		{"FinishRescued", testFinishRescued},
		{"Release", testRelease},
		{"ReleaseStaleClaim", testReleaseStaleClaim},
		{"Rescue", testRescue},
		{"ExtendLeases", testExtendLeases},
		{"QueueDepth", testQueueDepth},
		{"Purge", testPurge},
		{"Concurrency", testConcurrency},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
	for _, tc := range deliveryTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// RunDurable tests that a persistent store keeps everything across Close
// and a new open of the same directory: tasks, results, idempotency
// records, queue order, leases and webhook deliveries. open is called more
// than once with the same dir; it should register each store's Close with
// t.Cleanup.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) Store) {
	t.Run("Tasks", func(t *testing.T) {
		t.Parallel()
		runDurableTasks(t, func(t *testing.T, dir string) task.Store { return open(t, dir) })
	})
	t.Run("Deliveries", func(t *testing.T) {
		t.Parallel()
		runDurableDeliveries(t, open)
	})
}

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

func testCreateGet(t *testing.T, s task.Store) {
	ctx := t.Context()
	async := newTask(accountA, typePAN, base)
	async.TaskID = "task \x00 ünïcode/1"
	async.GroupID = "group|1"
	async.Data = json.RawMessage(`{ "id_number": "ABCDE1234F", "html": "<b>&amp;</b>",
		"escaped": "\u00e9\n", "nested": {"list": [1, 2.5e3, null, true, "x"]} }`)
	blocking := newTask(accountA, typeGST, base.Add(time.Second))
	blocking.Async = false
	blocking.Data = json.RawMessage(`{}`)
	for _, tk := range []*task.Task{async, blocking} {
		got, err := s.Create(ctx, tk, nil, time.Time{})
		if err != nil || got != nil {
			t.Fatalf("Create = %v, %v; want nil, nil", got, err)
		}
		sameTask(t, mustGet(t, s, tk), tk)
	}
}

func testCreateExisting(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	again := clone(tk)
	again.AccountID = accountB
	again.GroupID = "other"
	if _, err := s.Create(ctx, again, nil, time.Time{}); !errors.Is(err, task.ErrExists) {
		t.Fatalf("Create of a stored request id: err = %v, want ErrExists", err)
	}
	sameTask(t, mustGet(t, s, tk), tk)
	wantDepth(t, s, typePAN, 1)
}

func testCreateCanceled(t *testing.T, s task.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tk := newTask(accountA, typePAN, base)
	if _, err := s.Create(ctx, tk, nil, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a canceled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Get(t.Context(), accountA, tk.RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get after a canceled Create: err = %v, want ErrNotFound", err)
	}
}

func testGetNotFound(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	if _, err := s.Get(ctx, accountB, tk.RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get by another account: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, accountA, "unknown"); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get of an unknown request id: err = %v, want ErrNotFound", err)
	}
}

// testCopies checks that the store shares no memory with its callers.
func testCopies(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	want := clone(tk)
	mustCreate(t, s, tk)
	tk.Data[2] = 'X'
	tk.GroupID = "changed"

	got := mustGet(t, s, want)
	sameTask(t, got, want)
	got.Data[2] = 'X'
	got.CreatedAt = got.CreatedAt.Add(time.Hour)
	sameTask(t, mustGet(t, s, want), want)

	claimed := claim(t, s, typePAN, 1, base.Add(time.Hour))
	wantIDs(t, "claim", claimed, want)
	claimed[0].Data[2] = 'X'
	want.Attempts = 1
	sameTask(t, mustGet(t, s, want), want)

	end := finished(want, task.Completed, base.Add(time.Minute))
	mustFinish(t, s, end)
	endWant := clone(end)
	end.Result[2] = 'X'
	*end.CompletedAt = base
	sameTask(t, mustGet(t, s, want), endWant)

	list, err := s.ListByGroup(ctx, accountA, want.GroupID, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListByGroup = %d tasks, %v; want 1", len(list), err)
	}
	list[0].Result[2] = 'X'
	sameTask(t, mustGet(t, s, want), endWant)
}

func testIdempotency(t *testing.T, s task.Store) {
	ctx := t.Context()
	create := func(tk *task.Task, accountID, key string, created, idemSince time.Time) (*task.Idempotency, *task.Idempotency) {
		t.Helper()
		rec := &task.Idempotency{AccountID: accountID, Key: key, Fingerprint: "fp-" + tk.RequestID, RequestID: tk.RequestID, CreatedAt: created}
		got, err := s.Create(ctx, tk, rec, idemSince)
		if err != nil {
			t.Fatalf("Create %s with key %s/%s: %v", tk.RequestID, accountID, key, err)
		}
		return got, rec
	}

	first := newTask(accountA, typePAN, base)
	got, rec := create(first, accountA, "key-1", base, base.Add(-24*time.Hour))
	if got != nil {
		t.Fatalf("first Create with a key returned %+v, want nil", got)
	}

	// Same account and key, live: the first record and nothing stored.
	replay := newTask(accountA, typePAN, base.Add(time.Minute))
	got, _ = create(replay, accountA, "key-1", base.Add(time.Minute), base.Add(time.Minute-24*time.Hour))
	sameIdempotency(t, got, rec)
	if _, err := s.Get(ctx, accountA, replay.RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get of the replayed request: err = %v, want ErrNotFound (nothing stored)", err)
	}
	wantDepth(t, s, typePAN, 1)
	list, err := s.ListByGroup(ctx, accountA, first.GroupID, 10)
	if err != nil {
		t.Fatalf("ListByGroup: %v", err)
	}
	wantIDs(t, "ListByGroup after a replay", list, first)

	// A record created exactly at idemSince is still live.
	boundary := newTask(accountA, typePAN, base.Add(time.Minute))
	got, _ = create(boundary, accountA, "key-1", base.Add(time.Minute), base)
	sameIdempotency(t, got, rec)

	// Another account's key is another key.
	other := newTask(accountB, typePAN, base.Add(time.Minute))
	if got, _ = create(other, accountB, "key-1", base.Add(time.Minute), base.Add(-24*time.Hour)); got != nil {
		t.Fatalf("Create with another account's key returned %+v, want nil", got)
	}
	mustGet(t, s, other)

	// An expired record is replaced, and the new one answers from then on.
	fresh := newTask(accountA, typePAN, base.Add(25*time.Hour))
	got, freshRec := create(fresh, accountA, "key-1", base.Add(25*time.Hour), base.Add(time.Nanosecond))
	if got != nil {
		t.Fatalf("Create over an expired record returned %+v, want nil", got)
	}
	mustGet(t, s, fresh)
	again := newTask(accountA, typePAN, base.Add(26*time.Hour))
	got, _ = create(again, accountA, "key-1", base.Add(26*time.Hour), base.Add(2*time.Hour))
	sameIdempotency(t, got, freshRec)
	wantDepth(t, s, typePAN, 3)
}

func testIdempotencyConcurrent(t *testing.T, s task.Store) {
	ctx := t.Context()
	const creators = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		answers []string
	)
	for range creators {
		tk := newTask(accountA, typePAN, base)
		wg.Go(func() {
			rec := &task.Idempotency{AccountID: accountA, Key: "race", Fingerprint: "f", RequestID: tk.RequestID, CreatedAt: base}
			got, err := s.Create(ctx, tk, rec, base.Add(-time.Hour))
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if got == nil {
				winners = append(winners, tk.RequestID)
			} else {
				answers = append(answers, got.RequestID)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d concurrent Creates with one key stored their task, want 1", len(winners))
	}
	for _, id := range answers {
		if id != winners[0] {
			t.Errorf("a replay answered request id %s, want the stored %s", id, winners[0])
		}
	}
	wantDepth(t, s, typePAN, 1)
}

func testListByGroup(t *testing.T, s task.Store) {
	testList(t, s, func(tk *task.Task, id string) { tk.GroupID = id }, s.ListByGroup)
}

func testListByTaskID(t *testing.T, s task.Store) {
	testList(t, s, func(tk *task.Task, id string) { tk.TaskID = id }, s.ListByTaskID)
}

// testList tests one of the list methods; set gives a task the id that
// list looks up.
func testList(t *testing.T, s task.Store, set func(*task.Task, string), list func(ctx context.Context, accountID, id string, limit int) ([]*task.Task, error)) {
	ctx := t.Context()
	at := func(accountID, id string, minutes int) *task.Task {
		tk := newTask(accountID, typePAN, base.Add(time.Duration(minutes)*time.Minute))
		// The field not under test gets ids of its own, to show they do
		// not matter.
		tk.GroupID, tk.TaskID = "unrelated-"+tk.RequestID, "unrelated-"+tk.RequestID
		set(tk, id)
		return tk
	}
	// Created out of time order: lists go by CreatedAt.
	g := []*task.Task{at(accountA, "eg", 3), at(accountA, "eg", 1), at(accountA, "eg", 4), at(accountA, "eg", 0), at(accountA, "eg", 2)}
	otherAccount := at(accountB, "eg", 5)
	longer := at(accountA, "eg1", 6)
	withNUL := at(accountA, "eg\x00", 7)
	shifted := at(accountC, "eeg", 8) // "acm"+"eeg" vs "acme"+"eg"
	empty := at(accountA, "", 9)
	mustCreate(t, s, g...)
	mustCreate(t, s, otherAccount, longer, withNUL, shifted, empty)

	get := func(accountID, id string, limit int) []*task.Task {
		t.Helper()
		got, err := list(ctx, accountID, id, limit)
		if err != nil {
			t.Fatalf("list %s/%q: %v", accountID, id, err)
		}
		if got == nil {
			t.Errorf("list %s/%q returned a nil slice, want an empty one", accountID, id)
		}
		return got
	}
	newest := []*task.Task{g[2], g[0], g[4], g[1], g[3]}
	wantIDs(t, "all, newest first", get(accountA, "eg", 100), newest...)
	wantIDs(t, "limit 2", get(accountA, "eg", 2), newest[:2]...)
	wantIDs(t, "limit 5", get(accountA, "eg", 5), newest...)
	wantIDs(t, "limit 0", get(accountA, "eg", 0))
	wantIDs(t, "other account", get(accountB, "eg", 100), otherAccount)
	wantIDs(t, "longer id", get(accountA, "eg1", 100), longer)
	wantIDs(t, "id with NUL", get(accountA, "eg\x00", 100), withNUL)
	wantIDs(t, "shifted account", get(accountC, "eeg", 100), shifted)
	wantIDs(t, "acme/eeg", get(accountA, "eeg", 100))
	wantIDs(t, "unknown id", get(accountA, "nope", 100))
	wantIDs(t, "empty id", get(accountA, "", 100))

	// Lists show tasks as they are now.
	wantIDs(t, "claim", claim(t, s, typePAN, 1, base.Add(time.Hour)), g[0])
	end := finished(g[0], task.Completed, base.Add(time.Hour))
	end.Attempts = 1
	mustFinish(t, s, end)
	got := get(accountA, "eg", 100)
	wantIDs(t, "after Finish", got, newest...)
	sameTask(t, got[1], end)
}

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
	if err := s.Finish(ctx, again, nil); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("second Finish: err = %v, want ErrNotFound", err)
	}
	sameTask(t, mustGet(t, s, done), end)

	fail := finished(failed, task.Failed, base.Add(3*time.Minute))
	fail.Attempts = 1
	fail.Result = json.RawMessage(`{"source_output":{"status":"source_down"}}`)
	fail.Error, fail.Message = ptr("SOURCE_DOWN"), ptr("the source did not answer")
	mustFinish(t, s, fail)
	sameTask(t, mustGet(t, s, failed), fail)

	if err := s.Finish(ctx, finished(newTask(accountA, typePAN, base), task.Completed, base), nil); !errors.Is(err, task.ErrNotFound) {
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

func testFinishNotTerminal(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	claim(t, s, typePAN, 1, base.Add(time.Hour))
	want := clone(tk)
	want.Attempts = 1

	notTerminal := finished(tk, task.InProgress, base.Add(time.Minute))
	if err := s.Finish(ctx, notTerminal, nil); err == nil {
		t.Errorf("Finish with status in_progress succeeded, want an error")
	}
	noTime := finished(tk, task.Completed, base)
	noTime.CompletedAt = nil
	if err := s.Finish(ctx, noTime, nil); err == nil {
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

	extend := func(ids []string, leaseUntil time.Time) {
		t.Helper()
		if err := s.ExtendLeases(ctx, ids, leaseUntil); err != nil {
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

func testPurge(t *testing.T, s task.Store) {
	ctx := t.Context()
	cutoff := base.Add(24 * time.Hour)
	idemBefore := base.Add(time.Hour)
	at := func(created time.Time) *task.Task {
		tk := newTask(accountA, typePAN, created)
		tk.GroupID, tk.TaskID = "purge", "purge"
		return tk
	}
	older, old, atCutoff, recent := at(base), at(base.Add(time.Minute)), at(base.Add(2*time.Minute)), at(base.Add(3*time.Minute))
	leased, queued := at(base.Add(-48*time.Hour)), at(base.Add(-47*time.Hour))
	oldKey := &task.Idempotency{AccountID: accountA, Key: "old", Fingerprint: "f", RequestID: older.RequestID, CreatedAt: base}
	if got, err := s.Create(ctx, older, oldKey, time.Time{}); err != nil || got != nil {
		t.Fatalf("Create = %v, %v; want nil, nil", got, err)
	}
	mustCreate(t, s, old, atCutoff, recent, leased)
	newKey := &task.Idempotency{AccountID: accountA, Key: "new", Fingerprint: "f", RequestID: queued.RequestID, CreatedAt: idemBefore}
	if got, err := s.Create(ctx, queued, newKey, time.Time{}); err != nil || got != nil {
		t.Fatalf("Create = %v, %v; want nil, nil", got, err)
	}
	wantIDs(t, "claim", claim(t, s, typePAN, 5, base.Add(time.Hour)), older, old, atCutoff, recent, leased)
	// Finished in another order than completed: Purge goes by completion.
	mustFinish(t, s, finished(old, task.Failed, cutoff.Add(-time.Hour)))
	mustFinish(t, s, finished(recent, task.Completed, cutoff.Add(time.Hour)))
	mustFinish(t, s, finished(older, task.Completed, cutoff.Add(-2*time.Hour)))
	mustFinish(t, s, finished(atCutoff, task.Completed, cutoff))

	purge := func(limit, want int) {
		t.Helper()
		if n, err := s.Purge(ctx, cutoff, idemBefore, limit); err != nil || n != want {
			t.Fatalf("Purge(limit %d) = %d, %v; want %d", limit, n, err, want)
		}
	}
	purge(1, 1)
	if _, err := s.Get(ctx, accountA, older.RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get of the first purged task: err = %v, want ErrNotFound", err)
	}
	mustGet(t, s, old)
	purge(100, 1)
	purge(100, 0)
	for _, tk := range []*task.Task{old} {
		if _, err := s.Get(ctx, accountA, tk.RequestID); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("Get of a purged task: err = %v, want ErrNotFound", err)
		}
	}
	for _, tk := range []*task.Task{atCutoff, recent, leased, queued} {
		mustGet(t, s, tk)
	}
	for name, list := range map[string]func(context.Context, string, string, int) ([]*task.Task, error){
		"ListByGroup": s.ListByGroup, "ListByTaskID": s.ListByTaskID,
	} {
		got, err := list(ctx, accountA, "purge", 100)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantIDs(t, name+" after Purge", got, recent, atCutoff, queued, leased)
	}

	// The old idempotency record is gone (its key is free even for a
	// caller that would accept any age); the newer one stays.
	reuse := at(base.Add(time.Hour))
	if got, err := s.Create(ctx, reuse, &task.Idempotency{AccountID: accountA, Key: "old", Fingerprint: "g", RequestID: reuse.RequestID, CreatedAt: base.Add(time.Hour)}, time.Time{}); err != nil || got != nil {
		t.Errorf("Create with a purged key = %v, %v; want nil, nil", got, err)
	}
	replay := at(base.Add(time.Hour))
	got, err := s.Create(ctx, replay, &task.Idempotency{AccountID: accountA, Key: "new", Fingerprint: "g", RequestID: replay.RequestID, CreatedAt: base.Add(time.Hour)}, time.Time{})
	if err != nil {
		t.Fatalf("Create with a kept key: %v", err)
	}
	sameIdempotency(t, got, newKey)

	// Work in progress is never purged, however old.
	if n, err := s.Rescue(ctx, farFuture); err != nil || n != 1 {
		t.Errorf("Rescue = %d, %v; want 1", n, err)
	}
	wantIDs(t, "claim after Purge", claim(t, s, typePAN, 10, base.Add(time.Hour)), leased, queued, reuse)
}

func testConcurrency(t *testing.T, s task.Store) {
	ctx := t.Context()
	const creators, perCreator, claimers = 32, 50, 4
	var wg sync.WaitGroup
	for c := range creators {
		wg.Go(func() {
			for i := range perCreator {
				tk := newTask(accountA, typePAN, base.Add(time.Duration(c*perCreator+i)))
				if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	wantDepth(t, s, typePAN, creators*perCreator)

	var (
		mu      sync.Mutex
		claimed = make(map[string]int)
	)
	for range claimers {
		wg.Go(func() {
			for {
				tasks, err := s.Claim(ctx, typePAN, 7, base.Add(time.Hour))
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(tasks) == 0 {
					return
				}
				mu.Lock()
				for _, tk := range tasks {
					claimed[tk.RequestID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wantEachOnce(t, "tasks", claimed, creators*perCreator)
	wantDepth(t, s, typePAN, 0)
}

func testClose(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, accountA, tk.RequestID); err == nil {
		t.Errorf("Get after Close succeeded, want an error")
	}
	if _, err := s.Create(ctx, newTask(accountA, typePAN, base), nil, time.Time{}); err == nil {
		t.Errorf("Create after Close succeeded, want an error")
	}
	if _, err := s.Claim(ctx, typePAN, 1, base); err == nil {
		t.Errorf("Claim after Close succeeded, want an error")
	}
	if err := s.ExtendLeases(ctx, []string{tk.RequestID}, base); err == nil {
		t.Errorf("ExtendLeases after Close succeeded, want an error")
	}
}

// lastID numbers request ids, so that no two tasks of a test binary share
// one, even across stores.
var lastID atomic.Uint64

// newTask returns an in-progress task of the account and type ("action/
// type"), created at the given time, with a new request id.
func newTask(accountID, typeName string, created time.Time) *task.Task {
	action, typ, _ := strings.Cut(typeName, "/")
	return &task.Task{
		RequestID: fmt.Sprintf("req-%08d", lastID.Add(1)),
		AccountID: accountID,
		Action:    action,
		Type:      typ,
		TaskID:    "task-1",
		GroupID:   "group-1",
		Data:      json.RawMessage(`{"id_number":"ABCDE1234F"}`),
		Status:    task.InProgress,
		CreatedAt: created,
		Async:     true,
	}
}

// finished returns a copy of tk that ended with status at the given time.
func finished(tk *task.Task, status task.Status, at time.Time) *task.Task {
	end := clone(tk)
	end.Status = status
	end.CompletedAt = &at
	end.Result = json.RawMessage(`{"source_output":{"status":"id_found","name":"A B"}}`)
	return end
}

// clone returns a deep copy of tk.
func clone(tk *task.Task) *task.Task {
	c := *tk
	c.Data = bytes.Clone(tk.Data)
	c.Result = bytes.Clone(tk.Result)
	if tk.CompletedAt != nil {
		at := *tk.CompletedAt
		c.CompletedAt = &at
	}
	if tk.Error != nil {
		c.Error = ptr(*tk.Error)
	}
	if tk.Message != nil {
		c.Message = ptr(*tk.Message)
	}
	return &c
}

func ptr(s string) *string { return &s }

func mustCreate(t *testing.T, s task.Store, tasks ...*task.Task) {
	t.Helper()
	for _, tk := range tasks {
		if got, err := s.Create(t.Context(), tk, nil, time.Time{}); err != nil || got != nil {
			t.Fatalf("Create %s = %v, %v; want nil, nil", tk.RequestID, got, err)
		}
	}
}

func mustGet(t *testing.T, s task.Store, tk *task.Task) *task.Task {
	t.Helper()
	got, err := s.Get(t.Context(), tk.AccountID, tk.RequestID)
	if err != nil {
		t.Fatalf("Get %s: %v", tk.RequestID, err)
	}
	return got
}

// mustFinish finishes tk with the deliveries.
func mustFinish(t *testing.T, s task.Store, tk *task.Task, deliveries ...*webhook.Delivery) {
	t.Helper()
	if err := s.Finish(t.Context(), tk, deliveries); err != nil {
		t.Fatalf("Finish %s: %v", tk.RequestID, err)
	}
}

// claim claims up to n tasks of the type and checks the answer is a
// non-nil slice of in-progress tasks of that type.
func claim(t *testing.T, s task.Store, typeName string, n int, leaseUntil time.Time) []*task.Task {
	t.Helper()
	got, err := s.Claim(t.Context(), typeName, n, leaseUntil)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", typeName, n, err)
	}
	if got == nil {
		t.Errorf("Claim(%s, %d) returned a nil slice, want an empty one", typeName, n)
	}
	for _, tk := range got {
		if tk.TypeName() != typeName || tk.Status != task.InProgress {
			t.Errorf("Claim(%s) returned %s of type %s, status %s", typeName, tk.RequestID, tk.TypeName(), tk.Status)
		}
	}
	return got
}

func wantDepth(t *testing.T, s task.Store, typeName string, want int) {
	t.Helper()
	n, err := s.QueueDepth(t.Context(), typeName)
	if err != nil || n != want {
		t.Errorf("QueueDepth(%s) = %d, %v; want %d", typeName, n, err, want)
	}
}

// wantIDs checks that got holds the wanted tasks, in that order.
func wantIDs(t *testing.T, what string, got []*task.Task, want ...*task.Task) {
	t.Helper()
	g := make([]string, len(got))
	for i, tk := range got {
		g[i] = tk.RequestID
	}
	w := make([]string, len(want))
	for i, tk := range want {
		w[i] = tk.RequestID
	}
	if strings.Join(g, ",") != strings.Join(w, ",") {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// sameTask checks every field of got against want: JSON by its compact
// form (nil and null alike), times by the instant.
func sameTask(t *testing.T, got, want *task.Task) {
	t.Helper()
	var diffs []string
	check := func(field string, equal bool, got, want any) {
		if !equal {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	check("RequestID", got.RequestID == want.RequestID, got.RequestID, want.RequestID)
	check("AccountID", got.AccountID == want.AccountID, got.AccountID, want.AccountID)
	check("Action", got.Action == want.Action, got.Action, want.Action)
	check("Type", got.Type == want.Type, got.Type, want.Type)
	check("TaskID", got.TaskID == want.TaskID, fmt.Sprintf("%q", got.TaskID), fmt.Sprintf("%q", want.TaskID))
	check("GroupID", got.GroupID == want.GroupID, fmt.Sprintf("%q", got.GroupID), fmt.Sprintf("%q", want.GroupID))
	check("Data", sameJSON(got.Data, want.Data), string(got.Data), string(want.Data))
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("CompletedAt", sameTime(got.CompletedAt, want.CompletedAt), show(got.CompletedAt), show(want.CompletedAt))
	check("Result", sameJSON(got.Result, want.Result), string(got.Result), string(want.Result))
	check("Error", sameString(got.Error, want.Error), show(got.Error), show(want.Error))
	check("Message", sameString(got.Message, want.Message), show(got.Message), show(want.Message))
	check("Async", got.Async == want.Async, got.Async, want.Async)
	check("Attempts", got.Attempts == want.Attempts, got.Attempts, want.Attempts)
	if len(diffs) > 0 {
		t.Errorf("task %s:\n\t%s", want.RequestID, strings.Join(diffs, "\n\t"))
	}
}

func sameIdempotency(t *testing.T, got, want *task.Idempotency) {
	t.Helper()
	if got == nil {
		t.Fatalf("no idempotency record, want %+v", want)
	}
	if got.AccountID != want.AccountID || got.Key != want.Key || got.Fingerprint != want.Fingerprint ||
		got.RequestID != want.RequestID || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("idempotency record = %+v, want %+v", got, want)
	}
}

func sameJSON(a, b json.RawMessage) bool {
	return bytes.Equal(compact(a), compact(b))
}

func compact(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func sameString(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// show prints what a pointer points to, or nil.
func show[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// benchID numbers the request ids of CreateParallel.
var benchID atomic.Uint64

// CreateParallel is the body of a store's create benchmark: about creators
// goroutines create tasks of one type as fast as s answers. It reports
// creates/s.
func CreateParallel(b *testing.B, s task.Store, creators int) {
	ctx := b.Context()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((creators + procs - 1) / procs)
	data := json.RawMessage(`{"id_number":"ABCDE1234F","name":"A Person","dob":"1990-01-01"}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := benchID.Add(1)
			tk := &task.Task{
				RequestID: fmt.Sprintf("bench-%012d", id),
				AccountID: accountA,
				Action:    "verify_with_source",
				Type:      "ind_pan",
				TaskID:    fmt.Sprintf("task-%d", id),
				GroupID:   fmt.Sprintf("group-%d", id%1000),
				Data:      data,
				Status:    task.InProgress,
				CreatedAt: time.Now(),
				Async:     true,
			}
			if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// FinishParallel is the body of a store's finish benchmark: about workers
// goroutines finish claimed tasks as fast as s answers, each task with
// the given number of webhook deliveries (the outbox). The tasks are
// created and claimed before the timer starts. It reports finishes/s.
func FinishParallel(b *testing.B, s task.Store, workers, deliveries int) {
	ctx := b.Context()
	typeName := fmt.Sprintf("verify_with_source/bench_%d", benchID.Add(1))
	action, typ, _ := strings.Cut(typeName, "/")
	data := json.RawMessage(`{"id_number":"ABCDE1234F","name":"A Person","dob":"1990-01-01"}`)
	result := json.RawMessage(`{"source_output":{"status":"id_found","name":"A Person"}}`)
	now := time.Now()
	tasks := make([]*task.Task, b.N)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < b.N; i += workers {
				id := benchID.Add(1)
				tk := &task.Task{
					RequestID: fmt.Sprintf("bench-%012d", id),
					AccountID: accountA,
					Action:    action,
					Type:      typ,
					TaskID:    fmt.Sprintf("task-%d", id),
					GroupID:   fmt.Sprintf("group-%d", id%1000),
					Data:      data,
					Status:    task.InProgress,
					CreatedAt: now,
					Async:     true,
				}
				if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
					b.Error(err)
					return
				}
				tasks[i] = tk
			}
		})
	}
	wg.Wait()
	for claimed := 0; claimed < b.N; {
		got, err := s.Claim(ctx, typeName, 1000, now.Add(time.Hour))
		if err != nil || len(got) == 0 {
			b.Fatalf("Claim = %d tasks, %v", len(got), err)
		}
		claimed += len(got)
	}
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((workers + procs - 1) / procs)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			end := tasks[next.Add(1)-1]
			completed := time.Now()
			end.Status, end.CompletedAt, end.Result = task.Completed, &completed, result
			var body []byte
			if deliveries > 0 {
				var err error
				if body, err = json.Marshal(end); err != nil {
					b.Error(err)
					return
				}
			}
			ds := make([]*webhook.Delivery, deliveries)
			for j := range ds {
				ds[j] = &webhook.Delivery{
					ID:        fmt.Sprintf("bench-dlv-%012d", benchID.Add(1)),
					AccountID: end.AccountID,
					RequestID: end.RequestID,
					URL:       fmt.Sprintf("https://hooks.example.com/%d", j),
					Event:     webhook.EventTask,
					Body:      body,
					Status:    webhook.Pending,
					CreatedAt: completed,
					NextAt:    completed,
				}
			}
			if err := s.Finish(ctx, end, ds); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "finishes/s")
}

// wantEachOnce checks that want distinct things were claimed, each once:
// claims counts the claims of each id.
func wantEachOnce(t *testing.T, what string, claims map[string]int, want int) {
	t.Helper()
	if len(claims) != want {
		t.Errorf("%d %s claimed, want %d", len(claims), what, want)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("%s claimed %d times, want once", id, n)
		}
	}
}
