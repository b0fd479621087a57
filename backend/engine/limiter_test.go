package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestLimiterWaitsItsTimeForTheStore pauses the shared store (SIGSTOP) and
// times a decision of limiters built with on_store_error allow and a wait
// of their own: each waits that long for Redis, not the default 100 ms,
// then lets the request through. Only the lower bound is exact; the upper
// one leaves a loaded machine room.
func TestLimiterWaitsItsTimeForTheStore(t *testing.T) {
	srv := redistest.Start(t)
	cfg := storage.Config{Type: "redis", URL: srv.URL()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, err := engine.OpenCore(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	limit := ratelimit.Limit{Count: 10, Period: time.Second, Burst: 10}
	for i, after := range []time.Duration{0, 400 * time.Millisecond} {
		limiter, err := engine.NewLimiter(core, ratelimit.OnStoreErrorAllow, after, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer limiter.Close()
		// Redis answers this limiter before the pause: its connection is
		// open, so the paused server is met on a read, not a dial.
		if res, err := limiter.Take(context.Background(), "warm", limit); err != nil || !res.Allowed {
			t.Fatalf("after %v: a decision before the pause: %+v %v", after, res, err)
		}
		srv.Pause()
		start := time.Now()
		res, err := limiter.Take(context.Background(), fmt.Sprintf("acct-%d", i), limit)
		took := time.Since(start)
		srv.Resume()
		want := after
		if want == 0 {
			want = ratelimit.DefaultFallbackTimeout
		}
		if err != nil || !res.Allowed {
			t.Errorf("after %v: %+v %v, want allowed by on_store_error allow", after, res, err)
		}
		if took < want || took > want+2*time.Second {
			t.Errorf("after %v: decided in %v, want from %v (its wait) to %v", after, took, want, want+2*time.Second)
		}
		t.Logf("after %v: decided without Redis in %v", after, took.Round(time.Millisecond))
	}
}
