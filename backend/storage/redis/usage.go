package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/usage"
)

// Keys of the usage counts, where a day is "2006-01-02" and its number
// the days since 1970-01-01:
//
//	usage:row:<account>:<day>:<task type>  hash of the row's counts: the
//	                fields requests, tasks_created, tasks_completed,
//	                tasks_failed and rejected:<reason>
//	usage:account:<account>  sorted set of the account's rows as
//	                "<day>:<task type>", scored by day number: Usage reads a
//	                range of it, in the order it wants (score, then bytes)
//	usage:rows      sorted set of every row of the shard as
//	                "<account>:<day>:<task type>", scored by day number:
//	                PurgeUsage reads what is before a day from it
//
// They are in the shard of the account (shards.go).
//
// A row's key is unambiguous because the account id holds no ':' (the
// store refuses one that does) and a day is always ten characters; the
// task type, last, may hold anything.

// Fields of a usage row's hash; the JSON names of usage.Counts.
const (
	fieldRequests  = "requests"
	fieldCreated   = "tasks_created"
	fieldCompleted = "tasks_completed"
	fieldFailed    = "tasks_failed"
	// fieldRejected starts the field of each reason: "rejected:<reason>".
	fieldRejected = "rejected:"
)

// purgeBatch is how many keys one DEL of PurgeUsage names at most.
const purgeBatch = 1000

// AddUsage adds each row's counts to the stored row of its account, day
// and task type; see usage.Store. The HINCRBYs of the rows of a shard and
// their index entries are one MULTI: Redis runs all of them, or none. A
// command may still fail as it runs (a key of another type, a count that
// is not an integer: a damaged row), the others applied all the same: a
// row any of whose commands ran counts as stored, so that it is never
// added twice; a row none of whose commands ran is not. It refuses a row
// whose account id holds ':' or whose day is not a date.
func (s *Store) AddUsage(ctx context.Context, rows []usage.Row) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	days := make([]int64, len(rows))
	for i, r := range rows {
		if err := checkUsageAccount(r.AccountID); err != nil {
			return err
		}
		var err error
		if days[i], err = dayNumber(r.Day); err != nil {
			return err
		}
	}
	// One MULTI per shard: a transaction stays in one slot. When one
	// fails after others were applied, the error says which rows are
	// stored (usage.PartialError), so that they are not added twice.
	byShard := make(map[*shard][]int)
	stored := make([]bool, len(rows))
	anyStored := false
	for i, r := range rows {
		sh := s.shardOf(r.AccountID)
		byShard[sh] = append(byShard[sh], i)
	}
	for _, sh := range s.shards {
		if len(byShard[sh]) == 0 {
			continue
		}
		var ranOf []int // the row of each command
		cmds, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for _, i := range byShard[sh] {
				r := rows[i]
				key := s.usageRowKey(r.AccountID, r.Day, r.TaskType)
				// Every counter is incremented, zeros too, so that a row
				// of zeros is stored like any other.
				p.HIncrBy(ctx, key, fieldRequests, r.Requests)
				p.HIncrBy(ctx, key, fieldCreated, r.Created)
				p.HIncrBy(ctx, key, fieldCompleted, r.Completed)
				p.HIncrBy(ctx, key, fieldFailed, r.Failed)
				for reason, n := range r.Rejected {
					p.HIncrBy(ctx, key, fieldRejected+reason, n)
				}
				score := float64(days[i])
				p.ZAdd(ctx, sh.key("usage", "account", r.AccountID), goredis.Z{Score: score, Member: r.Day + ":" + r.TaskType})
				p.ZAdd(ctx, sh.key("usage", "rows"), goredis.Z{Score: score, Member: r.AccountID + ":" + r.Day + ":" + r.TaskType})
				for len(ranOf) < p.Len() {
					ranOf = append(ranOf, i)
				}
			}
			return nil
		})
		ran := make(map[int]bool)
		if len(cmds) == len(ranOf) {
			for j, c := range cmds {
				if c.Err() == nil {
					ran[ranOf[j]] = true
				}
			}
		}
		all := true
		for _, i := range byShard[sh] {
			if err == nil || ran[i] {
				stored[i], anyStored = true, true
			} else {
				all = false
			}
		}
		if !all {
			if anyStored {
				return &usage.PartialError{Stored: stored, Err: storeErr(err)}
			}
			return storeErr(err)
		}
	}
	return nil
}

