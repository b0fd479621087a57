package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/source"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// fakeSource answers calls with the outcome its answer function gives,
// and counts calls in flight.
type fakeSource struct {
	answer   func(ctx context.Context, req source.Request) source.Outcome
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	calls    atomic.Int32
}

func (f *fakeSource) Call(ctx context.Context, _ string, _ time.Duration, req source.Request) source.Outcome {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	f.calls.Add(1)
	return f.answer(ctx, req)
}

type harness struct {
	store  task.Store
	hub    *task.Hub
	svc    *task.Service
	runner *task.Runner
	typ    *task.Type
	stop   func()
}

func newHarness(t *testing.T, src task.Caller, concurrency int) *harness {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: concurrency, OutputKey: "pan_output"}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ}})
	h := &harness{store: store, hub: hub, runner: r, typ: typ, svc: task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("the runner did not stop")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) create(t *testing.T, taskID string) *task.Task {
	t.Helper()
	tk, _, err := h.svc.Create(context.Background(), task.NewTask{AccountID: "acme", Type: h.typ, TaskID: taskID, GroupID: "g", Data: []byte(`{"n":1}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (h *harness) waitEnd(t *testing.T, requestID string) *task.Task {
	t.Helper()
	tk, err := h.svc.Wait(context.Background(), "acme", requestID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !tk.Status.Terminal() {
		t.Fatalf("task %s did not end", requestID)
	}
	return tk
}

func TestRunnerMapsOutcomes(t *testing.T) {
	src := &fakeSource{answer: func(_ context.Context, req source.Request) source.Outcome {
		switch req.TaskID {
		case "ok":
			return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{"status":"id_found"}`)}
		case "rejected":
			return source.Outcome{Kind: source.Rejected, Error: "INVALID_PAN", Message: "bad pan"}
		default:
			return source.Outcome{Kind: source.Down, Message: "source answered 503"}
		}
	}}
	h := newHarness(t, src, 4)
	for _, tc := range []struct {
		taskID, status, result, code, message string
	}{
		{"ok", "completed", `{"status":"id_found"}`, "", ""},
		{"rejected", "failed", ``, "INVALID_PAN", "bad pan"},
		{"down", "failed", `{"pan_output":{"status":"source_down"}}`, "SOURCE_DOWN", "source answered 503"},
	} {
		tk := h.waitEnd(t, h.create(t, tc.taskID).RequestID)
		if string(tk.Status) != tc.status || string(tk.Result) != tc.result || tk.CompletedAt == nil {
			t.Errorf("%s: status %s result %s completed_at %v", tc.taskID, tk.Status, tk.Result, tk.CompletedAt)
		}
		if tc.code != "" && (tk.Error == nil || *tk.Error != tc.code || tk.Message == nil || *tk.Message != tc.message) {
			t.Errorf("%s: error %v message %v", tc.taskID, tk.Error, tk.Message)
		}
		if tc.code == "" && (tk.Error != nil || tk.Message != nil) {
			t.Errorf("%s: error %v message %v, want none", tc.taskID, tk.Error, tk.Message)
		}
	}
}

func TestRunnerHonoursConcurrency(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 12)
	src := &fakeSource{answer: func(ctx context.Context, _ source.Request) source.Outcome {
		started <- struct{}{}
		<-release
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	h := newHarness(t, src, 3)
	var ids []string
	for i := range 12 {
		ids = append(ids, h.create(t, string(rune('a'+i))).RequestID)
	}
	// Wait until the workers are all busy, then let the calls through one
	// at a time.
	for range 3 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d calls in flight", src.inFlight.Load())
		}
	}
	for range ids {
		release <- struct{}{}
	}
	for _, id := range ids {
		h.waitEnd(t, id)
	}
	if got := src.maxSeen.Load(); got != 3 {
		t.Fatalf("at most %d calls at once, want 3", got)
	}
	if got := src.calls.Load(); got != 12 {
		t.Fatalf("%d calls, want 12", got)
	}
}

