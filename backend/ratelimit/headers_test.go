package ratelimit

import (
	"testing"
	"time"
)

func TestHeaders(t *testing.T) {
	l := mustLimit(t, "10/m", 3)
	if got := l.PolicyHeader(); got != `"default";q=3;w=18` {
		t.Errorf("PolicyHeader() = %s", got)
	}
	r := Result{Allowed: true, Remaining: 2, ResetAfter: 6 * time.Second}
	if got := r.StateHeader(); got != `"default";r=2;t=6` {
		t.Errorf("StateHeader() = %s", got)
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 0, -5: 0, 1: 1, time.Second: 1, time.Second + 1: 2, 18 * time.Second: 18} {
		if got := CeilSeconds(d); got != want {
			t.Errorf("CeilSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
