package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/account"
)

// Keys of the accounts:
//
//	account:<id>  string: the record as JSON
//	accounts      sorted set of the ids, every score 0, so that Redis
//	              keeps them in byte order: the order of Accounts
//
// A record and its id enter together (MULTI) and never leave: the store
// has no delete.

// Optimistic transactions (WATCH … MULTI … EXEC) try this many times
// before giving up on a key that keeps changing.
const maxTxAttempts = 100

// CreateAccount stores a new account record; see account.Store. The
// record and its id in the index are one MULTI.
func (s *Store) CreateAccount(ctx context.Context, r *account.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	value, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("redis: encoding account %s: %w", r.ID, err)
	}
	var created *goredis.BoolCmd
	_, err = s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		created = p.SetNX(ctx, s.key("account", r.ID), value, 0)
		// When the id is taken, it is in the index already: adding it
		// again changes nothing.
		p.ZAdd(ctx, s.key("accounts"), goredis.Z{Member: r.ID})
		return nil
	})
	if err != nil {
		return storeErr(err)
	}
	if !created.Val() {
		return account.ErrExists
	}
	return nil
}

// Account returns the account record with the id; see account.Store.
func (s *Store) Account(ctx context.Context, id string) (*account.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.getAccount(ctx, s.rdb, id)
}

// Accounts returns every account record, by id; see account.Store. It
// reads the index, then the records in one MGET.
func (s *Store) Accounts(ctx context.Context) ([]*account.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids, err := s.rdb.ZRange(ctx, s.key("accounts"), 0, -1).Result()
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]*account.Record, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.key("account", id)
	}
	values, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, storeErr(err)
	}
	for i, v := range values {
		value, ok := v.(string)
		if !ok {
			// The index and the records are written together: a
			// record gone (an operator's DEL, an eviction against
			// advice) leaves an entry nothing answers for. The other
			// accounts load all the same.
			continue
		}
		r, err := unmarshalAccount(ids[i], value)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// UpdateAccount changes the account record with the id; see
// account.Store. It is optimistic: it WATCHes the record, reads it, calls
// change and writes the result in a MULTI, which Redis refuses when the
// record changed after the WATCH; then it starts again, with a short
// random pause so that contenders spread out. The record keeps its id
// whatever change does to it.
func (s *Store) UpdateAccount(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error) {
	key := s.key("account", id)
	var updated *account.Record
	err := s.watchRetry(ctx, func(tx *goredis.Tx) error {
		updated = nil
		r, err := s.getAccount(ctx, tx, id)
		if err != nil {
			return err
		}
		version := r.Version
		if err := change(r); err != nil {
			return err
		}
		r.ID, r.Version = id, version+1
		value, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("redis: encoding account %s: %w", id, err)
		}
		if _, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, key, value, 0)
			return nil
		}); err != nil {
			return err
		}
		updated = r
		return nil
	}, key)
	if err != nil {
		return nil, err
	}
	return updated, nil
}

// getAccount reads the account record with the id through c: the store's
// client, or a transaction's connection.
func (s *Store) getAccount(ctx context.Context, c goredis.Cmdable, id string) (*account.Record, error) {
	value, err := c.Get(ctx, s.key("account", id)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, account.ErrNotFound
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return unmarshalAccount(id, value)
}

// unmarshalAccount decodes the account record stored under id.
func unmarshalAccount(id, value string) (*account.Record, error) {
	r := new(account.Record)
	if err := json.Unmarshal([]byte(value), r); err != nil {
		return nil, fmt.Errorf("redis: account %s: stored value is not a record: %v", id, err)
	}
	return r, nil
}

// watchRetry runs fn in an optimistic transaction that WATCHes keys, again
// while Redis refuses its MULTI because a key changed, at most
// maxTxAttempts times. fn's own errors end it at once and are returned as
// they are.
func (s *Store) watchRetry(ctx context.Context, fn func(*goredis.Tx) error, keys ...string) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The cluster client, closed, still runs a transaction.
		if s.closed.Load() {
			return ErrClosed
		}
		err := s.rdb.Watch(ctx, fn, keys...)
		if !errors.Is(err, goredis.TxFailedErr) {
			return storeErr(err)
		}
		if attempt == maxTxAttempts {
			return fmt.Errorf("redis: %s changed during each of %d attempts: %w", keys[0], attempt, err)
		}
		// Contenders that retry in step collide again; a pause of up
		// to a few milliseconds, growing with the attempts, spreads
		// them.
		if !waitOrDone(ctx, rand.N(time.Duration(min(attempt, 10))*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// storeErr returns go-redis's error as the store's: ErrClosed once the
// store is closed, anything else as it is (go-redis's own errors start
// with "redis: "). nil stays nil.
func storeErr(err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Interface guard.
var _ account.Store = (*Store)(nil)
