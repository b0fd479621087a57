package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// newStoreFunc returns an empty store that decides at clock's time.
type newStoreFunc func(t *testing.T, clock *fakeClock) Store

// testStore is the suite every Store passes: the same decisions as Decide,
// made one at a time per key.
func testStore(t *testing.T, newStore newStoreFunc) {
	t.Run("burst_then_refill", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		l := mustLimit(t, "30/s", 0)
		if got := admitN(t, s, "a", l, 100); got != 30 {
			t.Fatalf("burst: admitted %d, want 30", got)
		}
		clock.Advance(l.Interval() - 1)
		if got := admitN(t, s, "a", l, 5); got != 0 {
			t.Fatalf("just before one interval: admitted %d, want 0", got)
		}
		clock.Advance(1)
		if got := admitN(t, s, "a", l, 5); got != 1 {
			t.Fatalf("at one interval: admitted %d, want 1", got)
		}
		clock.Advance(10 * time.Second)
		if got := admitN(t, s, "a", l, 100); got != 30 {
			t.Fatalf("after idling: admitted %d, want 30", got)
		}
	})

	t.Run("sustained_rate_is_exact", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		l := mustLimit(t, "30/s", 0)
		// Three requests every 10 ms for 5 s: the burst plus 30 per second.
		total := 0
		for range 500 {
			total += admitN(t, s, "a", l, 3)
			clock.Advance(10 * time.Millisecond)
		}
		if want := 30 + 30*5 - 1; total < want || total > want+1 {
			t.Fatalf("admitted %d over 5 s, want %d (±1 at the edge)", total, want)
		}
	})

	t.Run("no_window_boundary_burst", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		l := mustLimit(t, "10/s", 10)
		clock.Advance(999 * time.Millisecond)
		first := admitN(t, s, "a", l, 20)
		clock.Advance(2 * time.Millisecond)
		second := admitN(t, s, "a", l, 20)
		if first != 10 || second != 0 {
			t.Fatalf("admitted %d then %d across a second boundary, want 10 then 0", first, second)
		}
	})

	t.Run("keys_are_independent", func(t *testing.T) {
		s := newStore(t, newFakeClock())
		l := mustLimit(t, "5/s", 0)
		if a, b := admitN(t, s, "a", l, 10), admitN(t, s, "b", l, 10); a != 5 || b != 5 {
			t.Fatalf("admitted a=%d b=%d, want 5 each", a, b)
		}
	})

	t.Run("result_fields", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		l := mustLimit(t, "10/s", 3)
		ctx := context.Background()
		for i, wantRemaining := range []int64{2, 1, 0} {
			res, err := s.Take(ctx, "a", l)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Allowed || res.Remaining != wantRemaining {
				t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, wantRemaining)
			}
			if want := time.Duration(i+1) * 100 * time.Millisecond; res.ResetAfter != want {
				t.Fatalf("request %d: reset after %v, want %v", i, res.ResetAfter, want)
			}
		}
		res, _ := s.Take(ctx, "a", l)
		if res.Allowed || res.RetryAfter != 100*time.Millisecond || res.Remaining != 0 || res.ResetAfter != 300*time.Millisecond {
			t.Fatalf("refused request: %+v, want retry after 100ms, reset after 300ms", res)
		}
		clock.Advance(40 * time.Millisecond)
		res, _ = s.Take(ctx, "a", l)
		if res.Allowed || res.RetryAfter != 60*time.Millisecond {
			t.Fatalf("refused request 40ms later: %+v, want retry after 60ms", res)
		}
	})

	t.Run("refused_requests_cost_nothing", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		l := mustLimit(t, "1/s", 1)
		admitN(t, s, "a", l, 1)
		admitN(t, s, "a", l, 200)
		clock.Advance(time.Second)
		if got := admitN(t, s, "a", l, 1); got != 1 {
			t.Fatalf("after a refused flood: admitted %d, want 1", got)
		}
	})

	t.Run("changed_limit_holds_at_once", func(t *testing.T) {
		clock := newFakeClock()
		s := newStore(t, clock)
		strict := mustLimit(t, "1/m", 1)
		if got := admitN(t, s, "a", strict, 2); got != 1 {
			t.Fatalf("strict: admitted %d, want 1", got)
		}
		raised := mustLimit(t, "1000/s", 1000)
		if got := admitN(t, s, "a", raised, 5); got != 1 {
			t.Fatalf("right after raising: admitted %d, want 1", got)
		}
		clock.Advance(raised.Interval())
		if got := admitN(t, s, "a", raised, 5); got != 1 {
			t.Fatalf("one new interval later: admitted %d, want 1", got)
		}
		clock.Advance(time.Second)
		if got := admitN(t, s, "a", raised, 2000); got != 1000 {
			t.Fatalf("after a second at the new rate: admitted %d, want the new burst 1000", got)
		}
		if got := admitN(t, s, "a", strict, 1); got != 0 {
			t.Fatalf("right after lowering: admitted %d, want 0", got)
		}
	})

	t.Run("concurrent_takes_admit_exactly_the_burst", func(t *testing.T) {
		s := newStore(t, newFakeClock())
		l := mustLimit(t, "1/h", 500)
		var wg sync.WaitGroup
		var mu sync.Mutex
		passed := 0
		for range 8 {
			wg.Go(func() {
				n := admitN(t, s, "a", l, 200)
				mu.Lock()
				passed += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if passed != 500 {
			t.Fatalf("admitted %d concurrently, want 500", passed)
		}
	})
}

// admitN sends n requests to s and returns how many passed.
func admitN(t *testing.T, s Store, key string, l Limit, n int) int {
	t.Helper()
	passed := 0
	for range n {
		res, err := s.Take(context.Background(), key, l)
		if err != nil {
			t.Error(err)
			return passed
		}
		if res.Allowed {
			passed++
		}
	}
	return passed
}

func TestMemoryConformance(t *testing.T) {
	testStore(t, func(_ *testing.T, clock *fakeClock) Store { return NewMemory(clock.Now) })
}
