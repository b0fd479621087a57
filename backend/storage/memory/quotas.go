package memory

import (
	"context"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
)

// quotaKey names the counters of one quota of one account.
type quotaKey struct{ account, quota string }

// quotaCount is one period's count of a quota, and the tasks refunded.
type quotaCount struct {
	end      time.Time
	used     int64
	refunded map[string]bool
}

// QuotaSpend spends a unit of every counter, or none, under the store's
// lock; see quota.Store.
func (s *Store) QuotaSpend(ctx context.Context, p quota.SpendParams) (quota.SpendResult, error) {
	if err := s.lock(ctx); err != nil {
		return quota.SpendResult{}, err
	}
	defer s.mu.Unlock()
	res := quota.SpendResult{Spent: true, Used: make([]int64, len(p.Counters))}
	for i, c := range p.Counters {
		if n := s.quotaCount(c, false); n != nil {
			res.Used[i] = n.used
		}
		if res.Spent && res.Used[i] >= c.Limit {
			res.Spent, res.Refused = false, i
		}
	}
	if !res.Spent {
		return res, nil
	}
	for i, c := range p.Counters {
		n := s.quotaCount(c, true)
		n.used++
		res.Used[i] = n.used
	}
	return res, nil
}

// QuotaRefund gives a unit back to every counter above zero, once per
// request id; see quota.Store.
func (s *Store) QuotaRefund(ctx context.Context, p quota.RefundParams) (bool, error) {
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	return s.refund(p.Counters, p.RequestID), nil
}

// refund gives a unit back to every counter above zero, once per request
// id (any number of times without one), and tells whether it gave any.
// The caller holds s.mu.
func (s *Store) refund(counters []quota.Counter, requestID string) bool {
	refunded := false
	for _, c := range counters {
		n := s.quotaCount(c, false)
		if n == nil {
			continue
		}
		if requestID != "" {
			if n.refunded[requestID] {
				continue
			}
			if n.refunded == nil {
				n.refunded = make(map[string]bool)
			}
			n.refunded[requestID] = true
		}
		refunded = true
		n.used = max(0, n.used-1)
	}
	return refunded
}

// QuotaUsed returns the units of each counter; see quota.Store.
func (s *Store) QuotaUsed(ctx context.Context, counters []quota.Counter) ([]int64, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	used := make([]int64, len(counters))
	for i, c := range counters {
		if n := s.quotaCount(c, false); n != nil {
			used[i] = n.used
		}
	}
	return used, nil
}

// QuotaPurge forgets the counts of periods that ended before the time;
// see quota.Store.
func (s *Store) QuotaPurge(ctx context.Context, before time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for k, periods := range s.quotas {
		for start, c := range periods {
			if c.end.Before(before) {
				delete(periods, start)
				n++
			}
		}
		if len(periods) == 0 {
			delete(s.quotas, k)
		}
	}
	return n, nil
}

// quotaCount returns the count of c, made when create is set; nil when
// there is none.
func (s *Store) quotaCount(c quota.Counter, create bool) *quotaCount {
	k := quotaKey{c.AccountID, c.Quota}
	start := c.Start.UnixNano()
	periods := s.quotas[k]
	if n := periods[start]; n != nil || !create {
		return n
	}
	if periods == nil {
		periods = make(map[int64]*quotaCount)
		s.quotas[k] = periods
	}
	n := &quotaCount{end: c.End}
	periods[start] = n
	return n
}

// Interface guard.
var _ quota.Store = (*Store)(nil)
