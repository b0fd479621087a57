package redis

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestCreationsGoTogether creates 300 tasks from 300 goroutines at once:
// every one is stored and queued once, in fewer script calls than tasks.
func TestCreationsGoTogether(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("together"))
	if err := s.rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 300
	at := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			tk := &task.Task{RequestID: fmt.Sprintf("req-%03d", i), AccountID: fmt.Sprintf("acct-%d", i%7),
				Action: "verify_with_source", Type: "ind_pan", Status: task.InProgress, CreatedAt: at}
			if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if depth, err := s.QueueDepth(ctx, "verify_with_source/ind_pan"); err != nil || depth != n {
		t.Fatalf("QueueDepth = %d, %v; want %d", depth, err, n)
	}
	got, err := s.Claim(ctx, "verify_with_source/ind_pan", 2*n, at.Add(time.Hour))
	if err != nil || len(got) != n {
		t.Fatalf("Claim = %d tasks, %v; want %d", len(got), err, n)
	}
	stats, err := s.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := redistest.ScriptCalls(stats)
	// The claim is one call more.
	t.Logf("%d creations in %d script calls", n, calls-1)
	if calls-1 >= n {
		t.Errorf("%d script calls for %d concurrent creations, want fewer", calls-1, n)
	}
}
