package ratelimit

import (
	"testing"
	"time"
)

// TestNanosFollowsATestClockAsItIs: a clock without a monotonic reading,
// a test's, is read as its Unix nanoseconds, jumps included.
func TestNanosFollowsATestClockAsItIs(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	n := NewNanos(func() time.Time { return at })
	for _, step := range []time.Duration{0, time.Millisecond, time.Hour, -30 * time.Minute} {
		at = at.Add(step)
		if got, want := n.Now(), at.UnixNano(); got != want {
			t.Fatalf("after a step of %v: %d, want %d", step, got, want)
		}
	}
}

// TestNanosFollowsTheMonotonicClock: with the system's clock, Now starts
// at the wall time it was made and moves as the monotonic clock does.
func TestNanosFollowsTheMonotonicClock(t *testing.T) {
	before := time.Now()
	n := NewNanos(nil)
	first := n.Now()
	if first < before.UnixNano() || first > time.Now().UnixNano()+int64(time.Second) {
		t.Fatalf("first reading %d, want near the wall time %d", first, before.UnixNano())
	}
	start := time.Now()
	time.Sleep(5 * time.Millisecond)
	second := n.Now()
	if elapsed := time.Since(start); second-first < int64(5*time.Millisecond) || second-first > int64(elapsed)+int64(time.Second) {
		t.Fatalf("moved %v over a monotonic %v", time.Duration(second-first), elapsed)
	}
}
