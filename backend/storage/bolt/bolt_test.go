package bolt_test

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/storage/bolt"
	"github.com/taskgate/taskgate/backend/task/tasktest"
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

func TestOpenMissingDir(t *testing.T) {
	if _, err := bolt.Open(filepath.Join(t.TempDir(), "missing", "tasks.db")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestCloseStopsWriter checks that Close leaves no goroutine of the store
// behind.
func TestCloseStopsWriter(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Release(t.Context(), []string{"unknown"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "bolt.(*Store).writeLoop") {
		t.Errorf("the writer is still running after Close:\n%s", stacks)
	}
}
