package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
	"github.com/taskgate/taskgate/backend/usage"
)

// AddUsage adds each row's counts to the stored row of its account, day
// and task type, all in one transaction with concurrent changes; see
// usage.Store. It refuses a row whose account id or day holds a zero
// byte, which its key cannot hold.
func (s *Store) AddUsage(ctx context.Context, rows []usage.Row) error {
	if len(rows) == 0 {
		return s.ready(ctx)
	}
	keys := make([][]byte, len(rows))
	for i, r := range rows {
		if err := checkUsageKey(r.AccountID, r.Day); err != nil {
			return err
		}
		keys[i] = usageKey(r.AccountID, r.Day, r.TaskType)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUsage)
		for i, r := range rows {
			var c usage.Counts
			if v := b.Get(keys[i]); v != nil {
				if err := json.Unmarshal(v, &c); err != nil {
					return fmt.Errorf("%w: usage %q: %v", errCorrupt, keys[i], err)
				}
			}
			c.Add(r.Counts)
			value, err := jsonenc.Marshal(c)
			if err != nil {
				return fmt.Errorf("bolt: encoding usage: %w", err)
			}
			if err := b.Put(keys[i], value); err != nil {
				return err
			}
		}
		return nil
	})
}

// Usage returns the account's rows from day from to day to, read from the
// account's range of keys; see usage.Store.
func (s *Store) Usage(ctx context.Context, accountID, from, to string) ([]usage.Row, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	if err := checkUsageKey(accountID, ""); err != nil {
		return nil, err
	}
	out := []usage.Row{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		prefix := usagePrefix(accountID)
		c := tx.Bucket(bucketUsage).Cursor()
		for k, v := c.Seek(append(prefix, from...)); bytes.HasPrefix(k, prefix); k, v = c.Next() {
			_, day, taskType, ok := splitUsageKey(k)
			if !ok {
				return fmt.Errorf("%w: usage key %q", errCorrupt, k)
			}
			if string(day) > to {
				break
			}
			r := usage.Row{AccountID: accountID, Day: string(day), TaskType: string(taskType)}
			if err := json.Unmarshal(v, &r.Counts); err != nil {
				return fmt.Errorf("%w: usage %q: %v", errCorrupt, k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PurgeUsage deletes every account's rows of the days before the given
// one, in a transaction with concurrent changes; see usage.Store. An
// account's old rows are the start of its range: the scan reads those,
// then seeks past the rest of the account.
func (s *Store) PurgeUsage(ctx context.Context, before string) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		b := tx.Bucket(bucketUsage)
		// Keys are collected before deleting: deleting under a cursor
		// makes it skip.
		var old [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; {
			accountID, day, _, ok := splitUsageKey(k)
			if !ok {
				return fmt.Errorf("%w: usage key %q", errCorrupt, k)
			}
			if string(day) < before {
				old = append(old, bytes.Clone(k))
				k, _ = c.Next()
				continue
			}
			// One past the account's range: its id then 0x01.
			k, _ = c.Seek(append(bytes.Clone(accountID), 1))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// checkUsageKey refuses an account id or day with a zero byte, the
// separator of usage keys.
func checkUsageKey(accountID, day string) error {
	if strings.IndexByte(accountID, 0) >= 0 || strings.IndexByte(day, 0) >= 0 {
		return fmt.Errorf("bolt: usage of account %q, day %q: a zero byte in the account id or day", accountID, day)
	}
	return nil
}

// usagePrefix is what the keys of an account's usage rows start with.
func usagePrefix(accountID string) []byte {
	b := make([]byte, 0, len(accountID)+1+len("2006-01-02")+1+64)
	return append(append(b, accountID...), 0)
}

// usageKey is the key of a usage row: its account's prefix, the day, a
// zero byte and the task type.
func usageKey(accountID, day, taskType string) []byte {
	b := append(usagePrefix(accountID), day...)
	return append(append(b, 0), taskType...)
}

// splitUsageKey returns the parts of a usage key; they alias k.
func splitUsageKey(k []byte) (accountID, day, taskType []byte, ok bool) {
	accountID, rest, ok := bytes.Cut(k, []byte{0})
	if !ok {
		return nil, nil, nil, false
	}
	day, taskType, ok = bytes.Cut(rest, []byte{0})
	return accountID, day, taskType, ok
}

// Interface guard.
var _ usage.Store = (*Store)(nil)
