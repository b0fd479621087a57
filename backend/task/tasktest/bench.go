package tasktest

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// CreateParallel is the body of a store's create benchmark: about creators
// goroutines create tasks of one type as fast as s answers. It reports
// creates/s, and cpu-µs/create: the process's CPU time (user + system,
// the benchmark's own goroutines included) per creation, what a server
// pays for its store's creations when its cores are the limit.
func CreateParallel(b *testing.B, s task.Store, creators int) {
	ctx := b.Context()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((creators + procs - 1) / procs)
	data := json.RawMessage(`{"id_number":"ABCDE1234F","name":"A Person","dob":"1990-01-01"}`)
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
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
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/create")
	}
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
	// Finish names the claim: the task's attempts, one each.
	for _, tk := range tasks {
		tk.Attempts = 1
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
			if err := s.Finish(ctx, end, ds, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "finishes/s")
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
		if err := s.Finish(ctx, finished(tk, task.Completed, base), ds, nil); err != nil {
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

// ClaimTurns is the body of a store's fair-queue benchmark: a backlog of
// tasks of one type spread evenly over the given number of accounts is
// created before the timer starts; each iteration claims one task and
// releases it, so the backlog, and the ring of accounts, stay as they
// are. With one account the queue is first-in first-out: the baseline of
// the cost of taking turns. It reports claims/s.
func ClaimTurns(b *testing.B, s task.Store, accounts, backlog int) {
	ctx := b.Context()
	typeName := fmt.Sprintf("verify_with_source/turns_%d", benchID.Add(1))
	action, typ, _ := strings.Cut(typeName, "/")
	data := json.RawMessage(`{"id_number":"ABCDE1234F"}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(backlog) {
					return
				}
				tk := &task.Task{
					RequestID: fmt.Sprintf("turns-%012d", benchID.Add(1)),
					AccountID: fmt.Sprintf("account-%05d", i%int64(accounts)),
					Action:    action, Type: typ, Data: data,
					Status: task.InProgress, CreatedAt: time.Now(), Async: true,
				}
				if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	lease := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := s.Claim(ctx, typeName, 1, lease)
		if err != nil || len(got) != 1 {
			b.Fatalf("Claim = %d tasks, %v; want 1", len(got), err)
		}
		if err := s.Release(ctx, got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}
