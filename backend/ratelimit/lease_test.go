package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/internal/redistest"
)

// leased returns the tokens store r holds leased of key.
func leased(r *Redis, key string) int64 {
	v, ok := r.held.Load(key)
	if !ok {
		return 0
	}
	h := v.(*held)
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.left
}

// TestLeasesKeepTheLimitAcrossNodes has two nodes, each a store with
// leases on the same Redis, take 6,000 requests of one key at once under
// a limit of 2,000 an hour with a burst of 2,000: the nodes lease up to 20
// tokens a call, and every token Redis gave is either admitted or still
// leased, so exactly 2,000 are, and at most 40 are left unused.
func TestLeasesKeepTheLimitAcrossNodes(t *testing.T) {
	ctx := t.Context()
	a, rdb := newTestRedis(t)
	a.ahead = 5 * time.Millisecond
	b := NewRedis(rdb, testPrefix, WithLeases(5*time.Millisecond))
	l := mustLimit(t, "2000/h", 2000)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 6000 {
		r := []*Redis{a, b}[i%2]
		wg.Go(func() {
			<-start
			res, err := r.Take(ctx, "k", l)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	left := leased(a, "k") + leased(b, "k")
	t.Logf("admitted %d, %d left leased", admitted, left)
	if admitted+int(left) != 2000 || left > 40 {
		t.Fatalf("admitted %d and %d left leased, want 2000 in all and at most 40 left", admitted, left)
	}
}

// TestLeasesSpareCalls takes 2,000 requests of a busy key one after the
// other on a node with leases: most are admitted from leased tokens, so
// far fewer calls reach Redis than requests, and each result is that of
// an admission (Remaining under the burst, a reset within the window).
func TestLeasesSpareCalls(t *testing.T) {
	ctx := t.Context()
	r, rdb := newTestRedis(t)
	r.ahead = 5 * time.Millisecond
	l := mustLimit(t, "1000000/s", 0)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		res, err := r.Take(ctx, "busy", l)
		if err != nil || !res.Allowed || res.Remaining >= l.Burst || res.ResetAfter > l.Window() {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := redistest.ScriptCalls(stats)
	t.Logf("2000 requests in %d script calls", calls)
	if calls > 500 {
		t.Fatalf("%d script calls for 2000 requests of a busy key, want at most 500", calls)
	}
}

// TestLeasesRememberRefusals spends a burst, then takes more requests on
// a node with leases: Redis refuses the first, and the node refuses the
// next ones itself until the refusal ends, with a Retry-After that counts
// down, sending nothing; once it ends, a request goes to Redis again and
// is admitted.
func TestLeasesRememberRefusals(t *testing.T) {
	ctx := t.Context()
	r, rdb := newTestRedis(t)
	r.ahead = 5 * time.Millisecond
	l := mustLimit(t, "5/s", 5) // a token every 200ms
	for i := range 5 {
		if res, err := r.Take(ctx, "k", l); err != nil || !res.Allowed {
			t.Fatalf("request %d of the burst: %+v, %v", i, res, err)
		}
	}
	first, err := r.Take(ctx, "k", l)
	if err != nil || first.Allowed || first.RetryAfter <= 0 {
		t.Fatalf("request past the burst: %+v, %v; want refused", first, err)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	next, err := r.Take(ctx, "k", l)
	if err != nil || next.Allowed || next.RetryAfter > first.RetryAfter || next.RetryAfter <= 0 {
		t.Fatalf("next request: %+v, %v; want refused, Retry-After at most %v", next, err, first.RetryAfter)
	}
	if held, ok := r.TakeHeld("k", l); !ok || held.Allowed || held.RetryAfter > next.RetryAfter {
		t.Fatalf("TakeHeld while the refusal lasts: %+v, %v; want refused without a call", held, ok)
	}
	if _, ok := r.TakeHeld("other", l); ok {
		t.Fatal("TakeHeld of a key the node holds nothing of: decided, want not")
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if calls := redistest.ScriptCalls(stats); calls != 0 {
		t.Fatalf("%d script calls while a known refusal lasts, want none", calls)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := r.Take(ctx, "k", l)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused 10s after a refusal of %v", first.RetryAfter)
		}
		time.Sleep(res.RetryAfter)
	}
}

// TestLeasesFollowTheLimit checks that a node's lease and refusal are of
// the limit they were taken under: once the limit changes, Redis decides
// the next request under the new one.
func TestLeasesFollowTheLimit(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRedis(t)
	r.ahead = 5 * time.Millisecond
	strict := mustLimit(t, "1/h", 1)
	if res, err := r.Take(ctx, "k", strict); err != nil || !res.Allowed {
		t.Fatalf("first request: %+v, %v", res, err)
	}
	if res, err := r.Take(ctx, "k", strict); err != nil || res.Allowed {
		t.Fatalf("second request under 1/h: %+v, %v; want refused", res, err)
	}
	// Raised: a spent burst under the new limit, whose interval is 1ms.
	raised := mustLimit(t, "1000/s", 1000)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := r.Take(ctx, "k", raised)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			return
		}
		if res.RetryAfter > time.Second || time.Now().After(deadline) {
			t.Fatalf("under the raised limit: %+v; want admitted within a few ms", res)
		}
		time.Sleep(res.RetryAfter)
	}
}
