package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/quota"
)

// Keys of the quota counters:
//
//	quota:<account>:<period start>:<quota id>  hash: used (the units
//	                spent), r:<request id> (a task refunded); it expires
//	                quota.Grace after its period ends, so that a task
//	                ending late still finds it
//
// The period start is Unix seconds; the quota id, last, is written as is.

// QuotaSpend spends a unit of every counter, or none, in one script: the
// check and the spend are atomic across every node; see quota.Store.
func (s *Store) QuotaSpend(ctx context.Context, p quota.SpendParams) (quota.SpendResult, error) {
	if err := ctx.Err(); err != nil {
		return quota.SpendResult{}, err
	}
	if len(p.Counters) == 0 {
		return quota.SpendResult{Spent: true, Used: []int64{}}, nil
	}
	keys := make([]string, len(p.Counters))
	args := make([]any, 0, 1+2*len(p.Counters))
	args = append(args, "")
	for i, c := range p.Counters {
		keys[i] = s.quotaKey(c)
		args = append(args, c.Limit, c.End.Add(quota.Grace).Unix())
	}
	args[0] = prefixOf(keys[0])
	v, err := scriptQuotaSpend.Run(ctx, s.rdb, keys, args...).Result()
	if err != nil {
		return quota.SpendResult{}, s.fail(err)
	}
	list, err := values(v)
	if err != nil {
		return quota.SpendResult{}, err
	}
	if len(list) != 2+len(keys) {
		return quota.SpendResult{}, errors.New("redis: unexpected answer from quota_spend")
	}
	spent, _ := integer(list[0])
	refused, _ := integer(list[1])
	res := quota.SpendResult{Spent: spent == 1, Refused: refused, Used: make([]int64, len(keys))}
	for i := range keys {
		n, err := integer(list[2+i])
		if err != nil {
			return quota.SpendResult{}, err
		}
		res.Used[i] = int64(n)
	}
	return res, nil
}

// QuotaRefund gives a unit back to every stored counter above zero, once
// per request id, in one script; see quota.Store.
func (s *Store) QuotaRefund(ctx context.Context, p quota.RefundParams) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	keys := make([]string, len(p.Counters))
	for i, c := range p.Counters {
		keys[i] = s.quotaKey(c)
	}
	if len(keys) == 0 {
		return false, nil
	}
	v, err := scriptQuotaRefund.Run(ctx, s.rdb, keys, prefixOf(keys[0]), p.RequestID).Result()
	if err != nil {
		return false, s.fail(err)
	}
	n, err := integer(v)
	return n == 1, err
}

// QuotaUsed returns the units of each counter; see quota.Store.
func (s *Store) QuotaUsed(ctx context.Context, counters []quota.Counter) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.StringCmd, len(counters))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range counters {
			cmds[i] = p.HGet(ctx, s.quotaKey(c), "used")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail(err)
	}
	used := make([]int64, len(counters))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, s.fail(err)
		}
		if used[i], err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("redis: quota count %q: %w", v, err)
		}
	}
	return used, nil
}

// QuotaPurge forgets nothing: Redis expires each counter a day after its
// period; see quota.Store.
func (s *Store) QuotaPurge(ctx context.Context, _ time.Time) (int, error) {
	return 0, ctx.Err()
}

// quotaKey returns the key of a counter, in its account's shard.
func (s *Store) quotaKey(c quota.Counter) string {
	return s.shardOf(c.AccountID).key("quota", part(c.AccountID), part(strconv.FormatInt(c.Start.Unix(), 10)), c.Quota)
}

// Interface guard.
var _ quota.Store = (*Store)(nil)
