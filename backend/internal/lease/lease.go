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

// Keeper renews the leases of the ids it holds. It is safe for concurrent
// use.
type Keeper struct {
	// Extend moves the lease end of the ids to until.
	Extend func(ctx context.Context, ids []string, until time.Time) error
	// Lease is the length of a lease; Run renews every Lease/3.
	Lease time.Duration
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// OnError, when set, is told of failed renewals.
	OnError func(error)

	mu   sync.Mutex
	held map[string]struct{}
}

// Until returns the end of a lease taken now.
func (k *Keeper) Until() time.Time { return k.now().Add(k.Lease) }

func (k *Keeper) now() time.Time { return k.Clock.Now() }

// Hold renews id's lease until Release.
func (k *Keeper) Hold(id string) {
	k.mu.Lock()
	if k.held == nil {
		k.held = make(map[string]struct{})
	}
	k.held[id] = struct{}{}
	k.mu.Unlock()
}

// Release stops renewing id's lease.
func (k *Keeper) Release(id string) {
	k.mu.Lock()
	delete(k.held, id)
	k.mu.Unlock()
}

// Held returns the ids held, in no order.
func (k *Keeper) Held() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]string, 0, len(k.held))
	for id := range k.held {
		ids = append(ids, id)
	}
	return ids
}

// Run renews the leases held every Lease/3 until ctx ends: a renewal may
// fail twice before a lease runs out.
func (k *Keeper) Run(ctx context.Context) {
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
func (k *Keeper) RenewOnce(ctx context.Context) {
	ids := k.Held()
	if len(ids) == 0 {
		return
	}
	if err := k.Extend(ctx, ids, k.Until()); err != nil && ctx.Err() == nil && k.OnError != nil {
		k.OnError(err)
	}
}
