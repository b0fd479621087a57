package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// OnStoreError is what a Fallback answers while its shared store fails.
type OnStoreError string

const (
	// OnStoreErrorLocal decides in the node's own memory: each node applies
	// the limit alone, so an account may pass up to once per node.
	OnStoreErrorLocal OnStoreError = "local"
	// OnStoreErrorAllow lets every request through.
	OnStoreErrorAllow OnStoreError = "allow"
	// OnStoreErrorDeny refuses every request, to be retried after a second.
	OnStoreErrorDeny OnStoreError = "deny"
)

// Defaults of FallbackConfig.
const (
	DefaultFallbackTimeout = 100 * time.Millisecond
	DefaultFallbackOpenFor = time.Second
)

// FallbackConfig tunes a Fallback; the zero value is the defaults.
type FallbackConfig struct {
	// OnStoreError is what to answer while the primary fails: "local"
	// (the default), "allow" or "deny".
	OnStoreError OnStoreError
	// Timeout bounds each call to the primary (default 100ms).
	Timeout time.Duration
	// OpenFor is how long, after the primary failed, calls skip it and
	// take the fallback answer at once (default 1s); then one call probes
	// the primary again.
	OpenFor time.Duration
	// OnStateChange, if set, is told when the Fallback starts answering
	// without the primary (degraded, with the error that tripped it) and
	// when the primary answers again (not degraded, nil). It is called
	// with the breaker's lock held, so the changes arrive in order; it must
	// return quickly and must not call the Fallback.
	OnStateChange func(degraded bool, err error)
	// Clock times the breaker (default time.Now).
	Clock clock.Clock
	// PrimaryHeedsContext tells that the primary returns when its context
	// ends (go-redis with ContextTimeoutEnabled): it is then called in the
	// request's goroutine. Otherwise each call runs in a goroutine of its
	// own, so that a primary stuck past the timeout does not hold the
	// request.
	PrimaryHeedsContext bool
}

// Fallback is a Store that asks a shared primary store (Redis) and, when
// the primary fails or does not answer within the timeout, answers as its
// OnStoreError says. A circuit breaker then keeps calls off the primary for
// OpenFor; after it one call at a time probes the primary (half-open), and
// the first success closes the breaker.
type Fallback struct {
	primary Store
	// holder is primary when it is a Holder, tried before a call.
	holder        Holder
	local         *Memory
	mode          OnStoreError
	timeout       time.Duration
	openFor       time.Duration
	onStateChange func(degraded bool, err error)
	clock         clock.Clock
	heedsContext  bool

	mu sync.Mutex
	// degraded is true while the breaker is open or half-open.
	degraded bool
	// openUntil is when a probe may try the primary again.
	openUntil time.Time
	// probing is true while a probe is out.
	probing bool
}

// NewFallback returns a Fallback over primary. local answers in mode
// "local" and must then be set; its owner sweeps it.
func NewFallback(primary Store, local *Memory, cfg FallbackConfig) (*Fallback, error) {
	f := &Fallback{
		primary:       primary,
		local:         local,
		mode:          cfg.OnStoreError,
		timeout:       cfg.Timeout,
		openFor:       cfg.OpenFor,
		onStateChange: cfg.OnStateChange,
		clock:         cfg.Clock,
		heedsContext:  cfg.PrimaryHeedsContext,
	}
	f.holder, _ = primary.(Holder)
	if f.mode == "" {
		f.mode = OnStoreErrorLocal
	}
	switch f.mode {
	case OnStoreErrorLocal:
		if local == nil {
			return nil, errors.New("rate limit: on_store_error local needs a local store")
		}
	case OnStoreErrorAllow, OnStoreErrorDeny:
	default:
		return nil, fmt.Errorf("rate limit: on_store_error %q: want local, allow or deny", f.mode)
	}
	if primary == nil {
		return nil, errors.New("rate limit: fallback needs a primary store")
	}
	if f.timeout <= 0 {
		f.timeout = DefaultFallbackTimeout
	}
	if f.openFor <= 0 {
		f.openFor = DefaultFallbackOpenFor
	}
	if f.clock == nil {
		f.clock = time.Now
	}
	return f, nil
}

