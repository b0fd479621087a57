package redis

import (
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestCreateWaitsForReplicas checks WithReplicas against a real replica:
// every task whose Create returned is already on the replica, and with the
// replica gone Create fails with ErrReplicas after the timeout, the task
// kept on the master (a retry with its Idempotency-Key finds it).
func TestCreateWaitsForReplicas(t *testing.T) {
	ctx := t.Context()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	// A replica on a busy machine may take a while to acknowledge.
	s := openTest(t, master.URL(), WithPrefix("replicas"), WithReplicas(1, 5*time.Second))
	const timeout = 300 * time.Millisecond
	short := openTest(t, master.URL(), WithPrefix("replicas"), WithReplicas(1, timeout))
	onReplica := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	t.Cleanup(func() { onReplica.Close() })
	at := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	newTask := func(i int) *task.Task {
		return &task.Task{RequestID: fmt.Sprintf("req-%d", i), AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
			Status: task.InProgress, CreatedAt: at}
	}

	for i := range 25 {
		tk := newTask(i)
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Fatalf("Create %d: %v", i, err)
		}
		if n, err := onReplica.Exists(ctx, s.shards[0].taskKey(tk.RequestID)).Result(); err != nil || n != 1 {
			t.Fatalf("task %d is not on the replica when Create returned: %d, %v", i, n, err)
		}
	}

	replica.Kill()
	tk := newTask(25)
	start := time.Now()
	_, err := short.Create(ctx, tk, nil, time.Time{})
	took := time.Since(start)
	if !errors.Is(err, ErrReplicas) {
		t.Fatalf("Create without its replica: %v, want ErrReplicas", err)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("Create without its replica failed after %v, want about %v", took, timeout)
	}
	if _, err := s.Get(ctx, tk.AccountID, tk.RequestID); err != nil {
		t.Errorf("the task is not on the master: %v", err)
	}
}
