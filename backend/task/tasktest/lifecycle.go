package tasktest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
)

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
	if err := s.ExtendLeases(ctx, []task.Claim{task.ClaimOf(tk)}, base); err == nil {
		t.Errorf("ExtendLeases after Close succeeded, want an error")
	}
}
