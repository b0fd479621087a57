// Package lease keeps the leases of claimed work alive: while a worker
// holds a task or a delivery, its lease is renewed, so that it can be
// short — another node takes the work over soon after its holder died —
// whatever the work's timeout.
package lease

import (
	"context"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// Keeper renews the leases of the claims it holds: an id, or an id with
// the token of its claim, so that a renewal names the claim it renews. It
// is safe for concurrent use.
type Keeper[C comparable] struct {
	// Extend moves the lease end of the claims to until.
	Extend func(ctx context.Context, claims []C, until time.Time) error
	// Lease is the length of a lease; Run renews every Lease/3.
	Lease time.Duration
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// OnError, when set, is told of failed renewals.
	OnError func(error)

	mu   sync.Mutex
	held map[C]struct{}
}

// Until returns the end of a lease taken now.
func (k *Keeper[C]) Until() time.Time { return k.now().Add(k.Lease) }

func (k *Keeper[C]) now() time.Time { return k.Clock.Now() }

// Hold renews c's lease until Release.
func (k *Keeper[C]) Hold(c C) {
	k.mu.Lock()
	if k.held == nil {
		k.held = make(map[C]struct{})
	}
	k.held[c] = struct{}{}
	k.mu.Unlock()
}

// Release stops renewing c's lease.
func (k *Keeper[C]) Release(c C) {
	k.mu.Lock()
	delete(k.held, c)
	k.mu.Unlock()
}

// Held returns the claims held, in no order.
func (k *Keeper[C]) Held() []C {
	k.mu.Lock()
	defer k.mu.Unlock()
	held := make([]C, 0, len(k.held))
	for c := range k.held {
		held = append(held, c)
	}
	return held
}

// Run renews the leases held every Lease/3 until ctx ends: a renewal may
// fail twice before a lease runs out.
func (k *Keeper[C]) Run(ctx context.Context) {
	t := time.NewTicker(k.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.RenewOnce(ctx)
		}
	}
}

// RenewOnce renews every lease held, in one call.
func (k *Keeper[C]) RenewOnce(ctx context.Context) {
	held := k.Held()
	if len(held) == 0 {
		return
	}
	if err := k.Extend(ctx, held, k.Until()); err != nil && ctx.Err() == nil && k.OnError != nil {
		k.OnError(err)
	}
}