// Usage returns the account's rows from day from to day to; see
// usage.Store. It reads the range of the account's index, then the rows'
// hashes in one MULTI, so that the counts are of one instant.
func (s *Store) Usage(ctx context.Context, accountID, from, to string) ([]usage.Row, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkUsageAccount(accountID); err != nil {
		return nil, err
	}
	fromDay, err := dayNumber(from)
	if err != nil {
		return nil, err
	}
	toDay, err := dayNumber(to)
	if err != nil {
		return nil, err
	}
	out := []usage.Row{}
	if fromDay > toDay {
		return out, nil
	}
	members, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
		Key:     s.shardOf(accountID).key("usage", "account", accountID),
		Start:   fromDay,
		Stop:    toDay,
		ByScore: true,
	}).Result()
	if err != nil {
		return nil, storeErr(err)
	}
	if len(members) == 0 {
		return out, nil
	}
	rows := make([]usage.Row, len(members))
	cmds := make([]*goredis.MapStringStringCmd, len(members))
	_, err = s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range members {
			day, taskType, ok := splitUsageMember(m)
			if !ok {
				return fmt.Errorf("redis: usage index of account %s: entry %q is not <day>:<task type>", accountID, m)
			}
			rows[i] = usage.Row{AccountID: accountID, Day: day, TaskType: taskType}
			cmds[i] = p.HGetAll(ctx, s.usageRowKey(accountID, day, taskType))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr(err)
	}
	for i, cmd := range cmds {
		fields := cmd.Val()
		if len(fields) == 0 {
			// Purged between the index read and this one.
			continue
		}
		if err := parseCounts(fields, &rows[i].Counts); err != nil {
			return nil, fmt.Errorf("redis: usage of account %s, %s %q: %w", accountID, rows[i].Day, rows[i].TaskType, err)
		}
		out = append(out, rows[i])
	}
	return out, nil
}

// PurgeUsage deletes every account's rows of the days before the given
// one; see usage.Store. It is optimistic: it WATCHes the index of all
// rows, reads the old ones from it and deletes them, with their index
// entries, in a MULTI, which Redis refuses when a row was added in
// between; then it starts again. Adding to a row that exists changes no
// index, so the meter's flushes of today do not make it retry.
func (s *Store) PurgeUsage(ctx context.Context, before string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	beforeDay, err := dayNumber(before)
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, sh := range s.shards {
		n, err := s.purgeUsage(ctx, sh, beforeDay)
		total += n
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

// purgeUsage deletes the shard's rows of the days before beforeDay.
func (s *Store) purgeUsage(ctx context.Context, sh *shard, beforeDay int64) (int, error) {
	all := sh.key("usage", "rows")
	n := 0
	err := s.watchRetry(ctx, func(tx *goredis.Tx) error {
		n = 0
		old, err := tx.ZRangeArgs(ctx, goredis.ZRangeArgs{
			Key:     all,
			Start:   "-inf",
			Stop:    "(" + strconv.FormatInt(beforeDay, 10),
			ByScore: true,
		}).Result()
		if err != nil || len(old) == 0 {
			return err
		}
		rowKeys := make([]string, len(old))
		byAccount := make(map[string][]any)
		for i, ref := range old {
			accountID, member, ok := strings.Cut(ref, ":")
			if !ok {
				return fmt.Errorf("redis: usage index: entry %q is not <account>:<day>:<task type>", ref)
			}
			rowKeys[i] = sh.key("usage", "row", ref)
			byAccount[accountID] = append(byAccount[accountID], member)
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for batch := range slices.Chunk(rowKeys, purgeBatch) {
				p.Del(ctx, batch...)
			}
			for accountID, members := range byAccount {
				for batch := range slices.Chunk(members, purgeBatch) {
					p.ZRem(ctx, sh.key("usage", "account", accountID), batch...)
				}
			}
			for batch := range slices.Chunk(old, purgeBatch) {
				p.ZRem(ctx, all, toAny(batch)...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n = len(old)
		return nil
	}, all)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// usageRowKey is the key of the hash of a usage row, in its account's
// shard.
func (s *Store) usageRowKey(accountID, day, taskType string) string {
	return s.shardOf(accountID).key("usage", "row", accountID, day, taskType)
}

// splitUsageMember splits an entry of an account's usage index,
// "<day>:<task type>".
func splitUsageMember(m string) (day, taskType string, ok bool) {
	const n = len(time.DateOnly)
	if len(m) <= n || m[n] != ':' {
		return "", "", false
	}
	return m[:n], m[n+1:], true
}

// checkUsageAccount refuses an account id with ':', which would make the
// keys of usage rows ambiguous. Account ids never hold one
// (account.ValidateID); the check keeps a caller that skipped validation
// from mixing two accounts up.
func checkUsageAccount(accountID string) error {
	if strings.Contains(accountID, ":") {
		return fmt.Errorf("redis: usage of account %q: an account id with ':'", accountID)
	}
	return nil
}

// dayNumber returns the number of a day ("2006-01-02"): the days since
// 1970-01-01, which scores the usage indexes.
func dayNumber(day string) (int64, error) {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return 0, fmt.Errorf("redis: usage day %q: want a date, 2006-01-02", day)
	}
	// The time is a UTC midnight: the division is exact, before 1970 too.
	return t.Unix() / 86400, nil
}

// parseCounts decodes the hash of a usage row into c.
func parseCounts(fields map[string]string, c *usage.Counts) error {
	for field, value := range fields {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("field %s: %q is not a count", field, value)
		}
		switch field {
		case fieldRequests:
			c.Requests = n
		case fieldCreated:
			c.Created = n
		case fieldCompleted:
			c.Completed = n
		case fieldFailed:
			c.Failed = n
		default:
			reason, ok := strings.CutPrefix(field, fieldRejected)
			if !ok {
				return fmt.Errorf("unknown field %s", field)
			}
			if c.Rejected == nil {
				c.Rejected = make(map[string]int64)
			}
			c.Rejected[reason] = n
		}
	}
	return nil
}

// toAny returns the strings as arguments of a command.
func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// Interface guard.
var _ usage.Store = (*Store)(nil)