func TestStoppingRunnerQueuesInterruptedTasksAgain(t *testing.T) {
	started := make(chan struct{}, 10)
	src := &fakeSource{answer: func(ctx context.Context, _ source.Request) source.Outcome {
		started <- struct{}{}
		<-ctx.Done()
		return source.Outcome{Kind: source.Canceled}
	}}
	h := newHarness(t, src, 2)
	tk := h.create(t, "slow")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the task never started")
	}
	h.stop()
	got, err := h.store.Get(context.Background(), "acme", tk.RequestID)
	if err != nil || got.Status != task.InProgress {
		t.Fatalf("after stop: %+v, %v; want in progress", got, err)
	}
	claimed, err := h.store.Claim(context.Background(), h.typ.Name(), 10, time.Now().Add(time.Minute))
	if err != nil || len(claimed) != 1 || claimed[0].RequestID != tk.RequestID {
		t.Fatalf("after stop the task is not queued: %v, %v", claimed, err)
	}
}

func TestPurgeOnceHonoursRetention(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	store := memory.New()
	defer store.Close()
	typ := &task.Type{Action: "a", Type: "b", Source: "http://127.0.0.1:9/"}
	_ = typ.Validate()
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: task.NewHub(), Clock: clock})
	old, _, _ := svc.Create(context.Background(), task.NewTask{AccountID: "x", Type: typ, TaskID: "t", GroupID: "g", Data: []byte(`{}`)})
	claimed, _ := store.Claim(context.Background(), typ.Name(), 1, now.Add(time.Minute))
	done := now.Add(-8 * 24 * time.Hour)
	claimed[0].Status, claimed[0].CompletedAt = task.Completed, &done
	if err := store.Finish(context.Background(), claimed[0], nil, nil); err != nil {
		t.Fatal(err)
	}
	running, _, _ := svc.Create(context.Background(), task.NewTask{AccountID: "x", Type: typ, TaskID: "t2", GroupID: "g", Data: []byte(`{}`)})

	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: task.NewHub(), Clock: clock})
	r.Retention = 7 * 24 * time.Hour
	r.PurgeOnce(context.Background())
	if _, err := store.Get(context.Background(), "x", old.RequestID); err != task.ErrNotFound {
		t.Fatalf("a task past retention is still there: %v", err)
	}
	if _, err := store.Get(context.Background(), "x", running.RequestID); err != nil {
		t.Fatalf("a running task was purged: %v", err)
	}
}

func TestReleaseEndsWaits(t *testing.T) {
	store := memory.New()
	defer store.Close()
	typ := &task.Type{Action: "a", Type: "b", Source: "http://127.0.0.1:9/"}
	_ = typ.Validate()
	hub := task.NewHub()
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub})
	tk, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "x", Type: typ, TaskID: "t", GroupID: "g", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *task.Task)
	go func() {
		w, _ := svc.Wait(context.Background(), "x", tk.RequestID, time.Hour)
		got <- w
	}()
	hub.Release()
	select {
	case w := <-got:
		if w.Status != task.InProgress {
			t.Fatalf("status %s", w.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Release did not end the wait")
	}
	// Waits after Release answer at once too.
	if w, _ := svc.Wait(context.Background(), "x", tk.RequestID, time.Hour); w == nil || w.Status != task.InProgress {
		t.Fatalf("wait after release: %+v", w)
	}
}

func TestTasksOfRemovedTypesFail(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store := memory.New()
	defer store.Close()
	gone := &task.Type{Action: "old", Type: "kind", Source: "http://127.0.0.1:9/"}
	_ = gone.Validate()
	hub := task.NewHub()
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Clock: clock})
	tk, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "x", Type: gone, TaskID: "t", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	// A runner without the type leaves the task alone within the grace…
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Clock: clock})
	r.FailOrphans(context.Background())
	if got, _ := store.Get(context.Background(), "x", tk.RequestID); got.Status != task.InProgress {
		t.Fatalf("within the grace: %s", got.Status)
	}
	// Later looks within the grace leave it unclaimed: the grace runs
	// from when the type was found orphaned, and a look costs a claim.
	mu.Lock()
	now = now.Add(task.OrphanGrace / 2)
	mu.Unlock()
	r.FailOrphans(context.Background())
	if got, _ := store.Get(context.Background(), "x", tk.RequestID); got.Status != task.InProgress || got.Attempts != 0 {
		t.Fatalf("looked at again within the grace: %s, claimed %d times; want in progress, never claimed", got.Status, got.Attempts)
	}
	// …and fails it after.
	mu.Lock()
	now = now.Add(task.OrphanGrace / 2)
	mu.Unlock()
	r.FailOrphans(context.Background())
	got, _ := store.Get(context.Background(), "x", tk.RequestID)
	if got.Status != task.Failed || got.Error == nil || *got.Error != task.SourceDown || string(got.Result) != `{"source_output":{"status":"source_down"}}` {
		t.Fatalf("after the grace: %+v", got)
	}
}

