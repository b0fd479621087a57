package redis_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/account/accounttest"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/task/tasktest"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/usage/usagetest"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestCluster runs the stores' conformance suites on a real Redis Cluster
// of three masters, each subtest's store under a prefix of its own and in
// three shards, so that every script and every call must work through the
// cluster client, routed by its declared key, and the walks over shards
// (claims, rescues, counts, purges) meet shards on every master.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t, 3)
	sharded := redis.WithShards(3)
	t.Run("Tasks", func(t *testing.T) {
		tasktest.Run(t, func(t *testing.T) tasktest.Store { return openStore(t, c.URL(), subtestPrefix(t), sharded) })
	})
	t.Run("Accounts", func(t *testing.T) {
		accounttest.Run(t, func(t *testing.T) account.Store { return openStore(t, c.URL(), subtestPrefix(t), sharded) })
	})
	t.Run("Usage", func(t *testing.T) {
		usagetest.Run(t, func(t *testing.T) usage.Store { return openStore(t, c.URL(), subtestPrefix(t), sharded) })
	})
	t.Run("Spread", func(t *testing.T) { testSpread(t, c) })
	t.Run("MasterDown", func(t *testing.T) { testMasterDown(t, c) })
}

// testMasterDown pauses the master of one shard: a claim still serves the
// tasks of the other shards (within the client's timeouts), and once the
// master is back, its shard's tasks.
func testMasterDown(t *testing.T, c *redistest.Cluster) {
	ctx := t.Context()
	s := openStore(t, c.URL(), "down", redis.WithShards(3))
	// An account in each shard.
	accounts := map[int]string{}
	for i := 0; len(accounts) < 3; i++ {
		id := "acct" + strconv.Itoa(i)
		if _, ok := accounts[s.ShardOf(id)]; !ok {
			accounts[s.ShardOf(id)] = id
		}
	}
	now := time.Now()
	for _, acct := range accounts {
		for i := range 2 {
			tk := &task.Task{RequestID: fmt.Sprintf("%s-r%d", acct, i), AccountID: acct, Action: "verify", Type: "pan",
				Status: task.InProgress, CreatedAt: now}
			if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The master of shard 0's keys.
	master, err := s.Client().(*goredis.ClusterClient).MasterForKey(ctx, s.ShardPrefix(accounts[0])+"x")
	if err != nil {
		t.Fatal(err)
	}
	var down *redistest.Server
	for _, m := range c.Masters {
		if m.Addr() == master.Options().Addr {
			down = m
		}
	}
	if down == nil {
		t.Fatalf("no master at %s", master.Options().Addr)
	}
	down.Pause()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			down.Resume()
		}
	}
	t.Cleanup(resume)
	got, err := s.Claim(ctx, "verify/pan", 10, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("Claim with a master down: %v, want the other shards' tasks", err)
	}
	for _, tk := range got {
		if tk.AccountID == accounts[0] {
			t.Fatalf("claimed %s from the shard whose master is down", tk.RequestID)
		}
	}
	// Some shards may share the paused master: at least one other shard
	// is served.
	if len(got) == 0 {
		t.Fatal("Claim with a master down: nothing, want the tasks of the shards on the other masters")
	}
	resume()
	var rest []*task.Task
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting && len(got)+len(rest) < 6; {
		if more, err := s.Claim(ctx, "verify/pan", 10, now.Add(time.Minute)); err == nil {
			rest = append(rest, more...)
		}
		select {
		case <-tick.C:
		case <-deadline:
			waiting = false
		}
	}
	if len(got)+len(rest) != 6 {
		t.Fatalf("claimed %d of 6 tasks once the master was back", len(got)+len(rest))
	}
}

// TestStoreSharded runs the conformance suite on stores of three shards on
// one server: what the walks over shards give must be what one shard
// gives.
func TestStoreSharded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tasktest.Run(t, func(t *testing.T) tasktest.Store {
		return openStore(t, srv.URL(), fmt.Sprintf("sharded%d", lastPrefix.Add(1)), redis.WithShards(3))
	})
}

