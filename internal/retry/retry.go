// Package retry calls a store operation again while it fails for a reason
// that may pass (the store out of reach), within a deadline: work already
// done (a source's answer, a receiver's) is then stored rather than done
// again after its lease ends.
package retry

import (
	"context"
	"time"
)

// Backoff bounds the pause between calls: it doubles from First up to Max.
type Backoff struct {
	First, Max time.Duration
}

// Default is the backoff of store calls: 50ms doubling up to 1s.
var Default = Backoff{First: 50 * time.Millisecond, Max: time.Second}

// Do calls op until it returns nil or an error final says is final, or ctx
// ends; it returns op's last error.
func (b Backoff) Do(ctx context.Context, op func() error, final func(error) bool) error {
	pause := b.First
	for {
		err := op()
		if err == nil || final(err) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, b.Max)
	}
}
