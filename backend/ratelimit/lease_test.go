package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
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
// a limit of 2,000 a day with a burst of 2,000: the nodes lease up to 20
// tokens a call, and every token Redis gave is admitted, still leased or
// expired unused, so exactly 2,000 are in all, in fewer calls than
// requests.
func TestLeasesKeepTheLimitAcrossNodes(t *testing.T) {
	ctx := t.Context()
	a, rdb := newTestRedis(t)
	a.ahead = 5 * time.Millisecond
	b := NewRedis(rdb, testPrefix, WithLeases(5*time.Millisecond))
	l := mustLimit(t, "2000/d", 2000)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_, lost0 := LeaseTokens()
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
	_, lost1 := LeaseTokens()
	lost := int64(lost1 - lost0)
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := redistest.ScriptCalls(stats)
	t.Logf("admitted %d, %d left leased, %d expired unused, %d script calls", admitted, left, lost, calls)
	if admitted+int(left+lost) != 2000 {
		t.Fatalf("admitted %d, %d left leased and %d expired: want 2000 in all", admitted, left, lost)
	}
	if calls >= 6000 {
		t.Fatalf("%d script calls for 6000 requests, want fewer", calls)
	}
}

// TestLeasesExpire checks that tokens a node leased and left unused are not
// admitted once their lease's life is over, since Redis counted them as
// used by then: after it, another node takes the whole burst back, and
// the first refuses.
func TestLeasesExpire(t *testing.T) {
	ctx := t.Context()
	a, rdb := newTestRedis(t)
	a.ahead = 20 * time.Millisecond
	b := NewRedis(rdb, testPrefix)
	l := mustLimit(t, "1000/h", 1000) // a token every 3.6s
	for i := 0; ; i++ {
		if leased(a, "k") > 0 {
			break
		}
		if i == 1000 {
			t.Fatal("no lease after 1000 requests")
		}
		if res, err := a.Take(ctx, "k", l); err != nil || !res.Allowed {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
	}
	h := a.holding("k")
	h.mu.Lock()
	expires, left := h.expires, h.left
	h.mu.Unlock()
	_, lost0 := LeaseTokens()
	for time.Now().Before(expires.Add(time.Millisecond)) {
		time.Sleep(time.Until(expires) + time.Millisecond)
	}
	// b spends all there is, then a is refused with it.
	for i := 0; ; i++ {
		res, err := b.Take(ctx, "k", l)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed {
			break
		}
		if i > 2000 {
			t.Fatal("b still admitted after 2000 requests")
		}
	}
	if res, err := a.Take(ctx, "k", l); err != nil || res.Allowed {
		t.Fatalf("a after its lease's life and b's refusal: %+v, %v; want refused", res, err)
	}
	if _, lost := LeaseTokens(); lost-lost0 < uint64(left) {
		t.Fatalf("%d tokens counted lost, want at least the %d a left unused", lost-lost0, left)
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
	l := mustLimit(t, "1/s", 5) // a token every second
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
	takeOnceAllowed(t, r, "k", l, time.Hour)
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
	takeOnceAllowed(t, r, "k", mustLimit(t, "1000/s", 1000), time.Second)
}

// takeOnceAllowed takes requests of key under l, each after the last one's
// Retry-After (the refusal's own end, what the waits test), until one is
// admitted: within 10s, and with no Retry-After over most.
func takeOnceAllowed(t *testing.T, r *Redis, key string, l Limit, most time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := r.Take(context.Background(), key, l)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			return
		}
		if res.RetryAfter > most || time.Now().After(deadline) {
			t.Fatalf("under %v: %+v, still refused; want admitted within 10s, each Retry-After at most %v", l, res, most)
		}
		time.Sleep(res.RetryAfter)
	}
}

// holdingPrimary is a primary that holds a decision for key "held".
type holdingPrimary struct {
	calls atomic.Int64
}

