package memory

import (
	"cmp"
	"context"
	"slices"

	"github.com/taskgate/taskgate/backend/usage"
)

// AddUsage adds each row's counts to the stored row of its account, day
// and task type; see usage.Store.
func (s *Store) AddUsage(ctx context.Context, rows []usage.Row) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, r := range rows {
		// Rows are mostly of the latest day, so the insertion is mostly
		// near the end.
		list := s.usageRows[r.AccountID]
		i, found := slices.BinarySearchFunc(list, r, compareUsage)
		if !found {
			list = slices.Insert(list, i, usage.Row{AccountID: r.AccountID, Day: r.Day, TaskType: r.TaskType})
			s.usageRows[r.AccountID] = list
		}
		list[i].Add(r.Counts)
	}
	return nil
}

// Usage returns copies of the account's rows from day from to day to; see
// usage.Store.
func (s *Store) Usage(ctx context.Context, accountID, from, to string) ([]usage.Row, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	list := s.usageRows[accountID]
	lo := firstDay(list, from)
	hi := max(lo, firstAfter(list, to))
	out := make([]usage.Row, hi-lo)
	for i, r := range list[lo:hi] {
		r.Counts = r.Clone()
		out[i] = r
	}
	return out, nil
}

// PurgeUsage deletes every account's rows of the days before the given
// one; see usage.Store.
func (s *Store) PurgeUsage(ctx context.Context, before string) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for accountID, list := range s.usageRows {
		i := firstDay(list, before)
		n += i
		if i == len(list) {
			delete(s.usageRows, accountID)
		} else if i > 0 {
			s.usageRows[accountID] = slices.Delete(list, 0, i)
		}
	}
	return n, nil
}

// compareUsage orders an account's rows by day, then task type.
func compareUsage(a, b usage.Row) int {
	if c := cmp.Compare(a.Day, b.Day); c != 0 {
		return c
	}
	return cmp.Compare(a.TaskType, b.TaskType)
}

// firstDay returns the index of the first row of list whose day is day or
// later.
func firstDay(list []usage.Row, day string) int {
	i, _ := slices.BinarySearchFunc(list, day, func(r usage.Row, day string) int { return cmp.Compare(r.Day, day) })
	return i
}

// firstAfter returns the index of the first row of list whose day is after
// day.
func firstAfter(list []usage.Row, day string) int {
	i, _ := slices.BinarySearchFunc(list, day, func(r usage.Row, day string) int {
		if r.Day <= day {
			return -1
		}
		return 1
	})
	return i
}

// Interface guard.
var _ usage.Store = (*Store)(nil)