// Take decides one request of key under limit l: by the primary when it
// answers in time, else by the fallback. It fails only when ctx ends first.
func (f *Fallback) Take(ctx context.Context, key string, l Limit) (Result, error) {
	ask, probe := f.admit()
	if !ask {
		return f.fallback(ctx, key, l)
	}
	if f.holder != nil && !probe {
		if res, ok := f.holder.TakeHeld(key, l); ok {
			return res, nil
		}
	}
	res, err := f.callPrimary(ctx, key, l)
	if err == nil {
		f.succeeded(probe)
		return res, nil
	}
	if ctx.Err() != nil {
		// The caller left: no fault of the primary, and no one to answer.
		if probe {
			f.mu.Lock()
			f.probing = false
			f.mu.Unlock()
		}
		return Result{}, ctx.Err()
	}
	f.failed(probe, err)
	return f.fallback(ctx, key, l)
}

// Degraded tells whether calls are answered without the primary now.
func (f *Fallback) Degraded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.degraded
}

// Holder is a store that can decide some requests from what it holds,
// without a call (Redis with leases): Fallback tries it before a call,
// whose timeout costs a timer.
type Holder interface {
	TakeHeld(key string, l Limit) (Result, bool)
}

// admit tells whether this call may ask the primary, and whether it is the
// probe of a half-open breaker.
func (f *Fallback) admit() (ask, probe bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.degraded {
		return true, false
	}
	if f.probing || f.clock().Before(f.openUntil) {
		return false, false
	}
	f.probing = true
	return true, true
}

func (f *Fallback) succeeded(probe bool) {
	if !probe {
		// Closed already, or a call from before the breaker opened that
		// came back late: the probe decides when to close.
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probing = false
	f.degraded = false
	if f.onStateChange != nil {
		f.onStateChange(false, nil)
	}
}

func (f *Fallback) failed(probe bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case probe:
		f.probing = false
		f.openUntil = f.clock().Add(f.openFor)
	case !f.degraded:
		f.degraded = true
		f.openUntil = f.clock().Add(f.openFor)
		if f.onStateChange != nil {
			f.onStateChange(true, err)
		}
	}
}

type primaryAnswer struct {
	res Result
	err error
}

// callPrimary asks the primary and waits at most the timeout. The primary
// is given a context that ends then, but a client that does not heed it
// (go-redis without ContextTimeoutEnabled keeps to its own read timeout)
// must not hold the request: unless the primary heeds its context, the
// call runs in its own goroutine, which ends when the primary returns.
func (f *Fallback) callPrimary(ctx context.Context, key string, l Limit) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if f.heedsContext {
		res, err := f.primary.Take(ctx, key, l)
		if err != nil && ctx.Err() != nil {
			return Result{}, fmt.Errorf("rate limit: primary store: %w", ctx.Err())
		}
		return res, err
	}
	answer := make(chan primaryAnswer, 1)
	go func() {
		res, err := f.primary.Take(ctx, key, l)
		answer <- primaryAnswer{res, err}
	}()
	select {
	case a := <-answer:
		return a.res, a.err
	case <-ctx.Done():
		select {
		case a := <-answer:
			return a.res, a.err
		default:
		}
		return Result{}, fmt.Errorf("rate limit: primary store: %w", ctx.Err())
	}
}

// fallback answers as the mode says.
func (f *Fallback) fallback(ctx context.Context, key string, l Limit) (Result, error) {
	switch f.mode {
	case OnStoreErrorAllow:
		// What a new key gets.
		_, res := Decide(0, 0, l)
		return res, nil
	case OnStoreErrorDeny:
		return Result{RetryAfter: time.Second, ResetAfter: time.Second}, nil
	}
	return f.local.Take(ctx, key, l)
}

var _ Store = (*Fallback)(nil)
