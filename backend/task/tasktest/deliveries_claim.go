package tasktest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// testDeliveriesSaturatedBacklog checks that a URL at its cap with a large
// backlog neither hides another URL's delivery due after it nor is asked
// about more than once per claim, and that its backlog stays due in order.
func testDeliveriesSaturatedBacklog(t *testing.T, s Store) {
	const backlog = 5000
	slow := storeBacklog(t, s, hookA, backlog, base)
	tk := claimed(t, s, accountB, base)
	later := newDelivery(tk, hookB, base, base.Add(time.Second))
	notDue := newDelivery(tk, hookC, base, base.Add(time.Hour))
	mustFinish(t, s, finished(tk, task.Completed, base), later, notDue)
	now := base.Add(time.Minute)
	lease := base.Add(2 * time.Hour)

	asked := make(map[string]int)
	atCap := func(url string) bool {
		asked[url]++
		return url == hookA
	}
	wantDeliveries(t, "claim past the backlog", claimDeliveries(t, s, now, 10, lease, atCap), later)
	if want := map[string]int{hookA: 1, hookB: 1}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}
	clear(asked)
	wantDeliveries(t, "claim with the backlog alone due", claimDeliveries(t, s, now, 10, lease, atCap))
	if want := map[string]int{hookA: 1}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}
	wantCount(t, s, webhook.Pending, backlog+2)

	// The dispatcher's skip: two attempts per URL at most, one in flight.
	inFlight := map[string]int{hookA: 1}
	perURL := func(url string) bool {
		asked[url]++
		if inFlight[url] >= 2 {
			return true
		}
		inFlight[url]++
		return false
	}
	clear(asked)
	wantDeliveries(t, "claim under the cap", claimDeliveries(t, s, now, 10, lease, perURL), slow[0])
	if want := map[string]int{hookA: 2}; !maps.Equal(asked, want) {
		t.Errorf("skip was asked %v times per URL, want %v", asked, want)
	}

	// What was passed over stays due, in its order.
	var rest []*webhook.Delivery
	for len(rest) < backlog {
		got := claimDeliveries(t, s, farFuture, 1500, lease, nil)
		if len(got) == 0 {
			break
		}
		rest = append(rest, got...)
	}
	wantDeliveries(t, "claim the backlog", rest, append(slices.Clone(slow[1:]), notDue)...)
}

// testDeliveriesSkipOncePerURL checks that skip is asked before each
// delivery taken and, in one call, at most once more per URL: a URL it
// turned down is passed over for the rest of the call, however many of its
// deliveries fall due among those taken.
func testDeliveriesSkipOncePerURL(t *testing.T, s Store) {
	tk := claimed(t, s, accountA, base)
	at := func(url string, ms int) *webhook.Delivery {
		return newDelivery(tk, url, base, base.Add(time.Duration(ms)*time.Millisecond))
	}
	a1, b15, a2, b25, a3, b35, a4, a5, c6 := at(hookA, 1000), at(hookB, 1500), at(hookA, 2000), at(hookB, 2500),
		at(hookA, 3000), at(hookB, 3500), at(hookA, 4000), at(hookA, 5000), at(hookC, 6000)
	mustFinish(t, s, finished(tk, task.Completed, base), a1, b15, a2, b25, a3, b35, a4, a5, c6)
	now := base.Add(10 * time.Second)
	lease := base.Add(time.Hour)

	// Two per URL, and one to A in flight already.
	inFlight := map[string]int{hookA: 1}
	var asked []string
	perURL := func(url string) bool {
		asked = append(asked, url)
		if inFlight[url] >= 2 {
			return true
		}
		inFlight[url]++
		return false
	}
	wantDeliveries(t, "claim two per URL", claimDeliveries(t, s, now, 10, lease, perURL), a1, b15, b25, c6)
	if want := []string{hookA, hookB, hookA, hookB, hookB, hookC}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	// n reached: the call stops asking.
	asked = nil
	clear(inFlight)
	wantDeliveries(t, "claim 2", claimDeliveries(t, s, now, 2, lease, perURL), a2, a3)
	if want := []string{hookA, hookA}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	asked = nil
	all := func(url string) bool {
		asked = append(asked, url)
		return true
	}
	wantDeliveries(t, "claim skipping all", claimDeliveries(t, s, now, 10, lease, all))
	if want := []string{hookB, hookA}; !slices.Equal(asked, want) {
		t.Errorf("skip was asked about %q, want %q", asked, want)
	}
	wantDeliveries(t, "claim the rest", claimDeliveries(t, s, now, 10, lease, nil), b35, a4, a5)
}