func (p *holdingPrimary) Take(context.Context, string, Limit) (Result, error) {
	p.calls.Add(1)
	return Result{Allowed: true, Remaining: 7}, nil
}

func (p *holdingPrimary) TakeHeld(key string, _ Limit) (Result, bool) {
	if key != "held" {
		return Result{}, false
	}
	return Result{Allowed: true, Remaining: 3}, true
}

// TestFallbackTakesHeldFirst checks that Fallback answers from what its
// primary holds without calling it, and calls it otherwise.
func TestFallbackTakesHeldFirst(t *testing.T) {
	p := &holdingPrimary{}
	f, err := NewFallback(p, NewMemory(nil), FallbackConfig{})
	if err != nil {
		t.Fatal(err)
	}
	l := mustLimit(t, "10/s", 0)
	if res, err := f.Take(t.Context(), "held", l); err != nil || res.Remaining != 3 || p.calls.Load() != 0 {
		t.Fatalf("held key: %+v, %v, %d calls; want the held result and no call", res, err, p.calls.Load())
	}
	if res, err := f.Take(t.Context(), "other", l); err != nil || res.Remaining != 7 || p.calls.Load() != 1 {
		t.Fatalf("other key: %+v, %v, %d calls; want the primary's result from one call", res, err, p.calls.Load())
	}
}

// TestLeasesSweep checks that the sweep forgets a key idle for idleHeld,
// and that a request that still holds its old record finds the new one.
func TestLeasesSweep(t *testing.T) {
	ctx := t.Context()
	r, _ := newTestRedis(t)
	r.ahead = 5 * time.Millisecond
	l := mustLimit(t, "1000/s", 1000)
	if _, err := r.Take(ctx, "k", l); err != nil {
		t.Fatal(err)
	}
	old := r.holding("k")
	old.mu.Lock()
	old.used = time.Now().Add(-2 * idleHeld)
	old.mu.Unlock()
	r.swept.Store(0)
	r.sweep(time.Now())
	if _, ok := r.held.Load("k"); ok {
		t.Fatal("an idle key still held after the sweep")
	}
	d := &decision{key: testPrefix + "k", l: l}
	if st := old.take(d); st != gone {
		t.Fatalf("the swept record answered %d, want gone", st)
	}
	if res, err := r.Take(ctx, "k", l); err != nil || !res.Allowed {
		t.Fatalf("after the sweep: %+v, %v", res, err)
	}
	if r.holding("k") == old {
		t.Fatal("the swept record is still the key's")
	}
}

// TestLeasesFollowDemand sends pairs of requests of a key, a few
// microseconds apart, each pair after the last lease's life: a lease is
// at most twice the requests seen since the call before, so the tokens
// the pairs leave unused stay a few a pair, not the hundredth of a burst
// a rate from two close requests would ask for.
func TestLeasesFollowDemand(t *testing.T) {
	ctx := t.Context()
	r, _ := newTestRedis(t)
	r.ahead = 5 * time.Millisecond
	l := mustLimit(t, "10000/s", 0) // a hundredth of the burst: 100
	leased0, _ := LeaseTokens()
	const pairs = 10
	for range pairs {
		for range 2 {
			if res, err := r.Take(ctx, "k", l); err != nil || !res.Allowed {
				t.Fatalf("%+v, %v", res, err)
			}
		}
		h := r.holding("k")
		h.mu.Lock()
		expires := h.expires
		h.mu.Unlock()
		for time.Now().Before(expires.Add(time.Millisecond)) {
			time.Sleep(time.Until(expires) + time.Millisecond)
		}
	}
	leased, _ := LeaseTokens()
	t.Logf("%d pairs leased %d tokens", pairs, leased-leased0)
	if leased-leased0 > 3*pairs {
		t.Fatalf("%d pairs of requests leased %d tokens, want at most %d", pairs, leased-leased0, 3*pairs)
	}
}
