package ratelimit

import (
	"context"
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