// testDeliveriesClaimOrderAcrossURLs checks that among the URLs not turned
// down the earliest due deliveries are taken first, whatever their URL,
// also after a retry moves a URL's delivery ahead of the others.
func testDeliveriesClaimOrderAcrossURLs(t *testing.T, s Store) {
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	at := func(url string, seconds int) *webhook.Delivery {
		return newDelivery(tk, url, base, base.Add(time.Duration(seconds)*time.Second))
	}
	a1, b2, c3, a4, b5, c6, a7, c8 := at(hookA, 1), at(hookB, 2), at(hookC, 3), at(hookA, 4), at(hookB, 5),
		at(hookC, 6), at(hookA, 7), at(hookC, 8)
	// Stored out of order, and across two tasks.
	mustFinish(t, s, finished(tk, task.Completed, base), c6, a4, b5, a1)
	tk2 := claimed(t, s, accountA, base)
	mustFinish(t, s, finished(tk2, task.Completed, base), c8, a7, c3, b2)
	now := base.Add(10 * time.Second)
	lease := base.Add(time.Hour)
	skipB := func(url string) bool { return url == hookB }
	wantDeliveries(t, "claim 4 skipping B", claimDeliveries(t, s, now, 4, lease, skipB), a1, c3, a4, c6)
	// c8 falls due before a7 and b2.
	if _, err := s.RetryDelivery(ctx, accountA, c8.ID, base.Add(time.Second+time.Millisecond)); err != nil {
		t.Fatalf("RetryDelivery: %v", err)
	}
	wantDeliveries(t, "claim 1", claimDeliveries(t, s, now, 1, lease, nil), c8)
	wantDeliveries(t, "claim the rest", claimDeliveries(t, s, now, 10, lease, nil), b2, b5, a7)
}

