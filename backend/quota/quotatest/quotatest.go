// Package quotatest is the conformance suite of quota.Store. Every store
// implementation runs it from its own tests and passes it unchanged.
package quotatest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/clocktest"
	"github.com/taskgate/taskgate/backend/quota"
)

// The accounts the suite works with: accountC is a prefix of accountA,
// and accountA of accountB, so that a store which concatenates key parts
// without a separator would mix them up.
const (
	accountA = "acme"
	accountB = "acme.eu"
	accountC = "acm"
	typePAN  = "verify_with_source/ind_pan"
	typeGST  = "verify_with_source/ind_gst"
)

// start is a time in the middle of a day and of a month.
var start = time.Date(2030, 2, 14, 13, 30, 0, 0, time.UTC)

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) quota.Store) {
	t.Run("SpendToLimit", func(t *testing.T) { testSpendToLimit(t, open(t)) })
	t.Run("AllOrNothing", func(t *testing.T) { testAllOrNothing(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("Rollover", func(t *testing.T) { testRollover(t, open(t)) })
	t.Run("Refund", func(t *testing.T) { testRefund(t, open(t)) })
	t.Run("AccountsApart", func(t *testing.T) { testAccountsApart(t, open(t)) })
	t.Run("Purge", func(t *testing.T) { testPurge(t, open(t)) })
}

func testPurge(t *testing.T, s quota.Store) {
	b, c := book(s)
	qs := []quota.Quota{{Limit: 1, Period: quota.Day}, {Limit: 5, Period: quota.Month}}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatal(err)
	}
	// Within a day of the day's end, nothing goes: a late refund finds
	// the count.
	c.Set(time.Date(2030, 2, 15, 12, 0, 0, 0, time.UTC))
	if _, err := b.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := refund(t, s, b, qs, "late", start); err != nil {
		t.Fatal(err)
	}
	c.Set(time.Date(2030, 2, 14, 14, 0, 0, 0, time.UTC))
	if got := status(t, b, accountA, qs); got[0] != 0 || got[1] != 0 {
		t.Errorf("used %v after a late refund, want [0 0]", got)
	}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatal(err)
	}
	// Past it, the day's count may go, never the month's.
	c.Set(time.Date(2030, 2, 16, 1, 0, 0, 0, time.UTC))
	n, err := b.Purge(t.Context())
	if err != nil || n > 1 {
		t.Fatalf("purge: %d, %v; want at most the day's count", n, err)
	}
	if got := status(t, b, accountA, qs); got[1] != 1 {
		t.Errorf("the month's count is %d after a purge, want 1", got[1])
	}
}

// refund gives back what a task of accountA's of typePAN, created at
// created, spent of qs, as the end of a task that failed SOURCE_DOWN
// does.
func refund(t *testing.T, s quota.Store, b *quota.Book, qs []quota.Quota, requestID string, created time.Time) error {
	_, err := s.QuotaRefund(t.Context(), quota.RefundParams{Counters: b.Counters(accountA, qs, typePAN, created), RequestID: requestID})
	return err
}

func book(s quota.Store) (*quota.Book, *clocktest.Clock) {
	c := clocktest.New(start)
	return quota.NewBook(quota.BookConfig{Store: s, Clock: c.Now}), c
}

func status(t *testing.T, b *quota.Book, account string, qs []quota.Quota) []int64 {
	t.Helper()
	st, err := b.Status(t.Context(), account, qs)
	if err != nil {
		t.Fatal(err)
	}
	used := make([]int64, len(st))
	for i, s := range st {
		used[i] = s.Used
		if s.Left != max(0, s.Quota.Limit-s.Used) {
			t.Errorf("quota %s: left %d with %d used", s.Quota, s.Left, s.Used)
		}
	}
	return used
}

func testSpendToLimit(t *testing.T, s quota.Store) {
	b, _ := book(s)
	qs := []quota.Quota{{Limit: 3, Period: quota.Day}}
	for i := range 3 {
		if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
			t.Fatalf("spend %d: %v", i+1, err)
		}
	}
	_, err := b.Spend(t.Context(), accountA, qs, typePAN)
	var ex *quota.Exceeded
	if !errors.As(err, &ex) || !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("fourth spend: %v, want quota exceeded", err)
	}
	want := time.Date(2030, 2, 15, 0, 0, 0, 0, time.UTC)
	if !ex.ResetAt.Equal(want) || ex.RetryAfter != want.Sub(start) {
		t.Errorf("reset at %v after %v, want %v", ex.ResetAt, ex.RetryAfter, want)
	}
	if got := status(t, b, accountA, qs); got[0] != 3 {
		t.Errorf("used %d, want 3", got[0])
	}
	// A quota of other task types is not spent.
	other := []quota.Quota{{Limit: 1, Period: quota.Day, TaskTypes: []string{typeGST}}}
	if sp, err := b.Spend(t.Context(), accountA, other, typePAN); err != nil || sp.Counters != nil {
		t.Errorf("spend of an uncovered type: %v, %v", sp, err)
	}
}

