package quota

import (
	"context"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// Book spends the units of accounts' quotas in a Store, gives back those
// of a task not stored (Undo), and lists what a task spent (Counters).
type Book struct {
	store Store
	clock clock.Clock
}

// BookConfig is what a Book is made of.
type BookConfig struct {
	// Store keeps the counters.
	Store Store
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
}

// NewBook returns a book over the config's store.
func NewBook(c BookConfig) *Book { return &Book{store: c.Store, clock: c.Clock} }

// counters returns the counters of the quotas that cover the task type,
// in the periods that hold t.
func counters(accountID string, qs []Quota, taskType string, t time.Time) []Counter {
	var cs []Counter
	for _, q := range qs {
		if q.Covers(taskType) {
			cs = append(cs, Counter{AccountID: accountID, Quota: q.ID(), Start: q.Period.Start(t), End: q.Period.End(t), Limit: q.Limit})
		}
	}
	return cs
}

// Spent is what Spend spent: the counters (for Undo) and how the quotas
// that cover the task stand after it.
type Spent struct {
	Counters []Counter
	Status   []Status
	// At is the instant whose periods the units were spent in: the
	// task's creation, whose periods Counters lists for a refund.
	At time.Time
}

// Spend spends a unit of each quota of the account that covers the task
// type, or none: *Exceeded when one is spent already, another error when
// the store fails. It returns what to give to Undo should the task not be
// stored after all; with no quota covering the type, it asks the store
// nothing.
func (b *Book) Spend(ctx context.Context, accountID string, qs []Quota, taskType string) (Spent, error) {
	if len(qs) == 0 {
		return Spent{}, nil
	}
	now := b.clock.Now()
	cs := counters(accountID, qs, taskType, now)
	if len(cs) == 0 {
		return Spent{}, nil
	}
	res, err := b.store.QuotaSpend(ctx, SpendParams{Counters: cs})
	if err != nil {
		return Spent{}, err
	}
	covering := make([]Quota, 0, len(cs))
	for _, q := range qs {
		if q.Covers(taskType) {
			covering = append(covering, q)
		}
	}
	if !res.Spent {
		c := cs[res.Refused]
		return Spent{}, &Exceeded{Quota: covering[res.Refused], ResetAt: c.End, RetryAfter: c.End.Sub(now)}
	}
	st := make([]Status, len(cs))
	for i, q := range covering {
		st[i] = Status{Quota: q, Used: res.Used[i], Left: max(0, q.Limit-res.Used[i]), ResetAt: cs[i].End}
	}
	return Spent{Counters: cs, Status: st, At: now}, nil
}

// Undo gives back the units Spend spent, for a task that was not stored
// (an idempotent replay, a store error).
func (b *Book) Undo(ctx context.Context, cs []Counter) error {
	if len(cs) == 0 {
		return nil
	}
	_, err := b.store.QuotaRefund(context.WithoutCancel(ctx), RefundParams{Counters: cs})
	return err
}

// Counters returns the counters a task of the type, created at
// createdAt, spent a unit of: those of each quota of the account that
// covers its type, in the periods of its creation. A task that ends
// SOURCE_DOWN gives them back when its end is stored (task.Store.Finish),
// once per task.
//
// It reads the account's quotas as they are now: a quota added since the
// task was created gives back a unit the task did not spend (a count
// never goes below zero), and one removed since gives back nothing.
func (b *Book) Counters(accountID string, qs []Quota, taskType string, createdAt time.Time) []Counter {
	return counters(accountID, qs, taskType, createdAt)
}

// PurgeEvery is how often Run forgets the counters of ended periods.
const PurgeEvery = time.Hour

// Grace is how long a counter outlives its period, so that a task that
// ends late still finds the counter to give its unit back to.
const Grace = 24 * time.Hour

// Purge forgets the counters of periods that ended more than a day ago.
func (b *Book) Purge(ctx context.Context) (int, error) {
	return b.store.QuotaPurge(ctx, b.clock.Now().Add(-Grace))
}

// Status is a quota of an account as it stands in its current period.
type Status struct {
	Quota Quota
	// Used is the units spent in the period.
	Used int64
	// Left is the units left: Limit - Used, at least 0.
	Left int64
	// ResetAt is the end of the period.
	ResetAt time.Time
}

// Status returns each quota of the account as it stands.
func (b *Book) Status(ctx context.Context, accountID string, qs []Quota) ([]Status, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	now := b.clock.Now()
	cs := make([]Counter, len(qs))
	for i, q := range qs {
		cs[i] = Counter{AccountID: accountID, Quota: q.ID(), Start: q.Period.Start(now), End: q.Period.End(now), Limit: q.Limit}
	}
	used, err := b.store.QuotaUsed(ctx, cs)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(qs))
	for i, q := range qs {
		out[i] = Status{Quota: q, Used: used[i], Left: max(0, q.Limit-used[i]), ResetAt: cs[i].End}
	}
	return out, nil
}
