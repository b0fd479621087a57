package bolt_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/storage/bolt"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/task/tasktest"
	"github.com/taskgate/taskgate/backend/usage"
)

// open opens a store in dir and closes it when the test ends.
func open(t testing.TB, dir string, opts ...bolt.Option) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, "tasks.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	tasktest.Run(t, func(t *testing.T) tasktest.Store { return open(t, t.TempDir()) })
}

func TestStoreDurable(t *testing.T) {
	tasktest.RunDurable(t, func(t *testing.T, dir string) tasktest.Store { return open(t, dir) })
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	s, err := bolt.Open(filepath.Join(dir, "tasks.db"), bolt.WithLockTimeout(50*time.Millisecond))
	if !errors.Is(err, bolt.ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("second Open of a held file: err = %v, want ErrLocked", err)
	}
}

// TestOpenAddsBuckets checks that a file written before the accounts and
// usage buckets existed opens, keeps what it holds and takes accounts and
// usage.
func TestOpenAddsBuckets(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "tasks.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
		Status: task.InProgress, CreatedAt: time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	bolt.RewriteFile(t, path, func(tx *bbolt.Tx) error {
		for _, name := range []string{"accounts", "usage"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})

	s = open(t, dir)
	if _, err := s.Get(ctx, tk.AccountID, tk.RequestID); err != nil {
		t.Errorf("Get of a task stored before: %v", err)
	}
	r := &account.Record{ID: "acme", CreatedAt: tk.CreatedAt, UpdatedAt: tk.CreatedAt, Version: 1}
	if err := s.CreateAccount(ctx, r); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if _, err := s.Account(ctx, r.ID); err != nil {
		t.Errorf("Account: %v", err)
	}
	if err := s.AddUsage(ctx, []usage.Row{{AccountID: "acme", Day: "2030-03-04", Counts: usage.Counts{Requests: 1}}}); err != nil {
		t.Fatalf("AddUsage: %v", err)
	}
	if rows, err := s.Usage(ctx, "acme", "2030-03-04", "2030-03-04"); err != nil || len(rows) != 1 {
		t.Errorf("Usage = %v, %v; want one row", rows, err)
	}
}

func TestOpenMissingDir(t *testing.T) {
	if _, err := bolt.Open(filepath.Join(t.TempDir(), "missing", "tasks.db")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestCloseStopsWriter checks that Close leaves no goroutine of the store
// behind.
func TestCloseStopsWriter(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Release(t.Context(), []*task.Task{{RequestID: "unknown"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The writer signals it stopped from its last deferred call: it may
	// still be on its way out for a moment after Close returns.
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "bolt.(*Store).writeLoop") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer is still running 5s after Close:\n%s", stacks)
		}
		runtime.Gosched()
	}
}

// TestCommitsCounted checks LogSyncs and Commits: one creation a log
// sync when calls come one at a time, and every creation logged, then
// applied, when they come together.
func TestCommitsCounted(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := t.Context()
	c0, ch0 := s.Commits()
	l0, r0 := s.LogSyncs()
	create := func(i int) {
		tk := &task.Task{RequestID: fmt.Sprintf("commits-%d", i), AccountID: "acme", Action: "verify", Type: "pan",
			Status: task.InProgress, CreatedAt: time.Now(), TaskID: "t", GroupID: "g"}
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Error(err)
		}
	}
	// applied waits until every creation is applied: a read does.
	applied := func() {
		if _, err := s.QueueDepth(ctx, "verify/pan"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		create(i)
	}
	if l, r := s.LogSyncs(); l-l0 != 3 || r-r0 != 3 {
		t.Fatalf("3 creations one at a time: %d log syncs of %d creations, want 3 of 3", l-l0, r-r0)
	}
	applied()
	if c, ch := s.Commits(); ch-ch0 != 3 || c-c0 < 1 || c-c0 > 3 {
		t.Fatalf("3 creations applied: %d commits of %d changes, want 3 changes in 1 to 3 commits", c-c0, ch-ch0)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() { create(100 + i) })
	}
	wg.Wait()
	if l, r := s.LogSyncs(); r-r0 != 35 || l-l0 > 35 {
		t.Fatalf("32 more at once: %d log syncs of %d creations, want 35 creations in at most 35 syncs", l-l0, r-r0)
	}
	applied()
	if c, ch := s.Commits(); ch-ch0 != 35 || c-c0 > 35 {
		t.Fatalf("32 more applied: %d commits of %d changes, want 35 changes in at most 35 commits", c-c0, ch-ch0)
	}
}

// TestUpdateRacingClose closes the store while changes are handed over
// and waiting for the writer: each is answered, nil or ErrClosed, and
// none waits forever. A change still queued when the writer stops is
// answered ErrClosed: without that, this test waits forever nearly every
// run.
func TestUpdateRacingClose(t *testing.T) {
	s := open(t, t.TempDir()) // closed once more at the end: Close may be called again
	var wg sync.WaitGroup
	started := make(chan struct{}, 64)
	for range 64 {
		wg.Go(func() {
			for {
				err := s.Release(t.Context(), []*task.Task{{RequestID: "unknown"}})
				if err != nil {
					if !errors.Is(err, bolt.ErrClosed) {
						t.Errorf("Release: %v, want nil or ErrClosed", err)
					}
					return
				}
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	bolt.CloseRacing(t, s, started, 64, &wg)
}
