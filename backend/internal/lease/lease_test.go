package lease

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestKeeperRenewsWhatItHolds(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	type call struct {
		ids   []string
		until time.Time
	}
	calls := make(chan call, 10)
	k := &Keeper[string]{
		Extend: func(_ context.Context, ids []string, until time.Time) error {
			slices.Sort(ids)
			calls <- call{ids, until}
			return nil
		},
		Lease: 15 * time.Second,
		Clock: func() time.Time { return now },
	}
	k.RenewOnce(context.Background())
	if len(calls) != 0 {
		t.Fatal("nothing held: no renewal expected")
	}
	k.Hold("a")
	k.Hold("b")
	k.Hold("c")
	k.Release("b")
	k.RenewOnce(context.Background())
	got := <-calls
	if !slices.Equal(got.ids, []string{"a", "c"}) || !got.until.Equal(now.Add(15*time.Second)) {
		t.Fatalf("renewed %v until %v, want [a c] until now+15s", got.ids, got.until)
	}
}

func TestKeeperRunStopsWithItsContext(t *testing.T) {
	renewed := make(chan struct{}, 1)
	k := &Keeper[string]{
		Extend: func(context.Context, []string, time.Time) error {
			select {
			case renewed <- struct{}{}:
			default:
			}
			return nil
		},
		Lease: 3 * time.Millisecond,
	}
	k.Hold("a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Run(ctx)
	}()
	select {
	case <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal within 10s")
	}
	cancel()
	<-done
}
