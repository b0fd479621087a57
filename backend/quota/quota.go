// Package quota holds the quotas of accounts: how many tasks an account
// may create in a UTC calendar day or month, of every task type or of some.
// A Book spends a unit of each quota that covers a task when the task is
// accepted, and gives it back when the task ends SOURCE_DOWN; the counts
// live in a Store, whose check-and-spend is atomic, so that nodes sharing
// a store admit exactly the limit.
package quota

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Period is the calendar period a quota counts over, in UTC.
type Period string

// The periods of quotas.
const (
	// Day runs from 00:00 UTC to the next 00:00 UTC.
	Day Period = "day"
	// Month runs from 00:00 UTC on the 1st to the next 1st.
	Month Period = "month"
)

// Start returns the start of the period that holds t.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	if p == Month {
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// End returns the end of the period that holds t: the start of the next.
func (p Period) End(t time.Time) time.Time {
	s := p.Start(t)
	if p == Month {
		return s.AddDate(0, 1, 0)
	}
	return s.AddDate(0, 0, 1)
}

// Quota is a most number of tasks an account may create in a period.
type Quota struct {
	// Limit is the most tasks of the period; at least 1.
	Limit int64
	// Period is Day or Month.
	Period Period
	// TaskTypes limits the quota to these "action/type"s; empty counts
	// every task type.
	TaskTypes []string
}

// Parse reads a quota's limit and period as people write them, "N/day" or
// "N/month" (no task types).
func Parse(s string) (Quota, error) {
	n, p, ok := strings.Cut(s, "/")
	limit, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || limit < 1 {
		return Quota{}, fmt.Errorf("quota %q: want N/day or N/month, N a whole number from 1", s)
	}
	q := Quota{Limit: limit, Period: Period(p)}
	if err := q.Validate(); err != nil {
		return Quota{}, err
	}
	return q, nil
}

// Validate checks the limit, the period and that no task type is named
// twice. (That each task type is well formed and configured is the
// account's to check.)
func (q Quota) Validate() error {
	switch {
	case q.Limit < 1:
		return fmt.Errorf("quota %s: the limit must be at least 1", q)
	case q.Period != Day && q.Period != Month:
		return fmt.Errorf("quota %s: the period must be day or month", q)
	}
	for i, t := range q.TaskTypes {
		if slices.Contains(q.TaskTypes[:i], t) {
			return fmt.Errorf("quota %s: task type %s named twice", q, t)
		}
	}
	return nil
}

// String is the quota as people write it: "10000/month" and its types.
func (q Quota) String() string {
	s := strconv.FormatInt(q.Limit, 10) + "/" + string(q.Period)
	if len(q.TaskTypes) > 0 {
		s += " " + strings.Join(q.TaskTypes, " ")
	}
	return s
}

// Covers tells whether a task of the type spends a unit of the quota.
func (q Quota) Covers(taskType string) bool {
	return len(q.TaskTypes) == 0 || slices.Contains(q.TaskTypes, taskType)
}

// ID names the quota's counters within its account: its period and its
// task types, sorted ("month:a/b,c/d"). Two quotas of an account with the
// same ID would share a counter; ValidateSet refuses them.
func (q Quota) ID() string {
	if len(q.TaskTypes) == 0 {
		return string(q.Period)
	}
	types := slices.Sorted(slices.Values(q.TaskTypes))
	return string(q.Period) + ":" + strings.Join(types, ",")
}

// ValidateSet checks each quota of an account, and that no two share a
// period and task types (they would share a counter).
func ValidateSet(qs []Quota) error {
	for i, q := range qs {
		if err := q.Validate(); err != nil {
			return err
		}
		for _, other := range qs[:i] {
			if other.ID() == q.ID() {
				return fmt.Errorf("quota %s: another quota has the same period and task types", q)
			}
		}
	}
	return nil
}

// ErrExceeded is the error of a task over one of its account's quotas.
var ErrExceeded = errors.New("quota exceeded")

// Exceeded is the error of a task refused by a quota: which, and when it
// resets.
type Exceeded struct {
	// Quota is the quota that is spent.
	Quota Quota
	// ResetAt is the end of its period.
	ResetAt time.Time
	// RetryAfter is the time from the refusal to ResetAt.
	RetryAfter time.Duration
}

func (e *Exceeded) Error() string {
	return "quota " + e.Quota.String() + " exceeded until " + e.ResetAt.Format(time.RFC3339)
}

// Unwrap makes an *Exceeded ErrExceeded.
func (e *Exceeded) Unwrap() error { return ErrExceeded }
