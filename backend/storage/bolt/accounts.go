package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/internal/jsonenc"
)

// CreateAccount stores a new account record, in a transaction with
// concurrent changes; see account.Store.
func (s *Store) CreateAccount(ctx context.Context, r *account.Record) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	value, err := marshalAccount(r)
	if err != nil {
		return err
	}
	id := []byte(r.ID)
	// Refusals are answers, not failures: the change returns nil without
	// writing, so that its group commits as if it were not there.
	var answer error
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		answer = nil
		b := tx.Bucket(bucketAccounts)
		if b.Get(id) != nil {
			answer = account.ErrExists
			return nil
		}
		return b.Put(id, value)
	})
	if err != nil {
		return err
	}
	return answer
}

// Account returns the account record with the id; see account.Store.
func (s *Store) Account(ctx context.Context, id string) (*account.Record, error) {
	r, _, err := s.readAccount(ctx, id)
	return r, err
}

// Accounts returns every account record, by id; see account.Store.
func (s *Store) Accounts(ctx context.Context) ([]*account.Record, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	out := []*account.Record{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			r, err := unmarshalAccount(k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateAccount changes the account record with the id; see
// account.Store. It is optimistic: change runs in the caller's goroutine,
// on the record as last committed, and the writer stores the result only
// if the record is still what change saw, else UpdateAccount reads it
// again and calls change anew. The writer thus never waits on change, and
// a panic in change stays the caller's. The record keeps its id whatever
// change does to it.
func (s *Store) UpdateAccount(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error) {
	key := []byte(id)
	for {
		r, seen, err := s.readAccount(ctx, id)
		if err != nil {
			return nil, err
		}
		version := r.Version
		if err := change(r); err != nil {
			return nil, err
		}
		r.ID, r.Version = id, version+1
		value, err := marshalAccount(r)
		if err != nil {
			return nil, err
		}
		stored := false
		err = s.update(ctx, func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketAccounts)
			// Every change raises the version, so equal bytes mean no
			// change came between.
			stored = bytes.Equal(b.Get(key), seen)
			if !stored {
				return nil
			}
			return b.Put(key, value)
		})
		if err != nil {
			return nil, err
		}
		if stored {
			return r, nil
		}
	}
}

// readAccount returns the account record with the id and its stored
// value, or ErrNotFound.
func (s *Store) readAccount(ctx context.Context, id string) (*account.Record, []byte, error) {
	if err := s.ready(ctx); err != nil {
		return nil, nil, err
	}
	var (
		r     *account.Record
		value []byte
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get([]byte(id))
		if v == nil {
			return account.ErrNotFound
		}
		// v is valid only in the transaction.
		value = bytes.Clone(v)
		var err error
		r, err = unmarshalAccount([]byte(id), value)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return r, value, nil
}

// marshalAccount encodes an account record as JSON.
func marshalAccount(r *account.Record) ([]byte, error) {
	b, err := jsonenc.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("bolt: encoding account %s: %w", r.ID, err)
	}
	return b, nil
}

// unmarshalAccount decodes the account record stored under id.
func unmarshalAccount(id, v []byte) (*account.Record, error) {
	r := new(account.Record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("%w: account %s: %v", errCorrupt, id, err)
	}
	return r, nil
}

// Interface guard.
var _ account.Store = (*Store)(nil)