// TestOrphansOfTypesRunElsewhere: with a store shared by several nodes,
// the queued tasks of a type this node does not run wait while another
// node runs the type, and fail (after the grace) once none does.
func TestOrphansOfTypesRunElsewhere(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	store := memory.New()
	defer store.Close()
	typ := &task.Type{Action: "other", Type: "kind", Source: "http://127.0.0.1:9/"}
	_ = typ.Validate()
	hub := task.NewHub()
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Clock: clock})
	tk, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "x", Type: typ, TaskID: "t", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := true
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Clock: clock})
	r.Elsewhere = func(context.Context) func(string) bool {
		return func(name string) bool { return elsewhere && name == typ.Name() }
	}
	now = now.Add(2 * task.OrphanGrace)
	r.FailOrphans(context.Background())
	if got, _ := store.Get(context.Background(), "x", tk.RequestID); got.Status != task.InProgress || got.Attempts != 0 {
		t.Fatalf("while another node runs the type: %s, claimed %d times; want queued, never claimed", got.Status, got.Attempts)
	}
	// No node runs it any more: its grace starts then, whatever the
	// tasks' age (a reload may bring it back), and they fail after it.
	elsewhere = false
	r.FailOrphans(context.Background())
	if got, _ := store.Get(context.Background(), "x", tk.RequestID); got.Status != task.InProgress {
		t.Fatalf("as no node runs the type any more: %s; want in progress for the grace", got.Status)
	}
	now = now.Add(task.OrphanGrace)
	r.FailOrphans(context.Background())
	if got, _ := store.Get(context.Background(), "x", tk.RequestID); got.Status != task.Failed || got.Error == nil || *got.Error != task.SourceDown {
		t.Fatalf("a grace after no node ran the type: %+v; want failed SOURCE_DOWN", got)
	}
}

// renewals is a task store that signals each lease renewal.
type renewals struct {
	task.Store
	extended chan []string
}

func (r *renewals) ExtendLeases(ctx context.Context, claims []task.Claim, until time.Time) error {
	err := r.Store.ExtendLeases(ctx, claims, until)
	ids := make([]string, len(claims))
	for i, c := range claims {
		ids[i] = c.RequestID
	}
	select {
	case r.extended <- ids:
	default:
	}
	return err
}

