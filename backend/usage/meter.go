package usage

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/clock"
)

// Meter counts usage in memory and flushes it to a store in batches, so
// that counting costs a request a map increment under one of several
// locks, never a store write. It is safe for concurrent use.
type Meter struct {
	store  Store
	now    clock.Clock
	seed   maphash.Seed
	shards [16]shard
	// flushing serializes flushes, so that counts merged back after a
	// failed write are not written twice.
	flushing sync.Mutex
	// totals count since the meter was made, for this node's live rates.
	requests, created, ended atomic.Int64

	// Retention, when not zero, is how long Run keeps rows: once an
	// hour it purges the days older than that.
	Retention time.Duration
}

type shard struct {
	mu     sync.Mutex
	counts map[key]*Counts
}

// key names a row while it is in memory. The day is counted in days since
// the Unix epoch (UTC), cheaper than formatting a date per request.
type key struct {
	account, taskType string
	day               int32
}

// NewMeter returns a meter that flushes to store; now is the clock
// (time.Now if nil).
func NewMeter(c MeterConfig) *Meter {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	m := &Meter{store: c.Store, now: c.Clock, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].counts = make(map[key]*Counts)
	}
	return m
}

// Request counts one request of the account. taskType is the configured
// task type it named, if any; rejected is the error code it was refused
// with ("TOO_MANY_REQUESTS"), empty when it was not.
func (m *Meter) Request(accountID, taskType, rejected string) {
	m.requests.Add(1)
	m.add(accountID, taskType, func(c *Counts) {
		c.Requests++
		if rejected != "" {
			if c.Rejected == nil {
				c.Rejected = make(map[string]int64, 1)
			}
			c.Rejected[rejected]++
		}
	})
}

// TaskCreated counts a new task of the account.
func (m *Meter) TaskCreated(accountID, taskType string) {
	m.created.Add(1)
	m.add(accountID, taskType, func(c *Counts) { c.Created++ })
}

// TaskEnded counts a task of the account that completed or, when failed,
// failed.
func (m *Meter) TaskEnded(accountID, taskType string, failed bool) {
	m.ended.Add(1)
	m.add(accountID, taskType, func(c *Counts) {
		if failed {
			c.Failed++
		} else {
			c.Completed++
		}
	})
}

// Totals are what this meter counted since it was made, whatever was
// flushed: requests, tasks created and tasks ended. A node's live rates
// are their differences over time.
type Totals struct {
	Requests int64 `json:"requests"`
	Created  int64 `json:"tasks_created"`
	Ended    int64 `json:"tasks_ended"`
}

// Totals returns what the meter counted since it was made.
func (m *Meter) Totals() Totals {
	return Totals{Requests: m.requests.Load(), Created: m.created.Load(), Ended: m.ended.Load()}
}

func (m *Meter) add(accountID, taskType string, count func(*Counts)) {
	k := key{account: accountID, taskType: taskType, day: int32(m.now().Unix() / 86400)}
	s := &m.shards[maphash.String(m.seed, accountID)%uint64(len(m.shards))]
	s.mu.Lock()
	c := s.counts[k]
	if c == nil {
		c = new(Counts)
		s.counts[k] = c
	}
	count(c)
	s.mu.Unlock()
}

// Flush writes what was counted since the last flush in one store write.
// When the write fails, the counts are kept for the next flush.
func (m *Meter) Flush(ctx context.Context) error {
	m.flushing.Lock()
	defer m.flushing.Unlock()
	taken := make([]map[key]*Counts, len(m.shards))
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		if len(s.counts) > 0 {
			taken[i], s.counts = s.counts, make(map[key]*Counts, len(s.counts))
			n += len(taken[i])
		}
		s.mu.Unlock()
	}
	if n == 0 {
		return nil
	}
	rows := make([]Row, 0, n)
	for _, counts := range taken {
		for k, c := range counts {
			// Ids that no account can have (users of other
			// authentication handlers, the stand-in of unknown ids)
			// are counted, for the same cost, and never stored.
			if account.ValidateID(k.account) != nil {
				continue
			}
			row := Row{AccountID: k.account, Day: Day(time.Unix(int64(k.day)*86400, 0)), TaskType: k.taskType, Counts: *c}
			if c.Rejected != nil {
				row.Rejected = make(map[string]int64, len(c.Rejected))
				for code, n := range c.Rejected {
					row.Rejected[strings.ToLower(code)] += n
				}
			}
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, func(a, b Row) int {
		return strings.Compare(a.AccountID+"\x00"+a.Day+"\x00"+a.TaskType, b.AccountID+"\x00"+b.Day+"\x00"+b.TaskType)
	})
	if len(rows) == 0 {
		return nil
	}
	if err := m.store.AddUsage(ctx, rows); err != nil {
		// What the store did store is not counted again.
		stored := map[[3]string]bool{}
		var partial *PartialError
		if errors.As(err, &partial) {
			for i, r := range rows {
				if i < len(partial.Stored) && partial.Stored[i] {
					stored[[3]string{r.AccountID, r.Day, r.TaskType}] = true
				}
			}
		}
		for i, counts := range taken {
			s := &m.shards[i]
			s.mu.Lock()
			for k, c := range counts {
				if stored[[3]string{k.account, Day(time.Unix(int64(k.day)*86400, 0)), k.taskType}] {
					continue
				}
				if mine := s.counts[k]; mine != nil {
					c.Add(*mine)
				}
				s.counts[k] = c
			}
			s.mu.Unlock()
		}
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, then flushes a last time
// with flushTimeout to do it. onError is told of failed flushes.
func (m *Meter) Run(ctx context.Context, interval, flushTimeout time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var purged time.Time
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			if err := m.Flush(last); err != nil {
				onError(err)
			}
			return
		case <-t.C:
			if err := m.Flush(ctx); err != nil && ctx.Err() == nil {
				onError(err)
			}
			if now := m.now(); m.Retention > 0 && now.Sub(purged) >= time.Hour {
				purged = now
				if _, err := m.store.PurgeUsage(ctx, Day(now.Add(-m.Retention))); err != nil && ctx.Err() == nil {
					onError(err)
				}
			}
		}
	}
}

// Day returns the UTC day of t, "2006-01-02".
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// MeterConfig is what a Meter is made of.
type MeterConfig struct {
	// Store keeps the counts.
	Store Store
	// Clock tells the time, which decides the day a count goes to (the
	// system's if nil).
	Clock clock.Clock
}
