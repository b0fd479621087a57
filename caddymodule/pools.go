package caddymodule

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
)

// Config reloads overlap the old and the new app: what both use lives in
// usage pools, created by the first user and destroyed after the last.
var (
	// corePool holds the engine Cores, by store: a reload keeps the open
	// database (bolt allows one opener) and the waiters of long polls.
	corePool = caddy.NewUsagePool()
	// limiterPool holds the rate-limit state (and the throttle of failed
	// authentications), so that it outlives reloads.
	limiterPool = caddy.NewUsagePool()
)

// pooledCore is a Core in corePool.
type pooledCore struct{ *engine.Core }

// Destruct closes the Core: its goroutines stop, the last usage counts
// are written, the store closes.
func (p pooledCore) Destruct() error { return p.Close() }

// pooledLimiter is a Limiter in limiterPool.
type pooledLimiter struct{ *engine.Limiter }

// Destruct stops the limiter's sweeper.
func (p pooledLimiter) Destruct() error { return p.Close() }

// acquireCore returns the Core of the store st (validated), opening it
// unless another config holds it; each acquire is matched by a Delete of
// the key it returns.
func acquireCore(st storage.Config, logger *zap.Logger) (*engine.Core, string, error) {
	key := st.Key()
	v, _, err := corePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		core, err := engine.OpenCore(context.Background(), st, logger)
		if err != nil {
			return nil, err
		}
		return pooledCore{core}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledCore).Core, key, nil
}

// acquireLimiter returns the rate limit of core's store under the
// on_store_error mode, taken after the store has not answered for after.
// Both are the limiter's, not the store's: a reload that changes them (in
// an outage, say) builds a new limiter without asking Redis anything.
// Without a shared store the limiter is in memory, one per process.
func acquireLimiter(core *engine.Core, coreKey string, mode ratelimit.OnStoreError, after time.Duration, logger *zap.Logger) (*engine.Limiter, string, error) {
	if mode == "" {
		mode = ratelimit.OnStoreErrorLocal
	}
	if after <= 0 {
		after = ratelimit.DefaultFallbackTimeout
	}
	key := "memory"
	if core.Shared() {
		key = coreKey + " on_store_error " + string(mode) + " after " + after.String()
	}
	v, _, err := limiterPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := engine.NewLimiter(core, mode, after, logger)
		if err != nil {
			return nil, err
		}
		return pooledLimiter{l}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledLimiter).Limiter, key, nil
}