func TestRunnerRenewsTheLeasesOfRunningTasks(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	store := &renewals{Store: mem, extended: make(chan []string, 1)}
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, Timeout: time.Minute, OutputKey: "pan_output"}
	calling := make(chan struct{})
	release := make(chan struct{})
	src := &fakeSource{answer: func(ctx context.Context, _ source.Request) source.Outcome {
		close(calling)
		select {
		case <-release:
			return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
		case <-ctx.Done():
			return source.Outcome{Kind: source.Canceled}
		}
	}}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ}})
	r.Lease = 60 * time.Millisecond
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	created, _, err := svc.Create(ctx, task.NewTask{AccountID: "a", Type: typ, TaskID: "t", GroupID: "g", Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-calling
	// Four renewals, every Lease/3: more than a lease has passed since the
	// claim, and the task is still held.
	for i := range 4 {
		select {
		case ids := <-store.extended:
			if len(ids) != 1 || ids[0] != created.RequestID {
				t.Fatalf("renewal %d of %v, want [%s]", i, ids, created.RequestID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("renewal %d did not come within 10s", i)
		}
	}
	if n, err := mem.Rescue(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Rescue while the task runs: %d, %v; want 0 (its lease is renewed)", n, err)
	}
	close(release)
	if _, err := svc.Wait(ctx, "a", created.RequestID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// flakyFinish is a task store whose Finish fails its first calls, as a
// store out of reach for a moment would.
type flakyFinish struct {
	task.Store
	failures atomic.Int32
}

func (f *flakyFinish) Finish(ctx context.Context, t *task.Task, d []*webhook.Delivery, r []quota.Counter) error {
	if f.failures.Add(-1) >= 0 {
		return errors.New("store out of reach")
	}
	return f.Store.Finish(ctx, t, d, r)
}

func TestRunnerStoresAnOutcomeThroughAShortStoreOutage(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	store := &flakyFinish{Store: mem}
	store.failures.Store(2)
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, Timeout: time.Minute, OutputKey: "pan_output"}
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ}})
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	created, _, err := svc.Create(ctx, task.NewTask{AccountID: "a", Type: typ, TaskID: "t", GroupID: "g", Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.Wait(ctx, "a", created.RequestID, 10*time.Second)
	if err != nil || got.Status != task.Completed {
		t.Fatalf("task %v, %v; want completed", got, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("source called %d times, want once: the outcome is stored, not the task run again", n)
	}
}

// startRunner runs r until the test ends.
func startRunner(t *testing.T, r *task.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the runner did not stop")
		}
	})
}

// wantInternalError checks that tk ended failed with INTERNAL_ERROR and a
// message that tells nothing of the cause.
func wantInternalError(t *testing.T, tk *task.Task) {
	t.Helper()
	if tk.Status != task.Failed || tk.Error == nil || *tk.Error != task.InternalError ||
		tk.Message == nil || *tk.Message != task.InternalMessage || tk.Result != nil || tk.CompletedAt == nil {
		t.Errorf("task %+v (error %v, message %v), want failed with %s", tk, tk.Error, tk.Message, task.InternalError)
	}
	if tk.Message != nil && strings.Contains(*tk.Message, "boom") {
		t.Errorf("message %q tells the panic", *tk.Message)
	}
}

func TestRunnerFailsATaskWhoseSourcePanicsAndGoesOn(t *testing.T) {
	src := &fakeSource{answer: func(_ context.Context, req source.Request) source.Outcome {
		if req.TaskID == "poison" {
			panic("boom")
		}
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{"status":"id_found"}`)}
	}}
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, OutputKey: "pan_output"}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.ErrorLevel)
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: mem, Hub: hub, Caller: src, Types: []*task.Type{typ}, Logger: zap.New(core)})
	panics := make(chan string, 10)
	r.OnPanic = func(t *task.Task) { panics <- t.RequestID }
	svc := task.NewService(task.ServiceConfig{Store: mem, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	startRunner(t, r)

	create := func(taskID string) string {
		tk, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "acme", Type: typ, TaskID: taskID, GroupID: "g", Data: []byte(`{}`), Async: true})
		if err != nil {
			t.Fatal(err)
		}
		return tk.RequestID
	}
	wait := func(id string) *task.Task {
		tk, err := svc.Wait(context.Background(), "acme", id, 10*time.Second)
		if err != nil || !tk.Status.Terminal() {
			t.Fatalf("task %s: %+v, %v; want it ended", id, tk, err)
		}
		return tk
	}
	// One worker: the task after the poison one runs only if the worker
	// survives it.
	poison, next := create("poison"), create("next")
	wantInternalError(t, wait(poison))
	if got := wait(next); got.Status != task.Completed {
		t.Errorf("the task after the poison one: %s, want completed", got.Status)
	}
	if got := receive(t, panics); got != poison {
		t.Errorf("OnPanic told of %s, want %s", got, poison)
	}
	entries := logs.FilterMessageSnippet("panic").All()
	if len(entries) != 1 {
		t.Fatalf("%d error logs of a panic, want 1: %v", len(entries), logs.All())
	}
	fields := entries[0].ContextMap()
	if fields["request_id"] != poison || fields["task_type"] != "verify/pan" || fields["panic"] != "boom" ||
		!strings.Contains(fmt.Sprint(fields["stack"]), "runner_test.go") {
		t.Errorf("log of the panic: %s %v", entries[0].Message, fields)
	}
	// Ended once and for all: nothing is left to rescue and run again.
	if n, err := mem.Rescue(context.Background(), time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("Rescue after the panic: %d, %v; want nothing left leased", n, err)
	}
	if n := src.calls.Load(); n != 2 {
		t.Errorf("%d source calls, want 2", n)
	}
}

func TestRunnerSurvivesPanicsInItsHooks(t *testing.T) {
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{"status":"id_found"}`)}
	}}
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, OutputKey: "pan_output"}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: mem, Hub: hub, Caller: src, Types: []*task.Type{typ}})
	var listed atomic.Int32
	// The first listing of deliveries panics; the second, for the task
	// made failed, works.
	r.Deliveries = func(tk *task.Task) []*webhook.Delivery {
		if listed.Add(1) == 1 {
			panic("boom in Deliveries")
		}
		body, _ := json.Marshal(tk.View())
		return []*webhook.Delivery{webhook.NewTaskDelivery(tk.AccountID, tk.RequestID, "https://hooks.example/x", body, time.Now())}
	}
	var finished atomic.Int32
	finishedCh := make(chan struct{}, 3)
	r.OnFinish = func(tk *task.Task, _ time.Duration) {
		n := finished.Add(1)
		finishedCh <- struct{}{}
		if n == 2 {
			panic("boom in OnFinish")
		}
	}
	svc := task.NewService(task.ServiceConfig{Store: mem, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	startRunner(t, r)
	var ids []string
	for _, id := range []string{"a", "b", "c"} {
		tk, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "acme", Type: typ, TaskID: id, GroupID: "g", Data: []byte(`{}`), Async: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.RequestID)
	}
	var ended []*task.Task
	for _, id := range ids {
		tk, err := svc.Wait(context.Background(), "acme", id, 10*time.Second)
		if err != nil || !tk.Status.Terminal() {
			t.Fatalf("task %s: %+v, %v; want it ended", id, tk, err)
		}
		ended = append(ended, tk)
	}
	// The first task's deliveries panicked: it failed, and its webhook
	// tells so.
	wantInternalError(t, ended[0])
	dels, err := mem.ListDeliveries(context.Background(), "acme", webhook.Filter{RequestID: ids[0]}, 10)
	if err != nil || len(dels) != 1 || !strings.Contains(string(dels[0].Body), task.InternalError) {
		t.Errorf("deliveries of the failed task: %v, %v; want one telling %s", dels, err, task.InternalError)
	}
	// The second one's OnFinish panicked after its end was stored: it is
	// completed, and the third ran after it.
	for i, tk := range ended[1:] {
		if tk.Status != task.Completed {
			t.Errorf("task %d: %s, want completed", i+2, tk.Status)
		}
	}
	// Waiters are told before OnFinish runs: wait for its three calls.
	for range 3 {
		select {
		case <-finishedCh:
		case <-time.After(10 * time.Second):
			t.Fatalf("OnFinish called %d times, want 3", finished.Load())
		}
	}
}

