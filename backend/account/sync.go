package account

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Sync keeps a Dynamic set in step with a store that other nodes change
// too: it loads every account, then each account a notice names, every
// account again each time the notices' subscription is (re)made (notices
// may have been missed meanwhile), and every account every Reconcile in
// case a notice was lost all the same.
type Sync struct {
	Store   Store
	Dynamic *Dynamic
	// Subscribe receives account change notices until ctx ends, calling
	// onChange with each id and onSubscribed each time it subscribes.
	Subscribe func(ctx context.Context, onChange func(id string), onSubscribed func()) error
	// Reconcile is how often every account is read again.
	Reconcile time.Duration
	Logger    *zap.Logger
}

// LoadAll puts every stored account in the set. An account whose record
// does not build is held disabled (see Dynamic.Put) and logged.
func (s *Sync) LoadAll(ctx context.Context) error {
	records, err := s.Store.Accounts(ctx)
	if err != nil {
		return err
	}
	for _, r := range records {
		if err := s.Dynamic.Put(r); err != nil {
			s.Logger.Error("account held disabled: its stored record is not valid", zap.String("account_id", r.ID), zap.Error(err))
		}
	}
	return nil
}

// Load puts the stored account with the id in the set.
func (s *Sync) Load(ctx context.Context, id string) {
	r, err := s.Store.Account(ctx, id)
	if err == nil {
		err = s.Dynamic.Put(r)
	}
	if err != nil && ctx.Err() == nil {
		s.Logger.Error("loading a changed account", zap.String("account_id", id), zap.Error(err))
	}
}

// Run follows the notices and reconciles until ctx ends.
func (s *Sync) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := s.Subscribe(ctx, func(id string) { s.Load(ctx, id) }, func() { s.reloadAll(ctx) })
		if err != nil && ctx.Err() == nil {
			s.Logger.Error("account change notices stopped", zap.Error(err))
		}
	}()
	defer func() { <-done }()
	t := time.NewTicker(s.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reloadAll(ctx)
		}
	}
}

func (s *Sync) reloadAll(ctx context.Context) {
	if err := s.LoadAll(ctx); err != nil && ctx.Err() == nil {
		s.Logger.Error("reloading accounts", zap.Error(err))
	}
}
