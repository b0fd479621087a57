package memory

import (
	"cmp"
	"context"
	"slices"

	"github.com/taskgate/taskgate/backend/account"
)

// CreateAccount stores a copy of a new account record; see account.Store.
func (s *Store) CreateAccount(ctx context.Context, r *account.Record) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.accounts[r.ID]; ok {
		return account.ErrExists
	}
	s.accounts[r.ID] = r.Clone()
	return nil
}

// Account returns a copy of the account record with the id; see
// account.Store.
func (s *Store) Account(ctx context.Context, id string) (*account.Record, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	r, ok := s.accounts[id]
	if !ok {
		return nil, account.ErrNotFound
	}
	return r.Clone(), nil
}

// Accounts returns copies of every account record, by id; see
// account.Store.
func (s *Store) Accounts(ctx context.Context) ([]*account.Record, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]*account.Record, 0, len(s.accounts))
	for _, r := range s.accounts {
		out = append(out, r.Clone())
	}
	slices.SortFunc(out, func(a, b *account.Record) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// UpdateAccount changes the account record with the id under the store's
// lock, so change runs once; see account.Store. The record keeps its id
// whatever change does to it.
func (s *Store) UpdateAccount(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	stored, ok := s.accounts[id]
	if !ok {
		return nil, account.ErrNotFound
	}
	r := stored.Clone()
	if err := change(r); err != nil {
		return nil, err
	}
	r.ID = id
	r.Version = stored.Version + 1
	s.accounts[id] = r.Clone()
	return r, nil
}

// Interface guard.
var _ account.Store = (*Store)(nil)
