package task_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/clocktest"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// TestWaitOutlivesAWakeUp: a waiter woken while its task still runs (all
// waiters are woken when notices may have been missed) waits on; it
// answers once the task ends, here on another "node" that only the
// store and a recheck tell about.
func TestWaitOutlivesAWakeUp(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	store := &lookups{Store: mem, gets: make(chan struct{}, 1000)}
	hub := task.NewHub()
	svc := task.NewService(task.ServiceConfig{Store: store, Hub: hub})
	svc.Recheck = 5 * time.Millisecond
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/", Concurrency: 1}
	created, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "a", Type: typ, TaskID: "t", GroupID: "g", Data: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan *task.Task, 1)
	go func() {
		got, err := svc.Wait(context.Background(), "a", created.RequestID, time.Minute)
		if err != nil {
			t.Error(err)
		}
		answered <- got
	}()
	store.wait(t, 1) // the waiter has subscribed and read its task
	hub.NotifyAll()
	// Two looks more (the wake-up's, then a recheck's): it waits on.
	store.wait(t, 2)
	select {
	case got := <-answered:
		t.Fatalf("the waiter answered %s after a wake-up while its task runs", got.Status)
	default:
	}
	// Another node ends the task: no local notice, the recheck finds it.
	claimed, err := store.Claim(t.Context(), typ.Name(), 1, time.Now().Add(time.Minute))
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	now := time.Now().UTC()
	end := claimed[0]
	end.Status, end.CompletedAt, end.Result = task.Completed, &now, json.RawMessage(`{}`)
	if err := store.Finish(t.Context(), end, []*webhook.Delivery(nil), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-answered:
		if got.Status != task.Completed {
			t.Fatalf("answered %s, want completed", got.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not answer within 10s of the task ending")
	}
}

// lookups is a task store that signals each Get.
type lookups struct {
	task.Store
	gets chan struct{}
}

func (l *lookups) Get(ctx context.Context, accountID, requestID string) (*task.Task, error) {
	t, err := l.Store.Get(ctx, accountID, requestID)
	select {
	case l.gets <- struct{}{}:
	default:
	}
	return t, err
}

// wait waits for n more Gets.
func (l *lookups) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-l.gets:
		case <-time.After(10 * time.Second):
			t.Fatal("no Get within 10s")
		}
	}
}

// TestQuotaSpentInTheTasksPeriod: a task created as a month ends spends
// its unit in the period of its creation time, the time a refund
// (SOURCE_DOWN) is given, so that the refund gives the unit back there,
// even when the month ended while the store was spending it.
func TestQuotaSpentInTheTasksPeriod(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	clk := clocktest.New(time.Date(2030, time.January, 31, 23, 59, 59, 999_000_000, time.UTC))
	book := quota.NewBook(quota.BookConfig{Store: slowSpend{Store: mem, clk: clk}, Clock: clk.Now})
	svc := task.NewService(task.ServiceConfig{Store: mem, Hub: task.NewHub(), Clock: clk.Now, Quotas: book})
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/", Concurrency: 1}
	qs := []quota.Quota{{Limit: 10, Period: quota.Month}}
	created, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "a", Type: typ, Data: json.RawMessage(`{}`), Quotas: qs})
	if err != nil {
		t.Fatal(err)
	}
	refund := quota.RefundParams{Counters: book.Counters("a", qs, typ.Name(), created.CreatedAt), RequestID: created.RequestID}
	if _, err := mem.QuotaRefund(t.Context(), refund); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Date(2030, time.January, 31, 12, 0, 0, 0, time.UTC))
	st, err := book.Status(t.Context(), "a", qs)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Used != 0 {
		t.Errorf("January's units used after the task (created %v) was refunded = %d, want 0", created.CreatedAt, st[0].Used)
	}
}

// slowSpend is a quota store whose spends take 2 ms of clk's time.
type slowSpend struct {
	quota.Store
	clk *clocktest.Clock
}

func (s slowSpend) QuotaSpend(ctx context.Context, p quota.SpendParams) (quota.SpendResult, error) {
	res, err := s.Store.QuotaSpend(ctx, p)
	s.clk.Advance(2 * time.Millisecond)
	return res, err
}

// leavingClient is a store whose Create first ends the request's context:
// the client leaves while its task is being stored.
type leavingClient struct {
	*memory.Store
	leave context.CancelFunc
}

func (s leavingClient) Create(ctx context.Context, t *task.Task, idem *task.Idempotency, since time.Time) (*task.Idempotency, error) {
	s.leave()
	return s.Store.Create(ctx, t, idem, since)
}

// TestCreateOutlivesItsClient: a create under way when its client leaves
// goes through, its task stored and its quota unit spent: a store write
// whose caller gave up may land all the same, and the task must not then
// run unbilled, nor a unit stay spent for a task not stored.
func TestCreateOutlivesItsClient(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	ctx, leave := context.WithCancel(t.Context())
	book := quota.NewBook(quota.BookConfig{Store: mem})
	svc := task.NewService(task.ServiceConfig{Store: leavingClient{Store: mem, leave: leave}, Hub: task.NewHub(), Quotas: book})
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/", Concurrency: 1}
	qs := []quota.Quota{{Limit: 10, Period: quota.Day}}
	created, _, err := svc.Create(ctx, task.NewTask{AccountID: "a", Type: typ, Data: json.RawMessage(`{}`), Quotas: qs})
	if err != nil {
		t.Fatalf("Create whose client left while it stored the task: %v", err)
	}
	if _, err := mem.Get(t.Context(), "a", created.RequestID); err != nil {
		t.Fatalf("the task was not stored: %v", err)
	}
	if st, err := book.Status(t.Context(), "a", qs); err != nil || st[0].Used != 1 {
		t.Fatalf("quota after the create: %+v, %v; want 1 unit used", st, err)
	}
	// A client gone before the create began spends nothing.
	if _, _, err := svc.Create(ctx, task.NewTask{AccountID: "a", Type: typ, Data: json.RawMessage(`{}`), Quotas: qs}); err == nil {
		t.Fatal("Create for a client already gone succeeded")
	}
	if st, err := book.Status(t.Context(), "a", qs); err != nil || st[0].Used != 1 {
		t.Fatalf("quota after a create for a client gone: %+v, %v; want 1 unit used", st, err)
	}
}
