package bolt_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/storage/bolt"
	"github.com/taskgate/taskgate/backend/task"
)

// TestOpenMovesQueues checks that a file of format 1, whose queues were
// one first-in first-out list per type, opens with every queued and leased
// task in place, now taking turns by account, its depth counted again
// (an entry of a missing task dropped), and is marked format 2.
func TestOpenMovesQueues(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "tasks.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	newTask := func(id, accountID string) *task.Task {
		tk := &task.Task{RequestID: id, AccountID: accountID, Action: "verify_with_source", Type: "ind_pan",
			Status: task.InProgress, CreatedAt: at}
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	const typeName = "verify_with_source/ind_pan"
	newTask("a0", "acme")
	if got, err := s.Claim(ctx, typeName, 1, at.Add(time.Minute)); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		newTask(id, "acme")
	}
	newTask("b1", "globex")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Write the queues back in the layout of format 1: a bucket per type
	// under "queues", mapping the sequence number to the request id.
	bolt.RewriteFile(t, path, func(tx *bbolt.Tx) error {
		fair := tx.Bucket([]byte("task_queues"))
		old, err := tx.CreateBucket([]byte("queues"))
		if err != nil {
			return err
		}
		err = fair.ForEachBucket(func(name []byte) error {
			src := fair.Bucket(name)
			dst, err := old.CreateBucket(name)
			if err != nil {
				return err
			}
			if err := dst.SetSequence(src.Sequence()); err != nil {
				return err
			}
			return src.ForEach(func(k, v []byte) error {
				if k[0] != 'q' {
					return nil
				}
				return dst.Put(bytes.Clone(k[len(k)-8:]), bytes.Clone(v))
			})
		})
		if err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte("task_queues")); err != nil {
			return err
		}
		// An entry whose task is gone, counted in the depth: a claim of
		// format 1 skipped it.
		q := old.Bucket([]byte(typeName))
		if err := q.Put([]byte{0xff, 0, 0, 0, 0, 0, 0, 0}, []byte("ghost")); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("depth")).Put([]byte(typeName), []byte{0, 0, 0, 0, 0, 0, 0, 5}); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("taskgate-tasks-1"))
	})

	s = open(t, dir)
	if n, err := s.QueueDepth(ctx, typeName); err != nil || n != 4 {
		t.Errorf("QueueDepth = %d, %v; want 4", n, err)
	}
	if n, err := s.Rescue(ctx, at.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("Rescue = %d, %v; want the task leased before", n, err)
	}
	got, err := s.Claim(ctx, typeName, 10, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range got {
		ids = append(ids, tk.RequestID)
	}
	if want := []string{"a0", "b1", "a1", "a2", "a3"}; !slices.Equal(ids, want) {
		t.Errorf("claimed %v after the move, want %v", ids, want)
	}
	// A later task gets a number after every moved one.
	newTask("a4", "acme")
	newTask("a5", "acme")
	if got, err := s.Claim(ctx, typeName, 10, at.Add(time.Hour)); err != nil || len(got) != 2 || got[0].RequestID != "a4" {
		t.Errorf("Claim of the later tasks = %v, %v; want a4, a5", got, err)
	}
}