func testAllOrNothing(t *testing.T, s quota.Store) {
	b, _ := book(s)
	qs := []quota.Quota{{Limit: 5, Period: quota.Month}, {Limit: 2, Period: quota.Day, TaskTypes: []string{typePAN}}}
	for range 2 {
		if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.Spend(t.Context(), accountA, qs, typePAN)
	var ex *quota.Exceeded
	if !errors.As(err, &ex) || ex.Quota.Period != quota.Day {
		t.Fatalf("third spend: %v, want the daily quota exceeded", err)
	}
	if got := status(t, b, accountA, qs); got[0] != 2 || got[1] != 2 {
		t.Errorf("used %v after a refusal, want [2 2]: the monthly quota must not be spent", got)
	}
	// Another type spends the monthly quota alone.
	if _, err := b.Spend(t.Context(), accountA, qs, typeGST); err != nil {
		t.Fatal(err)
	}
	if got := status(t, b, accountA, qs); got[0] != 3 || got[1] != 2 {
		t.Errorf("used %v, want [3 2]", got)
	}
}

func testConcurrent(t *testing.T, s quota.Store) {
	b, _ := book(s)
	const limit, tries = 7, 40
	qs := []quota.Quota{{Limit: limit, Period: quota.Day}}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range tries {
		wg.Go(func() {
			_, err := b.Spend(t.Context(), accountA, qs, typePAN)
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.Is(err, quota.ErrExceeded):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != limit || refused.Load() != tries-limit {
		t.Errorf("admitted %d, refused %d; want %d and %d", admitted.Load(), refused.Load(), limit, tries-limit)
	}
}

func testRollover(t *testing.T, s quota.Store) {
	b, c := book(s)
	qs := []quota.Quota{{Limit: 1, Period: quota.Day}, {Limit: 2, Period: quota.Month}}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("second spend of the day: %v", err)
	}
	c.Set(time.Date(2030, 2, 15, 0, 0, 0, 0, time.UTC)) // the next day
	if got := status(t, b, accountA, qs); got[0] != 0 || got[1] != 1 {
		t.Errorf("used %v on the next day, want [0 1]", got)
	}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatalf("spend on the next day: %v", err)
	}
	_, err := b.Spend(t.Context(), accountA, qs, typePAN)
	var ex *quota.Exceeded
	if !errors.As(err, &ex) || ex.Quota.Period != quota.Day {
		t.Fatalf("second spend of the next day: %v", err)
	}
	c.Set(time.Date(2030, 2, 16, 0, 0, 0, 0, time.UTC))
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); !errors.As(err, &ex) || ex.Quota.Period != quota.Month ||
		!ex.ResetAt.Equal(time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("spend past the month's quota: %v", err)
	}
	c.Set(time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC))
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatalf("spend in the next month: %v", err)
	}
}

func testRefund(t *testing.T, s quota.Store) {
	b, c := book(s)
	qs := []quota.Quota{{Limit: 2, Period: quota.Day}}
	for range 2 {
		if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
			t.Fatal(err)
		}
	}
	created := c.Now()
	c.Advance(time.Hour)
	for range 2 { // once per task
		if err := refund(t, s, b, qs, "task-1", created); err != nil {
			t.Fatal(err)
		}
	}
	if got := status(t, b, accountA, qs); got[0] != 1 {
		t.Errorf("used %d after refunds of one task, want 1", got[0])
	}
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatalf("spend after a refund: %v", err)
	}
	// Undo is not once per task: each gives a unit back.
	sp, err := b.Spend(t.Context(), accountB, qs, typePAN)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.Status) != 1 || sp.Status[0].Used != 1 || sp.Status[0].Left != 1 {
		t.Errorf("status after a spend: %+v", sp.Status)
	}
	for range 3 {
		if err := b.Undo(t.Context(), sp.Counters); err != nil {
			t.Fatal(err)
		}
	}
	if got := status(t, b, accountB, qs); got[0] != 0 {
		t.Errorf("used %d after undoing more than spent, want 0 (never below)", got[0])
	}
	// A refund for a period gone does not touch the current one.
	c.Set(time.Date(2030, 2, 15, 1, 0, 0, 0, time.UTC))
	if _, err := b.Spend(t.Context(), accountA, qs, typePAN); err != nil {
		t.Fatal(err)
	}
	if err := refund(t, s, b, qs, "task-2", created); err != nil {
		t.Fatal(err)
	}
	if got := status(t, b, accountA, qs); got[0] != 1 {
		t.Errorf("used %d after a refund of yesterday's task, want 1", got[0])
	}
}

func testAccountsApart(t *testing.T, s quota.Store) {
	b, _ := book(s)
	qs := []quota.Quota{{Limit: 1, Period: quota.Day}}
	for _, acct := range []string{accountA, accountB, accountC} {
		if _, err := b.Spend(t.Context(), acct, qs, typePAN); err != nil {
			t.Fatalf("account %s: %v", acct, err)
		}
	}
	typed := []quota.Quota{{Limit: 1, Period: quota.Day, TaskTypes: []string{typePAN}}}
	if _, err := b.Spend(t.Context(), accountA, typed, typePAN); err != nil {
		t.Fatalf("a quota of other task types shares a counter: %v", err)
	}
}
