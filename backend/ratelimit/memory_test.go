package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/clocktest"
)

// fakeClock is a clock that moves only when told.
type fakeClock = clocktest.Clock

func newFakeClock() *fakeClock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

// admit sends n requests at the current time and returns how many passed.
func admit(t *testing.T, m *Memory, key string, l Limit, n int) int {
	t.Helper()
	passed := 0
	for range n {
		res, err := m.Take(context.Background(), key, l)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			passed++
		}
	}
	return passed
}

func mustLimit(t *testing.T, rate string, burst int64) Limit {
	t.Helper()
	l, err := ParseLimit(rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBurstThenRefill(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "30/s", 0)

	if got := admit(t, m, "a", l, 100); got != 30 {
		t.Fatalf("burst: admitted %d, want 30", got)
	}
	// One interval later, exactly one more request passes.
	clock.Advance(l.Interval() - 1)
	if got := admit(t, m, "a", l, 5); got != 0 {
		t.Fatalf("just before one interval: admitted %d, want 0", got)
	}
	clock.Advance(1)
	if got := admit(t, m, "a", l, 5); got != 1 {
		t.Fatalf("at one interval: admitted %d, want 1", got)
	}
	// A whole idle second restores the whole burst, and no more.
	clock.Advance(10 * time.Second)
	if got := admit(t, m, "a", l, 100); got != 30 {
		t.Fatalf("after idling: admitted %d, want 30", got)
	}
}

func TestSustainedRateIsExact(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "30/s", 0)
	// Ten requests every 10 ms for 10 s: the burst plus 30 per second.
	total := 0
	for range 1000 {
		total += admit(t, m, "a", l, 10)
		clock.Advance(10 * time.Millisecond)
	}
	if want := 30 + 30*10 - 1; total < want || total > want+1 {
		t.Fatalf("admitted %d over 10 s, want %d (±1 at the edge)", total, want)
	}
}

func TestNoWindowBoundaryBurst(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "10/s", 10)
	// A fixed window would admit 10 at the end of one second and 10 more at
	// the start of the next; GCRA admits the burst once, then the rate.
	clock.Advance(999 * time.Millisecond)
	first := admit(t, m, "a", l, 20)
	clock.Advance(2 * time.Millisecond)
	second := admit(t, m, "a", l, 20)
	if first != 10 || second != 0 {
		t.Fatalf("admitted %d then %d across a second boundary, want 10 then 0", first, second)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "5/s", 0)
	if a, b := admit(t, m, "a", l, 10), admit(t, m, "b", l, 10); a != 5 || b != 5 {
		t.Fatalf("admitted a=%d b=%d, want 5 each", a, b)
	}
}

func TestResultFields(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "10/s", 3)
	ctx := context.Background()
	for i, wantRemaining := range []int64{2, 1, 0} {
		res, _ := m.Take(ctx, "a", l)
		if !res.Allowed || res.Remaining != wantRemaining {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, wantRemaining)
		}
		if want := time.Duration(i+1) * 100 * time.Millisecond; res.ResetAfter != want {
			t.Fatalf("request %d: reset after %v, want %v", i, res.ResetAfter, want)
		}
	}
	res, _ := m.Take(ctx, "a", l)
	if res.Allowed || res.RetryAfter != 100*time.Millisecond || res.Remaining != 0 {
		t.Fatalf("refused request: %+v, want retry after 100ms", res)
	}
	clock.Advance(40 * time.Millisecond)
	res, _ = m.Take(ctx, "a", l)
	if res.Allowed || res.RetryAfter != 60*time.Millisecond {
		t.Fatalf("refused request 40ms later: %+v, want retry after 60ms", res)
	}
}

func TestRefusedRequestsCostNothing(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "1/s", 1)
	admit(t, m, "a", l, 1)
	// A flood of refused requests must not push the next admission back.
	admit(t, m, "a", l, 1000)
	clock.Advance(time.Second)
	if got := admit(t, m, "a", l, 1); got != 1 {
		t.Fatalf("after a refused flood: admitted %d, want 1", got)
	}
}

func TestSweepForgetsOnlyIdleKeys(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	slow := mustLimit(t, "1/m", 1)
	fast := mustLimit(t, "100/s", 0)
	admit(t, m, "slow", slow, 1)
	admit(t, m, "fast", fast, 1)
	clock.Advance(time.Second)
	if n := m.Sweep(); n != 1 || m.Len() != 1 {
		t.Fatalf("swept %d, %d left; want 1 swept, 1 left", n, m.Len())
	}
	// The slow key is still limited: sweeping changed no decision.
	if got := admit(t, m, "slow", slow, 1); got != 0 {
		t.Fatalf("slow key after sweep: admitted %d, want 0", got)
	}
	clock.Advance(time.Minute)
	if n := m.Sweep(); n != 1 || m.Len() != 0 {
		t.Fatalf("swept %d, %d left; want 1 swept, 0 left", n, m.Len())
	}
}

func TestConcurrentTakesAdmitExactlyTheBurst(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	l := mustLimit(t, "1/h", 500)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 8 {
		wg.Go(func() {
			n := admit(t, m, "a", l, 200)
			mu.Lock()
			passed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if passed != 500 {
		t.Fatalf("admitted %d concurrently, want 500", passed)
	}
}

func TestSweepEveryStopsWithItsContext(t *testing.T) {
	m := NewMemory(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.SweepEvery(ctx, time.Hour)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SweepEvery did not stop")
	}
}

func TestChangedLimitHoldsAtOnce(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(clock.Now)
	strict := mustLimit(t, "1/m", 1)
	if got := admit(t, m, "a", strict, 2); got != 1 {
		t.Fatalf("strict: admitted %d, want 1", got)
	}
	// Raised: the next request passes, then the new rate, not the old
	// limit's minute.
	raised := mustLimit(t, "1000/s", 1000)
	if got := admit(t, m, "a", raised, 5); got != 1 {
		t.Fatalf("right after raising: admitted %d, want 1 (a spent burst, then the new rate)", got)
	}
	clock.Advance(raised.Interval())
	if got := admit(t, m, "a", raised, 5); got != 1 {
		t.Fatalf("one new interval later: admitted %d, want 1", got)
	}
	clock.Advance(time.Second)
	if got := admit(t, m, "a", raised, 2000); got != 1000 {
		t.Fatalf("after a second at the new rate: admitted %d, want the new burst 1000", got)
	}
	// Lowered: the spent allowance still counts against the stricter
	// limit.
	if got := admit(t, m, "a", strict, 1); got != 0 {
		t.Fatalf("right after lowering: admitted %d, want 0", got)
	}
}
