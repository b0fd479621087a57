package quota

import (
	"context"
	"time"
)

// Counter names one quota's count of one account in one period.
type Counter struct {
	// AccountID is the account's id.
	AccountID string
	// Quota is the quota's ID.
	Quota string
	// Start is the start of the period (UTC).
	Start time.Time
	// End is the end of the period: the store may forget the count after
	// it.
	End time.Time
	// Limit is the most units the count may reach.
	Limit int64
}

// OfAccount returns the counters of cs that are the account's.
func OfAccount(cs []Counter, accountID string) []Counter {
	var out []Counter
	for _, c := range cs {
		if c.AccountID == accountID {
			out = append(out, c)
		}
	}
	return out
}

// SpendParams are the counters QuotaSpend spends one unit of each of.
type SpendParams struct {
	Counters []Counter
}

// SpendResult is what QuotaSpend did.
type SpendResult struct {
	// Spent is true when every counter was under its limit and spent a
	// unit; false when one was at its limit and none was changed.
	Spent bool
	// Refused is the index of the first counter at its limit, when not
	// Spent.
	Refused int
	// Used are the counters' units, after the spend when Spent.
	Used []int64
}

// RefundParams are the counters QuotaRefund gives one unit back to.
type RefundParams struct {
	Counters []Counter
	// RequestID, when not empty, is the task the units were spent for: a
	// second refund of the same task's counters does nothing.
	RequestID string
}

// Store keeps the quota counters. Every implementation passes the
// conformance suite in package quotatest.
type Store interface {
	// QuotaSpend atomically checks that every counter is under its limit
	// and, only then, adds one unit to each. Counters not stored count
	// zero.
	QuotaSpend(ctx context.Context, p SpendParams) (SpendResult, error)
	// QuotaRefund takes one unit off each counter that is above zero,
	// atomically; with a RequestID it does so once per task (it reports
	// whether it did). A counter whose period has ended may be gone: its
	// refund does nothing.
	QuotaRefund(ctx context.Context, p RefundParams) (bool, error)
	// QuotaUsed returns the units of each counter (0 when not stored).
	QuotaUsed(ctx context.Context, counters []Counter) ([]int64, error)
	// QuotaPurge forgets the counters whose period ended before the
	// given time, and returns how many it forgot (a store whose counters
	// expire by themselves forgets none here).
	QuotaPurge(ctx context.Context, before time.Time) (int, error)
}
