package engine

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/ratelimit"
)

// Limiter is the rate limit of the accounts: in memory on a store of its
// own; exact, in the shared store, on a shared one, and per node while the
// shared store does not answer (on_store_error). It holds its state across
// config reloads (the caller keeps one per Core and mode); Close stops its
// sweeper.
type Limiter struct {
	ratelimit.Store
	// Fallback is the breaker over the shared store, nil without one.
	Fallback *ratelimit.Fallback
	stop     context.CancelFunc
	done     chan struct{}
}

// NewLimiter returns the limiter of core's store. mode is what a shared
// store's outage does (ratelimit.OnStoreError; "" is local), once a
// decision has waited after for the store (0:
// ratelimit.DefaultFallbackTimeout).
func NewLimiter(core *Core, mode ratelimit.OnStoreError, after time.Duration, logger *zap.Logger) (*Limiter, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if mode == "" {
		mode = ratelimit.OnStoreErrorLocal
	}
	local := ratelimit.NewMemory(nil)
	l := &Limiter{Store: local, done: make(chan struct{})}
	if shared := core.opened.RateLimit; shared != nil {
		fallback, err := ratelimit.NewFallback(shared, local, ratelimit.FallbackConfig{
			OnStoreError: mode,
			Timeout:      after,
			// The store's client heeds contexts (ContextTimeoutEnabled).
			PrimaryHeedsContext: true,
			OnStateChange: func(degraded bool, err error) {
				rateLimitDegraded.Set(map[bool]float64{false: 0, true: 1}[degraded])
				if degraded {
					logger.Error("rate limit store unreachable; limiting per the on_store_error mode until it is back", zap.String("on_store_error", string(mode)), zap.Error(err))
				} else {
					logger.Info("rate limit store reachable again")
				}
			},
		})
		if err != nil {
			return nil, err
		}
		l.Store, l.Fallback = fallback, fallback
	}
	ctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	go func() {
		defer close(l.done)
		local.SweepEvery(ctx, time.Minute)
	}()
	return l, nil
}

// Close stops the sweeper of the limiter's memory.
func (l *Limiter) Close() error {
	l.stop()
	<-l.done
	return nil
}