// testDeliveriesClaimModel runs random changes against the store and a
// model of the contract, and checks that every claim takes what the model
// takes, in its order, with skip asked what the model asks: the due
// deliveries earliest first, passing over the URLs skip turned down.
func testDeliveriesClaimModel(t *testing.T, s Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	urls := []string{hookA, hookB, hookC, hookFailure, hookA + "/2"}
	type state struct {
		d      *webhook.Delivery
		leased bool
		retry  bool // RetryDelivery while leased
	}
	var all []*state
	byID := make(map[string]*state)
	// Every NextAt is new, so that the order has no ties.
	used := make(map[time.Time]bool)
	newTime := func() time.Time {
		for {
			at := base.Add(time.Duration(rng.Int64N(int64(100 * time.Second))))
			if !used[at] {
				used[at] = true
				return at
			}
		}
	}
	modelClaim := func(now time.Time, n int, skip func(string) bool) []*webhook.Delivery {
		var due []*state
		for _, st := range all {
			if st.d.Status == webhook.Pending && !st.leased && !st.d.NextAt.After(now) {
				due = append(due, st)
			}
		}
		slices.SortFunc(due, func(a, b *state) int { return a.d.NextAt.Compare(b.d.NextAt) })
		out := []*webhook.Delivery{}
		turnedDown := make(map[string]bool)
		for _, st := range due {
			if len(out) == n {
				break
			}
			if turnedDown[st.d.URL] {
				continue
			}
			if skip(st.d.URL) {
				turnedDown[st.d.URL] = true
				continue
			}
			st.leased = true
			out = append(out, st.d)
		}
		return out
	}
	pick := func(ok func(*state) bool) *state {
		var from []*state
		for _, st := range all {
			if ok(st) {
				from = append(from, st)
			}
		}
		if len(from) == 0 {
			return nil
		}
		return from[rng.IntN(len(from))]
	}

	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 3:
			tk := claimed(t, s, accountA, base)
			var ds []*webhook.Delivery
			for range 1 + rng.IntN(6) {
				d := newDelivery(tk, urls[rng.IntN(len(urls))], base, newTime())
				ds = append(ds, d)
				st := &state{d: cloneDelivery(d)}
				all = append(all, st)
				byID[d.ID] = st
			}
			mustFinish(t, s, finished(tk, task.Completed, base), ds...)
		case op < 6:
			now := base.Add(time.Duration(rng.Int64N(int64(120 * time.Second))))
			n := 1 + rng.IntN(8)
			caps := make(map[string]int)
			for _, u := range urls {
				caps[u] = rng.IntN(4)
			}
			asker := func(asked *[]string) func(string) bool {
				counts := make(map[string]int)
				return func(url string) bool {
					*asked = append(*asked, url)
					if counts[url] >= caps[url] {
						return true
					}
					counts[url]++
					return false
				}
			}
			var asked, modelAsked []string
			got := claimDeliveries(t, s, now, n, base.Add(time.Hour), asker(&asked))
			want := modelClaim(now, n, asker(&modelAsked))
			wantDeliveries(t, fmt.Sprintf("step %d: claim", step), got, want...)
			if !slices.Equal(asked, modelAsked) {
				t.Errorf("step %d: skip was asked about %q, want %q", step, asked, modelAsked)
			}
		case op < 8:
			st := pick(func(st *state) bool { return st.leased })
			if st == nil {
				continue
			}
			status := []webhook.Status{webhook.Pending, webhook.Pending, webhook.Delivered, webhook.Failed}[rng.IntN(4)]
			next := newTime()
			mustRecord(t, s, attempted(st.d, status, next, webhook.Attempt{At: base, StatusCode: 500}))
			st.leased = false
			switch {
			case st.retry:
				st.retry = false
			case status == webhook.Pending:
				st.d.NextAt = next
			default:
				st.d.Status = status
			}
		case op < 9:
			st := pick(func(*state) bool { return true })
			if st == nil {
				continue
			}
			now := newTime()
			if _, err := s.RetryDelivery(ctx, accountA, st.d.ID, now); err != nil {
				t.Fatalf("step %d: RetryDelivery: %v", step, err)
			}
			st.d.Status, st.d.NextAt = webhook.Pending, now
			if st.leased {
				st.retry = true
			}
		default:
			want := 0
			for _, st := range all {
				if st.leased {
					st.leased, st.retry = false, false
					want++
				}
			}
			if n, err := s.RescueDeliveries(ctx, farFuture); err != nil || n != want {
				t.Fatalf("step %d: RescueDeliveries = %d, %v; want %d", step, n, err, want)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	want := modelClaim(farFuture, len(all), func(string) bool { return false })
	wantDeliveries(t, "claim everything", claimDeliveries(t, s, farFuture, len(all), farFuture, nil), want...)
}

// testDeliveriesRecordClaiming checks, on a store that can, that recording
// an attempt claims the earliest due delivery of the same URL in the same
// write: leased and counted as a claim, nothing of another URL nor not
// yet due, and nothing at all when the record is refused.
func testDeliveriesRecordClaiming(t *testing.T, s Store) {
	claimer, ok := s.(webhook.AttemptClaimer)
	if !ok {
		t.Skip("the store does not claim while it records")
	}
	ctx := t.Context()
	tk := claimed(t, s, accountA, base)
	first := newDelivery(tk, hookA, base, base)
	second := newDelivery(tk, hookA, base, base.Add(time.Second))
	later := newDelivery(tk, hookA, base, base.Add(time.Hour))
	other := newDelivery(tk, hookB, base, base.Add(2*time.Second))
	mustFinish(t, s, finished(tk, task.Completed, base), first, second, later, other)
	got := claimDeliveries(t, s, base, 1, base.Add(time.Minute), nil)
	wantDeliveries(t, "claim", got, first)
	now, lease := base.Add(5*time.Second), base.Add(time.Hour)

	// Refused (another claim's record): nothing stored, nothing claimed.
	stale := attempted(got[0], webhook.Pending, base.Add(time.Hour), webhook.Attempt{At: base, StatusCode: 503})
	stale.Claim = got[0].Claim + 1
	if next, err := claimer.RecordAttemptClaiming(ctx, stale, nil, webhook.NextOfURL{Now: now, LeaseUntil: lease}); !errors.Is(err, webhook.ErrNotFound) || next != nil {
		t.Fatalf("a refused record claimed %v, err %v; want ErrNotFound and nothing", next, err)
	}

	retry := attempted(got[0], webhook.Pending, base.Add(2*time.Hour), webhook.Attempt{At: base.Add(time.Second), StatusCode: 503})
	next, err := claimer.RecordAttemptClaiming(ctx, retry, nil, webhook.NextOfURL{Now: now, LeaseUntil: lease})
	if err != nil || next == nil || next.ID != second.ID || next.Claim != 1 {
		t.Fatalf("RecordAttemptClaiming = %+v, %v; want %s under its first claim", next, err, second.ID)
	}
	sameDelivery(t, mustGetDelivery(t, s, first), retry)
	// Leased: a claim now takes the other URL's only.
	wantDeliveries(t, "claim after", claimDeliveries(t, s, now, 10, lease, nil), other)

	// The delivery claimed is recorded under its claim; none of its URL
	// is due any more.
	done := attempted(next, webhook.Delivered, time.Time{}, webhook.Attempt{At: now, StatusCode: 204})
	if again, err := claimer.RecordAttemptClaiming(ctx, done, nil, webhook.NextOfURL{Now: now, LeaseUntil: lease}); err != nil || again != nil {
		t.Fatalf("RecordAttemptClaiming with nothing due = %+v, %v; want nothing", again, err)
	}
	sameDelivery(t, mustGetDelivery(t, s, second), done)
	wantCount(t, s, webhook.Delivered, 1)
	wantDeliveries(t, "claim at the end", claimDeliveries(t, s, base.Add(3*time.Hour), 10, farFuture, nil), later, first)
}
