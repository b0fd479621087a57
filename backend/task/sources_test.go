package task_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/source"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
)

// refusingLimiter refuses the first n takes, then admits every one, and
// records the keys it is asked about.
type refusingLimiter struct {
	mu      sync.Mutex
	refuse  int
	keys    []string
	takes   int
	allowed int
}

func (l *refusingLimiter) Take(_ context.Context, key string, _ ratelimit.Limit) (ratelimit.Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	l.takes++
	if l.takes <= l.refuse {
		return ratelimit.Result{RetryAfter: time.Millisecond}, nil
	}
	l.allowed++
	return ratelimit.Result{Allowed: true}, nil
}

// runLimited runs tasks of a type with the rate limit l through the
// limiter, against src, and returns the type's harness parts.
func runLimited(t *testing.T, limiter ratelimit.Store, l ratelimit.Limit, src task.Caller, waits *atomic.Int32) (*task.Service, *task.Type) {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 8, RateLimit: l}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ}, Limiter: limiter})
	r.OnSourceWait = func(*task.Type) { waits.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }}), typ
}

// TestSourceRateLimitWaits checks that a task whose source is over its
// rate limit waits for its turn and then runs: it does not fail, and the
// source is called once.
func TestSourceRateLimitWaits(t *testing.T) {
	limiter := &refusingLimiter{refuse: 3}
	var waits atomic.Int32
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	l, _ := ratelimit.ParseLimit("1/s", 1)
	svc, typ := runLimited(t, limiter, l, src, &waits)
	tk, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "acme", Type: typ, TaskID: "t", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	end, err := svc.Wait(t.Context(), "acme", tk.RequestID, 10*time.Second)
	if err != nil || end.Status != task.Completed {
		t.Fatalf("task %+v, %v: want completed after waiting", end, err)
	}
	limiter.mu.Lock()
	defer limiter.mu.Unlock()
	if limiter.takes != 4 || waits.Load() != 3 || src.calls.Load() != 1 {
		t.Errorf("%d takes, %d waits, %d calls: want 4, 3, 1", limiter.takes, waits.Load(), src.calls.Load())
	}
	for _, k := range limiter.keys {
		if k != "source:verify/pan" {
			t.Errorf("limiter asked about %q, want source:verify/pan", k)
		}
	}
}

// TestSourceRateLimitSpacesCalls checks the cap on the real clock: with
// 20 calls/s and a burst of 1, the sixth of six tasks' calls comes at
// least 5 × 50 ms after the tasks were created. A busy machine can only
// make it later. (Not the span from the first call: a busy machine may
// delay the first call's arrival more than the last's.)
func TestSourceRateLimitSpacesCalls(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	l, err := ratelimit.ParseLimit("20/s", 1)
	if err != nil {
		t.Fatal(err)
	}
	var waits atomic.Int32
	svc, typ := runLimited(t, ratelimit.NewMemory(nil), l, src, &waits)
	start := time.Now()
	var ids []string
	for i := range 6 {
		tk, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "acme", Type: typ, TaskID: string(rune('a' + i)), GroupID: "g", Data: []byte(`{}`), Async: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.RequestID)
	}
	for _, id := range ids {
		if end, err := svc.Wait(t.Context(), "acme", id, 10*time.Second); err != nil || end.Status != task.Completed {
			t.Fatalf("task %+v, %v: want completed", end, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if span := arrivals[len(arrivals)-1].Sub(start); span < 5*50*time.Millisecond-5*time.Millisecond {
		t.Errorf("6 calls within %v of the creations: want at least 250ms at 20/s", span)
	}
	if waits.Load() == 0 {
		t.Error("no task waited for its turn")
	}
}

// TestMaintenanceFailsFast checks that during a maintenance window a
// task fails SOURCE_DOWN with the window's message, without a call.
func TestMaintenanceFailsFast(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 2}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ},
		Maintenance: func(name string, _ time.Time) (string, bool) {
			return "the registry is being upgraded until 02:00 IST", name == "verify/pan"
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	tk, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "acme", Type: typ, TaskID: "t", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	end, err := svc.Wait(t.Context(), "acme", tk.RequestID, 10*time.Second)
	if err != nil || end.Status != task.Failed || end.Error == nil || *end.Error != task.SourceDown ||
		end.Message == nil || *end.Message != "the registry is being upgraded until 02:00 IST" {
		t.Fatalf("task %+v, %v: want SOURCE_DOWN with the window's message", end, err)
	}
	if n := src.calls.Load(); n != 0 {
		t.Errorf("the source was called %d times during its maintenance", n)
	}
}

// fastFailing is a source whose circuit is open: FailFast answers for it.
type fastFailing struct{ fakeSource }

func (*fastFailing) FailFast(string) (source.Outcome, bool) {
	return source.Outcome{Kind: source.Down, Message: "circuit open: source failing"}, true
}

// TestSourceOpenCircuitFailsFastUnderARateLimit checks that a task whose
// source's circuit is open fails SOURCE_DOWN at once: it does not wait
// for, nor spend, a turn of its rate limit on a call that would not be
// made.
func TestSourceOpenCircuitFailsFastUnderARateLimit(t *testing.T) {
	limiter := &refusingLimiter{refuse: 1_000_000}
	var waits atomic.Int32
	src := &fastFailing{}
	l, _ := ratelimit.ParseLimit("1/s", 1)
	svc, typ := runLimited(t, limiter, l, src, &waits)
	for i := range 5 {
		tk, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "acme", Type: typ, TaskID: fmt.Sprint(i), GroupID: "g", Data: []byte(`{}`), Async: true})
		if err != nil {
			t.Fatal(err)
		}
		end, err := svc.Wait(t.Context(), "acme", tk.RequestID, 10*time.Second)
		if err != nil || end.Status != task.Failed || end.Error == nil || *end.Error != task.SourceDown {
			t.Fatalf("task %+v, %v: want failed SOURCE_DOWN at once", end, err)
		}
	}
	limiter.mu.Lock()
	defer limiter.mu.Unlock()
	if limiter.takes != 0 || waits.Load() != 0 || src.calls.Load() != 0 {
		t.Errorf("%d takes, %d waits, %d calls: want none", limiter.takes, waits.Load(), src.calls.Load())
	}
}
