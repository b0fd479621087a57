package redis_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/task/tasktest"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/redistest"
)

// lastPrefix numbers the prefixes of the stores that share a server, so
// that each test has a store of its own.
var lastPrefix atomic.Uint64

// open opens a store of its own on the server and closes it when the test
// ends.
func open(t testing.TB, srv *redistest.Server) *redis.Store {
	t.Helper()
	return openPrefix(t, srv, fmt.Sprintf("test%d", lastPrefix.Add(1)))
}

// openPrefix opens the store with the prefix on the server and closes it
// when the test ends.
func openPrefix(t testing.TB, srv *redistest.Server, prefix string) *redis.Store {
	t.Helper()
	s, err := redis.Open(t.Context(), srv.URL(), redis.WithPrefix(prefix))
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

// TestStore runs the conformance suite, every subtest on a store of its
// own prefix on one server.
func TestStore(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tasktest.Run(t, func(t *testing.T) tasktest.Store { return open(t, srv) })
}

// TestStoreDurable runs the durability suite: a store is closed and opened
// again on the same server.
func TestStoreDurable(t *testing.T) {
	t.Parallel()
	tasktest.RunDurable(t, durable(false))
}

// TestStoreDurableRestart runs the durability suite with the server killed
// and started again between the close and the open: what a call returned
// for survives a crash of Redis (appendfsync always).
func TestStoreDurableRestart(t *testing.T) {
	t.Parallel()
	tasktest.RunDurable(t, durable(true))
}

// durable returns the opener of RunDurable: a server per directory, started
// at the first open and, when restart, killed and started again at the
// others.
func durable(restart bool) func(t *testing.T, dir string) tasktest.Store {
	var (
		mu      sync.Mutex
		servers = make(map[string]*redistest.Server)
	)
	return func(t *testing.T, dir string) tasktest.Store {
		mu.Lock()
		srv, ok := servers[dir]
		if !ok {
			srv = redistest.Start(t)
			servers[dir] = srv
		}
		mu.Unlock()
		if ok && restart {
			srv.Restart()
		}
		return openPrefix(t, srv, "durable")
	}
}

// TestClaimDeliveriesTwoNodes claims deliveries from two stores on one
// Redis (two nodes) at once, with a skip that lets through at most two
// per URL per call: each delivery is claimed once, and no call returns
// more than skip let through.
func TestClaimDeliveriesTwoNodes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("test%d", lastPrefix.Add(1))
	nodes := []*redis.Store{openPrefix(t, srv, prefix), openPrefix(t, srv, prefix)}
	now := time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.UTC)
	urls := []string{"https://a.example/", "https://b.example/", "https://c.example/", "https://d.example/", "https://e.example/"}
	const tasks, perTask = 10, 60
	for i := range tasks {
		tk := &task.Task{RequestID: fmt.Sprintf("req-%d", i), AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
			Status: task.InProgress, CreatedAt: now}
		if _, err := nodes[0].Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		end := *tk
		end.Status, end.CompletedAt = task.Completed, &now
		var ds []*webhook.Delivery
		for j := range perTask {
			ds = append(ds, &webhook.Delivery{ID: fmt.Sprintf("dlv-%d-%d", i, j), AccountID: "acme", RequestID: tk.RequestID,
				URL: urls[(i+j)%len(urls)], Event: webhook.EventTask, Body: json.RawMessage(`{}`), Status: webhook.Pending,
				CreatedAt: now, NextAt: now.Add(time.Duration(j*tasks + i))})
		}
		if err := nodes[0].Finish(ctx, &end, ds, nil); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu     sync.Mutex
		taken  = make(map[string]int)
		wg     sync.WaitGroup
		claims atomic.Int64
	)
	for w := range 8 {
		s := nodes[w%2]
		wg.Go(func() {
			for {
				let := make(map[string]int)
				skip := func(url string) bool {
					if let[url] >= 2 {
						return true
					}
					let[url]++
					return false
				}
				ds, err := s.ClaimDeliveries(ctx, now.Add(time.Hour), 7, now.Add(2*time.Hour), skip)
				if err != nil {
					t.Errorf("ClaimDeliveries: %v", err)
					return
				}
				if len(ds) == 0 {
					return
				}
				claims.Add(1)
				got := make(map[string]int)
				for _, d := range ds {
					got[d.URL]++
					if got[d.URL] > let[d.URL] {
						t.Errorf("a claim returned %d deliveries to %s, skip let through %d", got[d.URL], d.URL, let[d.URL])
					}
					d.Status = webhook.Delivered
					d.Attempts = append(d.Attempts, webhook.Attempt{At: now, StatusCode: 200})
					if err := s.RecordAttempt(ctx, d, nil); err != nil {
						t.Errorf("RecordAttempt: %v", err)
					}
				}
				mu.Lock()
				for _, d := range ds {
					taken[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(taken) != tasks*perTask {
		t.Errorf("%d deliveries claimed, want %d", len(taken), tasks*perTask)
	}
	for id, n := range taken {
		if n != 1 {
			t.Errorf("%s claimed %d times, want once", id, n)
		}
	}
	if n, err := nodes[1].CountDeliveries(ctx, webhook.Delivered); err != nil || n != tasks*perTask {
		t.Errorf("CountDeliveries(delivered) = %d, %v; want %d", n, err, tasks*perTask)
	}
	t.Logf("%d claims", claims.Load())
}

// TestPrefixes checks that stores with other prefixes on one Redis share
// nothing.
func TestPrefixes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	a, b := openPrefix(t, srv, "a"), openPrefix(t, srv, "b")
	now := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	tk := &task.Task{RequestID: "req-1", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan", Status: task.InProgress, CreatedAt: now}
	if _, err := a.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "acme", "req-1"); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get from another prefix: err = %v, want ErrNotFound", err)
	}
	if _, err := b.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Errorf("Create of the same request id under another prefix: %v", err)
	}
	if a.Prefix() != "{a}:" {
		t.Errorf("Prefix() = %q, want {a}:", a.Prefix())
	}
}

// TestOpenFails checks that Open answers at once when Redis does not, and
// refuses a prefix that is not a hash tag's name.
func TestOpenFails(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	url := srv.URL()
	srv.Kill()
	if s, err := redis.Open(t.Context(), url); err == nil {
		s.Close()
		t.Errorf("Open of a Redis that is down succeeded")
	}
	for _, prefix := range []string{"", "a{b", "a}"} {
		if s, err := redis.Open(t.Context(), url, redis.WithPrefix(prefix)); err == nil {
			s.Close()
			t.Errorf("Open with prefix %q succeeded", prefix)
		}
	}
}

// TestRecordSentAgain: a record whose answer was lost is sent again by its
// worker, with the same deliveries that come with it (a notice). It is
// answered as stored, and stored once: neither refused for the notice it
// already stored, nor applied twice.
func TestRecordSentAgain(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := open(t, srv)
	now := time.Now().UTC()
	tk := &task.Task{RequestID: "req-again", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
		Status: task.InProgress, CreatedAt: now}
	if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	end := *tk
	end.Status, end.CompletedAt = task.Completed, &now
	d := &webhook.Delivery{ID: "dlv-again", AccountID: "acme", RequestID: tk.RequestID, URL: "https://hooks.example/x",
		Event: webhook.EventTask, Body: json.RawMessage(`{}`), Status: webhook.Pending, CreatedAt: now, NextAt: now}
	if err := s.Finish(ctx, &end, []*webhook.Delivery{d}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, now.Add(time.Second), 1, now.Add(time.Minute), nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDeliveries = %v, %v", got, err)
	}
	rec := got[0]
	rec.Attempts = append(rec.Attempts, webhook.Attempt{At: now, StatusCode: 503})
	rec.Status, rec.NextAt = webhook.Pending, now.Add(time.Hour)
	notice := &webhook.Delivery{ID: "dlv-notice", AccountID: "acme", RequestID: tk.RequestID, URL: "https://hooks.example/failures",
		Event: "webhook.disabled", Body: json.RawMessage(`{}`), Status: webhook.Pending, CreatedAt: now, NextAt: now}
	for i := range 2 {
		if err := s.RecordAttempt(ctx, rec, []*webhook.Delivery{notice}); err != nil {
			t.Fatalf("RecordAttempt, time %d: %v", i+1, err)
		}
	}
	if n, err := s.CountDeliveries(ctx, webhook.Pending); err != nil || n != 2 {
		t.Fatalf("pending deliveries = %d, %v; want 2 (the delivery, due in an hour, and its notice)", n, err)
	}
	stored, err := s.GetDelivery(ctx, "acme", d.ID)
	if err != nil || len(stored.Attempts) != 1 || !stored.NextAt.Equal(rec.NextAt) {
		t.Fatalf("GetDelivery = %+v, %v; want one attempt, due at %v", stored, err, rec.NextAt)
	}
}