// testSpread runs a mixed load on a store of six shards over the three
// masters (tasks created, claimed and finished with their deliveries,
// idempotency records, usage and rate-limit decisions of 60 accounts), then
// checks that each master holds a fair share of the keys and that every
// task was claimed once.
func testSpread(t *testing.T, c *redistest.Cluster) {
	ctx := t.Context()
	s := openStore(t, c.URL(), "spread", redis.WithShards(6))
	limiter := ratelimit.NewRedisSharded(s.Client(), func(key string) string { return s.ShardPrefix(key) + "rl:" })
	now := time.Now()
	const accounts, perAccount = 60, 5
	for a := range accounts {
		acct := "acct" + strconv.Itoa(a)
		for i := range perAccount {
			tk := &task.Task{RequestID: fmt.Sprintf("%s-r%d", acct, i), AccountID: acct, Action: "verify", Type: "pan",
				Status: task.InProgress, CreatedAt: now, GroupID: "g"}
			idem := &task.Idempotency{AccountID: acct, Key: "k" + strconv.Itoa(i), RequestID: tk.RequestID, CreatedAt: now}
			if _, err := s.Create(ctx, tk, idem, now.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := limiter.Take(ctx, acct, ratelimit.Limit{Count: 10, Period: time.Minute, Burst: 10}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddUsage(ctx, []usage.Row{{AccountID: acct, Day: now.UTC().Format(time.DateOnly), TaskType: "verify/pan",
			Counts: usage.Counts{Requests: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.QueueDepth(ctx, "verify/pan"); err != nil || n != accounts*perAccount {
		t.Fatalf("QueueDepth = %d, %v; want %d", n, err, accounts*perAccount)
	}
	seen := make(map[string]bool)
	for range accounts * perAccount {
		got, err := s.Claim(ctx, "verify/pan", 7, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		for _, tk := range got {
			if seen[tk.RequestID] {
				t.Fatalf("task %s claimed twice", tk.RequestID)
			}
			seen[tk.RequestID] = true
			end := now.Add(time.Second)
			tk.Status, tk.CompletedAt = task.Completed, &end
			d := &webhook.Delivery{ID: "d-" + tk.RequestID, AccountID: tk.AccountID, RequestID: tk.RequestID,
				URL: "http://127.0.0.1:9/" + tk.AccountID, Event: "task.completed", CreatedAt: end, NextAt: end}
			if err := s.Finish(ctx, tk, []*webhook.Delivery{d}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != accounts*perAccount {
		t.Fatalf("claimed %d tasks, want %d: some are stranded", len(seen), accounts*perAccount)
	}
	if n, err := s.CountDeliveries(ctx, webhook.Pending); err != nil || n != accounts*perAccount {
		t.Fatalf("CountDeliveries = %d, %v; want %d", n, err, accounts*perAccount)
	}
	claimed := 0
	for claimed < accounts*perAccount {
		ds, err := s.ClaimDeliveries(ctx, now.Add(time.Minute), 50, now.Add(2*time.Minute), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			t.Fatalf("claimed %d deliveries, want %d: some are stranded", claimed, accounts*perAccount)
		}
		claimed += len(ds)
	}
	// The keys of this store on each master (the other subtests' are
	// there too).
	var sizes []int
	total := 0
	for _, m := range c.Masters {
		rdb := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
		keys, err := rdb.Keys(ctx, "{spread.*").Result()
		_ = rdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(keys))
		total += len(keys)
	}
	t.Logf("keys per master: %v", sizes)
	for i, n := range sizes {
		// A fair share is a third; accounts fall into shards by a hash.
		if n < total/5 {
			t.Errorf("master %d holds %d of %d keys, want a fair share (sizes %v)", i, n, total, sizes)
		}
	}
}
