package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/taskgate/taskgate/backend/authfail"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// defaultAuthFailures is the auth_failures rate when none is set. A client
// with a wrong or missing key fails on every request, so it learns of its
// mistake within a few; 20 at once and then one every 3 s leave room for a
// retrying client, a deploy with a stale key or a few hosts behind one NAT
// address, while a flood from one address costs a map lookup per request
// after its first 20, and a key guesser gets 20 tries a minute.
const defaultAuthFailures = "20/m"

// authFailuresOff is the auth_failures value that turns the throttle off.
const authFailuresOff = "off"

// authFailuresKey is the key of the throttle in limiterPool: one per
// process, whatever the config, so that a reload keeps what each address
// has spent.
const authFailuresKey = "auth_failures"

// parseAuthFailures returns the limit of an auth_failures rate and burst
// (defaults applied), or the zero Limit when the throttle is off.
func parseAuthFailures(rate string, burst int64) (ratelimit.Limit, error) {
	if rate == authFailuresOff {
		if burst != 0 {
			return ratelimit.Limit{}, errors.New("auth_failures off takes no burst")
		}
		return ratelimit.Limit{}, nil
	}
	if rate == "" {
		rate = defaultAuthFailures
	}
	count, period, err := ratelimit.ParseRate(rate)
	if err != nil {
		return ratelimit.Limit{}, fmt.Errorf("auth_failures: %w", err)
	}
	if burst == 0 {
		burst = count
	}
	l, err := ratelimit.NewLimit(count, period, burst)
	if err != nil {
		return ratelimit.Limit{}, fmt.Errorf("auth_failures: %w", err)
	}
	return l, nil
}

// pooledThrottle is the process's throttle of failed authentications and
// its sweeper.
type pooledThrottle struct {
	*authfail.Throttle
	stop context.CancelFunc
	done chan struct{}
}

// Destruct stops the sweeper.
func (p pooledThrottle) Destruct() error {
	p.stop()
	<-p.done
	return nil
}

// acquireAuthFailures returns the process's throttle of failed
// authentications, shared by every config that uses it; each acquire is
// matched by a releaseAuthFailures.
func acquireAuthFailures() *authfail.Throttle {
	v, _, _ := limiterPool.LoadOrNew(authFailuresKey, func() (caddy.Destructor, error) {
		ctx, stop := context.WithCancel(context.Background())
		p := pooledThrottle{Throttle: authfail.New(authfail.Config{}), stop: stop, done: make(chan struct{})}
		go func() {
			defer close(p.done)
			p.SweepEvery(ctx, time.Minute)
		}()
		return p, nil
	})
	return v.(pooledThrottle).Throttle
}

// releaseAuthFailures gives back what acquireAuthFailures took.
func releaseAuthFailures() error {
	_, err := limiterPool.Delete(authFailuresKey)
	return err
}
