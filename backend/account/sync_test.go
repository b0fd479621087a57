package account_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/storage/memory"
)

func keyRecord(id, key string) account.KeyRecord {
	sum := account.HashKey(key)
	return account.KeyRecord{ID: id, SHA256: hex.EncodeToString(sum[:])}
}

// TestSyncFollowsAnotherNode: changes that another node stores reach the
// set through a notice, through a new subscription, and through the
// reconcile when the notice is lost.
func TestSyncFollowsAnotherNode(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	ctx := t.Context()
	if err := store.CreateAccount(ctx, &account.Record{ID: "acme", Version: 1, Keys: []account.KeyRecord{keyRecord("key_a", "old")}}); err != nil {
		t.Fatal(err)
	}
	dynamic := account.NewDynamic()
	notices := make(chan string)
	subscribed := make(chan struct{})
	s := &account.Sync{
		Store:   store,
		Dynamic: dynamic,
		Subscribe: func(ctx context.Context, onChange func(string), onSubscribed func()) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case id := <-notices:
					onChange(id)
				case <-subscribed:
					onSubscribed()
				}
			}
		},
		Reconcile: time.Hour,
		Logger:    zap.NewNop(),
	}
	if err := s.LoadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if dynamic.Version("acme") != 1 {
		t.Fatal("LoadAll did not load the account")
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(runCtx)
	}()
	change := func(key string) {
		t.Helper()
		if _, err := store.UpdateAccount(ctx, "acme", func(r *account.Record) error {
			r.Keys = []account.KeyRecord{keyRecord("key_"+key, key)}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A notice.
	change("k2")
	notices <- "acme"
	notices <- "nobody" // unknown: logged, nothing else
	if dynamic.Version("acme") != 2 {
		t.Fatalf("after a notice: version %d, want 2", dynamic.Version("acme"))
	}
	// A change whose notice was lost, then a new subscription.
	change("k3")
	subscribed <- struct{}{}
	notices <- "" // a round trip: onSubscribed has returned
	if dynamic.Version("acme") != 3 {
		t.Fatalf("after a new subscription: version %d, want 3", dynamic.Version("acme"))
	}
	r, err := account.NewRegistry(account.RegistryConfig{Dynamic: dynamic})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("acme", "k3"); err != nil {
		t.Fatalf("the latest key does not authenticate: %v", err)
	}
	cancel()
	<-done
}

// TestSyncReconciles: with no notice at all, the reconcile brings a change.
func TestSyncReconciles(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	ctx := t.Context()
	if err := store.CreateAccount(ctx, &account.Record{ID: "acme", Version: 1}); err != nil {
		t.Fatal(err)
	}
	dynamic := account.NewDynamic()
	listed := &listings{Store: store, done: make(chan struct{}, 100)}
	s := &account.Sync{
		Store:     listed,
		Dynamic:   dynamic,
		Subscribe: func(ctx context.Context, _ func(string), _ func()) error { <-ctx.Done(); return nil },
		Reconcile: time.Millisecond,
		Logger:    zap.NewNop(),
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(runCtx)
	}()
	// Reconciles run one after another: when the second asks for the
	// accounts, the first has put them in the set.
	for range 2 {
		select {
		case <-listed.done:
		case <-time.After(10 * time.Second):
			t.Fatal("no reconcile within 10s")
		}
	}
	if dynamic.Version("acme") != 1 {
		t.Fatal("the reconcile did not load the account")
	}
	cancel()
	<-done
}

// listings is an account store that signals each listing asked for.
type listings struct {
	account.Store
	done chan struct{}
}

func (l *listings) Accounts(ctx context.Context) ([]*account.Record, error) {
	select {
	case l.done <- struct{}{}:
	default:
	}
	return l.Store.Accounts(ctx)
}
