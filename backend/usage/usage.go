// Package usage counts what each account does, per day and task type:
// requests, rejections by reason, and tasks created, completed and failed.
// A Meter aggregates counts in memory, off the request's way, and flushes
// them to a Store in batches.
package usage

import (
	"context"
	"maps"
)

// Counts are what one account did in one day with one task type.
type Counts struct {
	// Requests counts the requests of the account: those authenticated
	// as it, and those refused with a wrong key for it.
	Requests int64 `json:"requests"`
	// Rejected counts the refused requests by reason: the lower-case
	// error code ("too_many_requests", "ip_not_allowed", …).
	Rejected map[string]int64 `json:"rejected,omitempty"`
	// Created, Completed and Failed count tasks.
	Created   int64 `json:"tasks_created"`
	Completed int64 `json:"tasks_completed"`
	Failed    int64 `json:"tasks_failed"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Requests += o.Requests
	c.Created += o.Created
	c.Completed += o.Completed
	c.Failed += o.Failed
	if len(o.Rejected) > 0 && c.Rejected == nil {
		c.Rejected = make(map[string]int64, len(o.Rejected))
	}
	for reason, n := range o.Rejected {
		c.Rejected[reason] += n
	}
}

// Clone returns a deep copy of c.
func (c Counts) Clone() Counts {
	if c.Rejected != nil {
		c.Rejected = maps.Clone(c.Rejected)
	}
	return c
}

// Row is the counts of one account, day and task type.
type Row struct {
	AccountID string `json:"account_id"`
	// Day is the UTC day, "2006-01-02".
	Day string `json:"day"`
	// TaskType is the "action/type" of the requests and tasks counted;
	// empty for requests that name no configured task type (polls,
	// other routes).
	TaskType string `json:"task_type"`
	Counts
}

// PartialError is the error of an AddUsage that stored some of its rows
// (a store that writes its shards apart): Stored[i] tells that rows[i]
// was stored, so that a caller writes the others again, not those.
type PartialError struct {
	Stored []bool
	Err    error
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Store keeps usage counts. Every implementation passes the conformance
// suite in package usagetest.
type Store interface {
	// AddUsage adds each row's counts to what is stored for its account,
	// day and task type, all rows in one durable write (a store that
	// spreads accounts over shards: the rows of each shard in one).
	AddUsage(ctx context.Context, rows []Row) error
	// Usage returns the rows of the account whose day is from from to to,
	// both included ("2006-01-02"), by day then task type; empty, not
	// nil, when none.
	Usage(ctx context.Context, accountID, from, to string) ([]Row, error)
	// PurgeUsage deletes every row whose day is before the given day
	// ("2006-01-02") and returns how many it deleted.
	PurgeUsage(ctx context.Context, before string) (int, error)
}