func TestRunnerEndsATaskHandedOutTooOften(t *testing.T) {
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Completed, Result: json.RawMessage(`{}`)}
	}}
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, OutputKey: "pan_output"}
	if err := typ.Validate(); err != nil {
		t.Fatal(err)
	}
	hub := task.NewHub()
	svc := task.NewService(task.ServiceConfig{Store: mem, Hub: hub})
	poison, _, err := svc.Create(context.Background(), task.NewTask{AccountID: "acme", Type: typ, TaskID: "poison", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	// Claims given back unrun (reloads, stops) do not count.
	ctx := context.Background()
	for range 3 * task.DefaultMaxRescues {
		got, err := mem.Claim(ctx, typ.Name(), 1, time.Now().Add(time.Hour))
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v, %v", got, err)
		}
		if err := mem.Release(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	// Every run after that took its node down: the lease ran out, and the
	// task was rescued, once more than the runner allows.
	for range task.DefaultMaxRescues + 1 {
		now := time.Now()
		if got, err := mem.Claim(ctx, typ.Name(), 1, now); err != nil || len(got) != 1 {
			t.Fatalf("claim: %v, %v", got, err)
		}
		if n, err := mem.Rescue(ctx, now.Add(time.Second)); err != nil || n != 1 {
			t.Fatalf("rescue: %d, %v", n, err)
		}
	}
	fresh, _, err := svc.Create(ctx, task.NewTask{AccountID: "acme", Type: typ, TaskID: "fresh", GroupID: "g", Data: []byte(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	r := task.NewRunner(task.RunnerConfig{Store: mem, Hub: hub, Caller: src, Types: []*task.Type{typ}})
	startRunner(t, r)
	r.Wake(typ.Name())
	got, err := svc.Wait(ctx, "acme", poison.RequestID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantInternalError(t, got)
	if got, err := svc.Wait(ctx, "acme", fresh.RequestID, 10*time.Second); err != nil || got.Status != task.Completed {
		t.Fatalf("the other task: %+v, %v; want completed", got, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d source calls, want 1: the task handed out too often is not run again", n)
	}
}

// receive returns the next value of ch, failing the test after 10s.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no signal within 10s")
		panic("unreachable")
	}
}

// takenOver is a task store whose first Finish finds that the task's
// lease ran out meanwhile: another worker claimed it again and completed
// it, and the call fails as a store out of reach would. Its next calls
// find the task ended under the later claim.
type takenOver struct {
	*memory.Store
	once sync.Once
}

func (s *takenOver) Finish(ctx context.Context, t *task.Task, d []*webhook.Delivery, r []quota.Counter) error {
	var err error
	s.once.Do(func() {
		now := time.Now()
		err = errors.Join(
			s.Store.ExtendLeases(ctx, []task.Claim{task.ClaimOf(t)}, now.Add(-time.Second)),
			func() error { _, err := s.Store.Rescue(ctx, now); return err }(),
		)
		if err == nil {
			var again []*task.Task
			if again, err = s.Store.Claim(ctx, t.TypeName(), 1, now.Add(time.Minute)); err == nil && len(again) == 1 {
				end := *again[0]
				end.Status, end.CompletedAt, end.Result = task.Completed, &now, json.RawMessage(`{}`)
				err = s.Store.Finish(ctx, &end, nil, nil)
			}
		}
		err = errors.Join(err, errors.New("store out of reach"))
	})
	if err != nil {
		return err
	}
	return s.Store.Finish(ctx, t, d, r)
}

// TestRunnerDoesNotTakeAnotherClaimsEnd: a worker whose Finish failed, and
// whose task another worker then ended under a later claim, drops its
// outcome (here SOURCE_DOWN): it does not tell the other's end as its
// own, to OnFinish or waiters.
func TestRunnerDoesNotTakeAnotherClaimsEnd(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	store := &takenOver{Store: mem}
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, Timeout: time.Minute, OutputKey: "pan_output"}
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Down, Message: "source answered 503"}
	}}
	core, _ := observer.New(zap.InfoLevel)
	dropped := make(chan struct{}, 1)
	logger := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if strings.Contains(e.Message, "this outcome is dropped") {
			select {
			case dropped <- struct{}{}:
			default:
			}
		}
		return nil
	}))
	var finished atomic.Int32
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: store, Hub: hub, Caller: src, Types: []*task.Type{typ}, Logger: logger})
	r.OnFinish = func(*task.Task, time.Duration) { finished.Add(1) }
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	startRunner(t, r)
	created, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "a", Type: typ, TaskID: "t", GroupID: "g", Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-dropped:
	case <-time.After(10 * time.Second):
		t.Fatalf("the outcome was not dropped; OnFinish called %d times", finished.Load())
	}
	if n := finished.Load(); n != 0 {
		t.Errorf("OnFinish called %d times for the end of another worker's claim", n)
	}
	if got, err := mem.Get(t.Context(), "a", created.RequestID); err != nil || got.Status != task.Completed || got.Attempts != 2 {
		t.Errorf("stored %+v, %v; want the other worker's end, completed on the second attempt", got, err)
	}
}

