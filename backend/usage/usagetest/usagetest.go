// Package usagetest is the conformance suite of usage.Store. Every store
// implementation runs it from its own tests and passes it unchanged, so
// the meter and the admin API can rely on one contract whatever the
// storage.
package usagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/taskgate/taskgate/backend/usage"
)

// The accounts, days and task types the suite works with. accountC is a
// prefix of accountA, and accountA of accountB, so that a store which
// concatenates key parts without a separator would mix them up. typeNone
// is the row of requests that name no task type.
const (
	accountA = "acme"
	accountB = "acme.eu"
	accountC = "acm"
	typePAN  = "verify_with_source/ind_pan"
	typeGST  = "verify_with_source/ind_gst"
	typeNone = ""
	day1     = "2030-02-27"
	day2     = "2030-02-28"
	day3     = "2030-03-01"
	day4     = "2030-03-02"
	day5     = "2030-03-03"
)

// Store is what RunDurable tests: a usage store that can be closed and
// opened again.
type Store interface {
	usage.Store
	io.Closer
}

// Run tests the contract of usage.Store on stores made by open, a new
// empty one for every subtest. The subtests run in parallel; open should
// register the store's Close with t.Cleanup. When the store is an
// io.Closer, Run also checks that it refuses calls once closed.
func Run(t *testing.T, open func(t *testing.T) usage.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s usage.Store)
	}{
		{"AddGet", testAddGet},
		{"AddMerges", testAddMerges},
		{"AddCanceled", testAddCanceled},
		{"Empty", testEmpty},
		{"Range", testRange},
		{"Accounts", testAccounts},
		{"Purge", testPurge},
		{"Copies", testCopies},
		{"AddConcurrent", testAddConcurrent},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// RunDurable tests that a persistent store keeps its counts across Close
// and a new open of the same directory, merges and purges included. open
// is called more than once with the same dir; it should register each
// store's Close with t.Cleanup.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) Store) {
	dir := t.TempDir()
	s := open(t, dir)
	rows := []usage.Row{
		row(accountA, day1, typePAN, 1),
		row(accountA, day2, typeNone, 2),
		row(accountA, day3, typeGST, 3),
		row(accountB, day3, typePAN, 4),
	}
	mustAdd(t, s, rows...)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	wantUsage(t, s, accountA, day1, day5, rows[0], rows[1], rows[2])
	wantUsage(t, s, accountB, day1, day5, rows[3])
	more := row(accountA, day3, typeGST, 10)
	mustAdd(t, s, more)
	merged := sum(rows[2], more)
	wantPurge(t, s, day2, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	wantUsage(t, s, accountA, day1, day5, rows[1], merged)
	wantUsage(t, s, accountB, day1, day5, rows[3])
}

func testAddGet(t *testing.T, s usage.Store) {
	full := row(accountA, day1, typePAN, 1)
	bare := usage.Row{AccountID: accountA, Day: day1, TaskType: typeGST, Counts: usage.Counts{Requests: 1}}
	none := row(accountA, day1, typeNone, 3)
	none.Rejected = nil
	mustAdd(t, s, full, bare, none)
	wantUsage(t, s, accountA, day1, day1, none, bare, full)
	if err := s.AddUsage(t.Context(), nil); err != nil {
		t.Errorf("AddUsage of no rows: %v", err)
	}
	wantUsage(t, s, accountA, day1, day1, none, bare, full)
}

func testAddMerges(t *testing.T, s usage.Store) {
	first := row(accountA, day1, typePAN, 1)
	second := row(accountA, day1, typePAN, 10)
	second.Rejected = map[string]int64{"too_many_requests": 5, "task_type_not_allowed": 7}
	mustAdd(t, s, first)
	mustAdd(t, s, second)
	want := sum(first, second)
	if want.Rejected["too_many_requests"] != 1*2+5 || want.Rejected["task_type_not_allowed"] != 7 {
		t.Fatalf("the suite's sum is wrong: %v", want.Rejected)
	}
	wantUsage(t, s, accountA, day1, day1, want)

	// Rows of one call with the same key add up too, and an empty
	// task type is a key like any other.
	none := row(accountA, day1, typeNone, 100)
	mustAdd(t, s, none, none, first)
	want = sum(want, first)
	wantUsage(t, s, accountA, day1, day1, sum(none, none), want)
}

func testAddCanceled(t *testing.T, s usage.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.AddUsage(ctx, []usage.Row{row(accountA, day1, typePAN, 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddUsage with a canceled context: err = %v, want context.Canceled", err)
	}
	wantUsage(t, s, accountA, day1, day5)
}

func testEmpty(t *testing.T, s usage.Store) {
	wantUsage(t, s, accountA, day1, day5)
	mustAdd(t, s, row(accountA, day3, typePAN, 1))
	wantUsage(t, s, accountB, day1, day5)
	wantUsage(t, s, accountC, day1, day5)
	wantUsage(t, s, accountA, day1, day2)
	wantUsage(t, s, accountA, day4, day5)
	wantUsage(t, s, accountA, day5, day1)
	if n, err := s.PurgeUsage(t.Context(), day1); err != nil || n != 0 {
		t.Errorf("PurgeUsage(%s) with nothing before = %d, %v; want 0", day1, n, err)
	}
}

func testRange(t *testing.T, s usage.Store) {
	var rows []usage.Row
	// Added newest first, types in no order: Usage sorts.
	for i, day := range []string{day5, day4, day3, day2, day1} {
		for j, typ := range []string{typePAN, typeNone, typeGST} {
			rows = append(rows, row(accountA, day, typ, int64(10*i+j+1)))
		}
	}
	mustAdd(t, s, rows...)
	at := func(day, typ string) usage.Row {
		for _, r := range rows {
			if r.Day == day && r.TaskType == typ {
				return r
			}
		}
		panic("no row " + day + " " + typ)
	}
	byDay := func(days ...string) []usage.Row {
		var out []usage.Row
		for _, day := range days {
			out = append(out, at(day, typeNone), at(day, typeGST), at(day, typePAN))
		}
		return out
	}
	wantUsage(t, s, accountA, day1, day5, byDay(day1, day2, day3, day4, day5)...)
	wantUsage(t, s, accountA, day2, day4, byDay(day2, day3, day4)...)
	wantUsage(t, s, accountA, day3, day3, byDay(day3)...)
	wantUsage(t, s, accountA, "2030-01-01", day2, byDay(day1, day2)...)
	wantUsage(t, s, accountA, day4, "2031-01-01", byDay(day4, day5)...)
}

func testAccounts(t *testing.T, s usage.Store) {
	a := row(accountA, day2, typePAN, 1)
	b := row(accountB, day2, typePAN, 2)
	c := row(accountC, day2, typePAN, 3)
	cNone := row(accountC, day2, typeNone, 4)
	mustAdd(t, s, b, a, cNone, c)
	wantUsage(t, s, accountA, day1, day5, a)
	wantUsage(t, s, accountB, day1, day5, b)
	wantUsage(t, s, accountC, day1, day5, cNone, c)
	wantUsage(t, s, "ac", day1, day5)
	wantUsage(t, s, "acme.", day1, day5)
}

func testPurge(t *testing.T, s usage.Store) {
	var kept []usage.Row
	n := int64(0)
	for _, account := range []string{accountB, accountA, accountC} {
		for _, day := range []string{day1, day2, day3, day4} {
			for _, typ := range []string{typeNone, typePAN} {
				n++
				r := row(account, day, typ, n)
				mustAdd(t, s, r)
				if day >= day3 {
					kept = append(kept, r)
				}
			}
		}
	}
	wantPurge(t, s, day3, 3*2*2)
	wantPurge(t, s, day3, 0)
	for _, account := range []string{accountA, accountB, accountC} {
		var want []usage.Row
		for _, r := range kept {
			if r.AccountID == account {
				want = append(want, r)
			}
		}
		wantUsage(t, s, account, day1, day5, want...)
	}

	// A purged row starts again from nothing.
	again := row(accountA, day1, typePAN, 1000)
	mustAdd(t, s, again)
	wantUsage(t, s, accountA, day1, day2, again)
	wantPurge(t, s, "9999-12-31", 3*2*2+1)
	for _, account := range []string{accountA, accountB, accountC} {
		wantUsage(t, s, account, day1, day5)
	}
}

// testCopies checks that the store shares no memory with its callers.
func testCopies(t *testing.T, s usage.Store) {
	ctx := t.Context()
	r := row(accountA, day1, typePAN, 1)
	want := sum(r)
	rows := []usage.Row{r}
	mustAdd(t, s, rows...)
	r.Rejected["too_many_requests"] = 1000
	rows[0].Rejected["ip_not_allowed"] = 1000
	rows[0].Requests = 1000
	wantUsage(t, s, accountA, day1, day1, want)

	got, err := s.Usage(ctx, accountA, day1, day1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Usage = %d rows, %v; want 1", len(got), err)
	}
	got[0].Rejected["too_many_requests"] = 1000
	got[0].Requests = 1000
	wantUsage(t, s, accountA, day1, day1, want)
}

// testAddConcurrent checks that concurrent additions to the same rows
// lose none.
func testAddConcurrent(t *testing.T, s usage.Store) {
	ctx := t.Context()
	const adders, perAdder = 16, 5
	one := row(accountA, day1, typePAN, 1)
	other := row(accountA, day1, typeNone, 2)
	var wg sync.WaitGroup
	for range adders {
		wg.Go(func() {
			for range perAdder {
				if err := s.AddUsage(ctx, []usage.Row{one, other}); err != nil {
					t.Errorf("AddUsage: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	var wantOne, wantOther usage.Row
	for range adders * perAdder {
		wantOne, wantOther = sum(wantOne, one), sum(wantOther, other)
	}
	wantUsage(t, s, accountA, day1, day1, wantOther, wantOne)
}

// testClose checks that a store which can be closed refuses every call
// once closed.
func testClose(t *testing.T, s usage.Store) {
	closer, ok := s.(io.Closer)
	if !ok {
		t.Skip("the store has no Close")
	}
	ctx := t.Context()
	mustAdd(t, s, row(accountA, day1, typePAN, 1))
	if err := closer.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.AddUsage(ctx, []usage.Row{row(accountA, day1, typePAN, 1)}); err == nil {
		t.Errorf("AddUsage after Close succeeded, want an error")
	}
	if _, err := s.Usage(ctx, accountA, day1, day5); err == nil {
		t.Errorf("Usage after Close succeeded, want an error")
	}
	if _, err := s.PurgeUsage(ctx, day5); err == nil {
		t.Errorf("PurgeUsage after Close succeeded, want an error")
	}
}

// row returns a row with every count set from n: no two rows made with
// different n have a count in common.
func row(accountID, day, taskType string, n int64) usage.Row {
	return usage.Row{
		AccountID: accountID,
		Day:       day,
		TaskType:  taskType,
		Counts: usage.Counts{
			Requests:  n,
			Rejected:  map[string]int64{"too_many_requests": 2 * n, "ip_not_allowed": 3 * n},
			Created:   4 * n,
			Completed: 5 * n,
			Failed:    6 * n,
		},
	}
}

// sum returns the first row's key with the counts of all of them added;
// the zero row counts as the key of the next.
func sum(rows ...usage.Row) usage.Row {
	var out usage.Row
	for _, r := range rows {
		if out.AccountID == "" {
			out.AccountID, out.Day, out.TaskType = r.AccountID, r.Day, r.TaskType
		}
		out.Add(r.Counts)
	}
	return out
}

func mustAdd(t *testing.T, s usage.Store, rows ...usage.Row) {
	t.Helper()
	if err := s.AddUsage(t.Context(), rows); err != nil {
		t.Fatalf("AddUsage of %d rows: %v", len(rows), err)
	}
}

func wantPurge(t *testing.T, s usage.Store, before string, want int) {
	t.Helper()
	if n, err := s.PurgeUsage(t.Context(), before); err != nil || n != want {
		t.Errorf("PurgeUsage(%s) = %d, %v; want %d", before, n, err, want)
	}
}

// wantUsage checks that Usage returns the wanted rows, in that order, as
// a non-nil slice. Counts compare with a missing Rejected map like an
// empty one.
func wantUsage(t *testing.T, s usage.Store, accountID, from, to string, want ...usage.Row) {
	t.Helper()
	got, err := s.Usage(t.Context(), accountID, from, to)
	if err != nil {
		t.Fatalf("Usage(%q, %s, %s): %v", accountID, from, to, err)
	}
	if got == nil {
		t.Errorf("Usage(%q, %s, %s) returned a nil slice, want an empty one", accountID, from, to)
	}
	if !sameRows(got, want) {
		t.Errorf("Usage(%q, %s, %s):\n\tgot  %s\n\twant %s", accountID, from, to, show(got), show(want))
	}
}

func sameRows(got, want []usage.Row) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if len(g.Rejected) == 0 && len(w.Rejected) == 0 {
			g.Rejected, w.Rejected = nil, nil
		}
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}

func show(rows []usage.Row) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = fmt.Sprintf("{%s %s %q req=%d rej=%v created=%d completed=%d failed=%d}",
			r.AccountID, r.Day, r.TaskType, r.Requests, rejected(r.Rejected), r.Created, r.Completed, r.Failed)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// rejected prints a Rejected map with its reasons in order.
func rejected(m map[string]int64) string {
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", reason, m[reason]))
	}
	return strings.Join(parts, ",")
}
