package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
	"github.com/taskgate/taskgate/backend/quota"
)

// quotaCount is a quota's count of one period as stored.
type quotaCount struct {
	// End is the end of the count's period, for QuotaPurge.
	End  time.Time `json:"end"`
	Used int64     `json:"used"`
	// Refunded are the request ids of the tasks given their unit back.
	Refunded []string `json:"refunded,omitempty"`
}

// QuotaSpend spends a unit of every counter, or none, in one transaction;
// see quota.Store.
func (s *Store) QuotaSpend(ctx context.Context, p quota.SpendParams) (quota.SpendResult, error) {
	keys, err := quotaKeys(p.Counters)
	if err != nil {
		return quota.SpendResult{}, err
	}
	var res quota.SpendResult
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		// The writer may run this again, alone, when its batch fails.
		b := tx.Bucket(bucketQuotas)
		res = quota.SpendResult{Spent: true, Used: make([]int64, len(keys))}
		counts := make([]quotaCount, len(keys))
		for i, k := range keys {
			if err := getQuotaCount(b, k, &counts[i]); err != nil {
				return err
			}
			res.Used[i] = counts[i].Used
			if res.Spent && counts[i].Used >= p.Counters[i].Limit {
				res.Spent, res.Refused = false, i
			}
		}
		if !res.Spent {
			return nil
		}
		for i, k := range keys {
			counts[i].Used++
			counts[i].End = p.Counters[i].End
			res.Used[i] = counts[i].Used
			if err := putQuotaCount(b, k, counts[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// QuotaRefund gives a unit back to every stored counter above zero, once
// per request id, in one transaction; see quota.Store.
func (s *Store) QuotaRefund(ctx context.Context, p quota.RefundParams) (bool, error) {
	keys, err := quotaKeys(p.Counters)
	if err != nil {
		return false, err
	}
	var refunded bool
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		var err error
		refunded, err = refundIn(tx, keys, p.RequestID, false)
		return err
	})
	return refunded, err
}

// refundIn gives a unit back to every stored counter of keys above zero,
// once per request id (any number of times without one), in tx, and
// tells whether it gave any. A counter that does not decode fails it,
// unless passOver, with which it is passed over.
func refundIn(tx *bbolt.Tx, keys [][]byte, requestID string, passOver bool) (bool, error) {
	b := tx.Bucket(bucketQuotas)
	refunded := false
	for _, k := range keys {
		if b.Get(k) == nil {
			continue
		}
		var c quotaCount
		if err := getQuotaCount(b, k, &c); err != nil {
			if passOver {
				continue
			}
			return false, err
		}
		if requestID != "" {
			if slices.Contains(c.Refunded, requestID) {
				continue
			}
			c.Refunded = append(c.Refunded, requestID)
		}
		refunded = true
		c.Used = max(0, c.Used-1)
		if err := putQuotaCount(b, k, c); err != nil {
			return false, err
		}
	}
	return refunded, nil
}

// QuotaUsed returns the units of each counter; see quota.Store.
func (s *Store) QuotaUsed(ctx context.Context, counters []quota.Counter) ([]int64, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	keys, err := quotaKeys(counters)
	if err != nil {
		return nil, err
	}
	used := make([]int64, len(keys))
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketQuotas)
		for i, k := range keys {
			var c quotaCount
			if err := getQuotaCount(b, k, &c); err != nil {
				return err
			}
			used[i] = c.Used
		}
		return nil
	})
	return used, err
}

// QuotaPurge deletes the counts of periods that ended before the time, in
// one transaction; see quota.Store.
func (s *Store) QuotaPurge(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketQuotas)
		n = 0
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var c quotaCount
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("%w: quota %q: %v", errCorrupt, k, err)
			}
			if c.End.Before(before) {
				old = append(old, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// quotaKeys returns the keys of the counters, refusing ids with a zero
// byte, which a key cannot hold.
func quotaKeys(cs []quota.Counter) ([][]byte, error) {
	keys := make([][]byte, len(cs))
	for i, c := range cs {
		if strings.IndexByte(c.AccountID, 0) >= 0 || strings.IndexByte(c.Quota, 0) >= 0 {
			return nil, fmt.Errorf("bolt: quota %q of account %q: a zero byte in an id", c.Quota, c.AccountID)
		}
		k := make([]byte, 0, len(c.AccountID)+len(c.Quota)+10)
		k = append(append(append(append(k, c.AccountID...), 0), c.Quota...), 0)
		keys[i] = binary.BigEndian.AppendUint64(k, uint64(c.Start.Unix()))
	}
	return keys, nil
}

func getQuotaCount(b *bbolt.Bucket, k []byte, c *quotaCount) error {
	v := b.Get(k)
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(v, c); err != nil {
		return fmt.Errorf("%w: quota %q: %v", errCorrupt, k, err)
	}
	return nil
}

func putQuotaCount(b *bbolt.Bucket, k []byte, c quotaCount) error {
	v, err := jsonenc.Marshal(c)
	if err != nil {
		return fmt.Errorf("bolt: encoding a quota count: %w", err)
	}
	return b.Put(k, v)
}

// Interface guard.
var _ quota.Store = (*Store)(nil)