// TestRunnerRefundsWithTheEnd: the quota counters Refund lists for a task
// that ends are given a unit back by the Finish that stores its end, and
// OnFinish is told only once both are stored.
func TestRunnerRefundsWithTheEnd(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, Timeout: time.Minute, OutputKey: "pan_output"}
	src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
		return source.Outcome{Kind: source.Down, Message: "source answered 503"}
	}}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	counters := []quota.Counter{{AccountID: "a", Quota: "daily", Start: day, End: day.AddDate(0, 0, 1), Limit: 5}}
	if res, err := mem.QuotaSpend(t.Context(), quota.SpendParams{Counters: counters}); err != nil || !res.Spent {
		t.Fatalf("QuotaSpend = %+v, %v", res, err)
	}
	hub := task.NewHub()
	r := task.NewRunner(task.RunnerConfig{Store: mem, Hub: hub, Caller: src, Types: []*task.Type{typ}, Logger: zap.NewNop()})
	asked := make(chan *task.Task, 1)
	r.Refund = func(t *task.Task) []quota.Counter {
		asked <- t
		return counters
	}
	used := make(chan int64, 1)
	r.OnFinish = func(*task.Task, time.Duration) {
		u, err := mem.QuotaUsed(context.Background(), counters)
		if err != nil {
			t.Error(err)
		}
		used <- u[0]
	}
	svc := task.NewService(task.ServiceConfig{Store: mem, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
	startRunner(t, r)
	created, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "a", Type: typ, Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ended := <-asked:
		if ended.RequestID != created.RequestID || ended.Error == nil || *ended.Error != task.SourceDown {
			t.Errorf("Refund asked for %s ending %v, want %s ending %s", ended.RequestID, ended.Error, created.RequestID, task.SourceDown)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Refund was not asked within 10s")
	}
	select {
	case u := <-used:
		if u != 0 {
			t.Errorf("units used when OnFinish is told = %d, want 0 (given back with the end)", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFinish was not told within 10s")
	}
}

// TestRunnerKeepsItsOwnCodes: a source that rejects a task with one of
// taskgate's own error codes does not pass for a source down (which gives
// the quota back) or an internal error: the task fails with the default
// code of a rejection, and the source's message.
func TestRunnerKeepsItsOwnCodes(t *testing.T) {
	for _, code := range []string{task.SourceDown, task.InternalError} {
		t.Run(code, func(t *testing.T) {
			mem := memory.New()
			t.Cleanup(func() { _ = mem.Close() })
			typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/pan", Concurrency: 1, Timeout: time.Minute, OutputKey: "pan_output"}
			src := &fakeSource{answer: func(context.Context, source.Request) source.Outcome {
				return source.Outcome{Kind: source.Rejected, StatusCode: 422, Error: code, Message: "the source's own words"}
			}}
			hub := task.NewHub()
			r := task.NewRunner(task.RunnerConfig{Store: mem, Hub: hub, Caller: src, Types: []*task.Type{typ}, Logger: zap.NewNop()})
			ended := make(chan *task.Task, 1)
			r.OnFinish = func(t *task.Task, _ time.Duration) { ended <- t }
			svc := task.NewService(task.ServiceConfig{Store: mem, Hub: hub, Created: func(t *task.Task) { r.Wake(t.TypeName()) }})
			startRunner(t, r)
			if _, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "a", Type: typ, Data: json.RawMessage(`{}`)}); err != nil {
				t.Fatal(err)
			}
			select {
			case end := <-ended:
				if end.Status != task.Failed || end.Error == nil || *end.Error != source.DefaultRejectedError || *end.Message != "the source's own words" {
					t.Errorf("ended %s, error %q, message %q; want failed %s with the source's message", end.Status, deref(end.Error), deref(end.Message), source.DefaultRejectedError)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the task did not end within 10s")
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
