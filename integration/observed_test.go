package integration

import (
	"sync"
	"testing"
	"time"
)

// observed is state that tests wait on, such as what a fake source or
// webhook receiver has seen: changes go through update, and waitFor blocks
// until a condition on the state holds. Its zero value is ready.
type observed struct {
	mu sync.Mutex
	// changed is closed and replaced on every change.
	changed chan struct{}
}

// update applies change with the state locked and wakes the waiters.
func (o *observed) update(change func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	change()
	if o.changed != nil {
		close(o.changed)
	}
	o.changed = make(chan struct{})
}

// waitFor waits up to limit until cond, called with the state locked,
// holds; what names the wait in the failure.
func (o *observed) waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		ok := cond()
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		changed := o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("still waiting for %s after %v", what, limit)
		}
	}
}
