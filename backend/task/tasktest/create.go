package tasktest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
)

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
	// Request ids are unique in a shard: the service makes them unique.
	_, again.AccountID, _, _ = peers(s)
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

// testFind checks that a task is found by its request id alone, whichever
// account's.
func testFind(t *testing.T, s task.Store) {
	ctx := t.Context()
	a, b := newTask(accountA, typePAN, base), newTask(accountB, typePAN, base)
	mustCreate(t, s, a)
	mustCreate(t, s, b)
	for _, want := range []*task.Task{a, b} {
		got, err := s.Find(ctx, want.RequestID)
		if err != nil || got.AccountID != want.AccountID || got.RequestID != want.RequestID || got.TaskID != want.TaskID {
			t.Errorf("Find(%s) = %+v, %v; want the task of %s", want.RequestID, got, err, want.AccountID)
		}
	}
	if _, err := s.Find(ctx, "unknown"); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Find of an unknown request id: err = %v, want ErrNotFound", err)
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

	// Read without creating: live within since, nothing after it, nothing
	// for another account or key.
	if r, err := s.IdempotencyGet(ctx, accountA, "key-1", base.Add(-time.Hour)); err != nil {
		t.Fatalf("IdempotencyGet: %v", err)
	} else {
		sameIdempotency(t, r, rec)
	}
	for _, tc := range []struct {
		account, key string
		since        time.Time
	}{{accountA, "key-1", base.Add(time.Nanosecond)}, {accountB, "key-1", base.Add(-time.Hour)}, {accountA, "key-2", base.Add(-time.Hour)}} {
		if r, err := s.IdempotencyGet(ctx, tc.account, tc.key, tc.since); err != nil || r != nil {
			t.Errorf("IdempotencyGet(%s, %s, %v) = %+v, %v; want nil, nil", tc.account, tc.key, tc.since, r, err)
		}
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
