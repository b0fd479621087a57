package authfail

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/clocktest"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

func newClock() *clocktest.Clock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

func mustLimit(t testing.TB, rate string, burst int64) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.ParseLimit(rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                 "192.0.2.7",
		"::ffff:192.0.2.7":          "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1":      "2001:db8:1:2::",
		"fe80::1%eth0":              "fe80::",
		"::1":                       "::",
		"2001:db8:1:3::1":           "2001:db8:1:3::",
		"::ffff:10.0.0.1%something": "10.0.0.1",
	} {
		if got := Address(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Address(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Address(netip.Addr{}); got.IsValid() {
		t.Errorf("Address(zero) = %s, want the zero Addr", got)
	}
}

func TestFailuresSpendTheAllowance(t *testing.T) {
	clock := newClock()
	th := New(Config{Clock: clock.Now})
	l := mustLimit(t, "5/m", 5)
	a, b := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")
	for i := range 5 {
		if !th.Check(a, l).Allowed {
			t.Fatalf("check before failure %d refused", i+1)
		}
		if !th.Fail(a, l).Allowed {
			t.Fatalf("failure %d refused", i+1)
		}
	}
	res := th.Check(a, l)
	if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 12*time.Second {
		t.Fatalf("after the burst: %+v, want refused with Retry-After up to 12s", res)
	}
	if th.Fail(a, l).Allowed {
		t.Fatal("a failure past the burst was spent")
	}
	// Another address has its own allowance.
	if !th.Check(b, l).Allowed {
		t.Fatal("another address is refused")
	}
	// One interval later, one failure is back.
	clock.Advance(12 * time.Second)
	if !th.Check(a, l).Allowed || !th.Fail(a, l).Allowed {
		t.Fatal("no failure back after one interval")
	}
	if th.Check(a, l).Allowed {
		t.Fatal("more than one failure back after one interval")
	}
}

func TestCheckDoesNotSpend(t *testing.T) {
	th := New(Config{Clock: newClock().Now})
	l := mustLimit(t, "1/h", 1)
	a := netip.MustParseAddr("192.0.2.7")
	for range 100 {
		if !th.Check(a, l).Allowed {
			t.Fatal("checks spent the allowance")
		}
	}
	if th.Len() != 0 {
		t.Fatalf("checks made %d entries", th.Len())
	}
}

func TestIPv6CountsPerSlash64(t *testing.T) {
	th := New(Config{Clock: newClock().Now})
	l := mustLimit(t, "2/m", 2)
	th.Fail(netip.MustParseAddr("2001:db8:0:1::1"), l)
	th.Fail(netip.MustParseAddr("2001:db8:0:1:ffff::2"), l)
	if th.Check(netip.MustParseAddr("2001:db8:0:1:1234::3"), l).Allowed {
		t.Fatal("a third address of the same /64 is allowed")
	}
	if !th.Check(netip.MustParseAddr("2001:db8:0:2::1"), l).Allowed {
		t.Fatal("the next /64 is refused")
	}
	if th.Len() != 1 {
		t.Fatalf("%d entries, want 1 for one /64", th.Len())
	}
}

func TestTableStaysBounded(t *testing.T) {
	clock := newClock()
	const bound = 256
	th := New(Config{Clock: clock.Now, MaxAddresses: bound})
	l := mustLimit(t, "1/h", 1)
	victim := netip.MustParseAddr("198.51.100.1")
	th.Fail(victim, l)
	// An attacker rotating through many addresses.
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		th.Fail(a, l)
		if th.Len() > bound {
			t.Fatalf("%d addresses tracked after %d, bound %d", th.Len(), i+1, bound)
		}
		clock.Advance(time.Millisecond)
	}
	n := 0
	for i := range th.shards {
		n += len(th.shards[i].tats)
	}
	if n != th.Len() || n > bound {
		t.Fatalf("the shards hold %d entries, the count says %d, bound %d", n, th.Len(), bound)
	}
}

func TestEvictionPrefersSpentEntries(t *testing.T) {
	clock := newClock()
	th := New(Config{Clock: clock.Now, MaxAddresses: shardCount}) // one entry per shard
	l := mustLimit(t, "1/m", 1)
	a := netip.MustParseAddr("192.0.2.1")
	th.Fail(a, l)
	// Find another address in a's shard: it replaces a. (The shards'
	// hash is seeded anew for each throttle: the search goes on past the
	// 254 neighbours of a, which all miss a's shard about once in 50.)
	_, s := th.key(a)
	var b netip.Addr
	for i := 2; ; i++ {
		b = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		if _, sb := th.key(b); sb == s {
			break
		}
	}
	th.Fail(b, l)
	if len(s.tats) != 1 || th.Len() != 1 {
		t.Fatalf("shard holds %d, count %d; want 1", len(s.tats), th.Len())
	}
	if !th.Check(a, l).Allowed || th.Check(b, l).Allowed {
		t.Fatal("want a forgotten, b tracked")
	}
}

func TestSweepForgetsOnlyWholeAllowances(t *testing.T) {
	clock := newClock()
	th := New(Config{Clock: clock.Now})
	slow, fast := mustLimit(t, "1/h", 1), mustLimit(t, "10/s", 1)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	th.Fail(a, slow)
	th.Fail(b, fast)
	clock.Advance(time.Second)
	if n := th.Sweep(); n != 1 || th.Len() != 1 {
		t.Fatalf("swept %d, %d left; want 1 and 1", n, th.Len())
	}
	if th.Check(a, slow).Allowed {
		t.Fatal("sweeping changed a decision")
	}
	clock.Advance(time.Hour)
	if n := th.Sweep(); n != 1 || th.Len() != 0 {
		t.Fatalf("swept %d, %d left; want 1 and 0", n, th.Len())
	}
}

func TestRaisedLimitHoldsAtOnce(t *testing.T) {
	th := New(Config{Clock: newClock().Now})
	a := netip.MustParseAddr("192.0.2.1")
	strict := mustLimit(t, "1/h", 3)
	for range 3 {
		th.Fail(a, strict)
	}
	if th.Check(a, strict).Allowed {
		t.Fatal("strict limit not reached")
	}
	// A reload to a looser limit: the address is not held for hours.
	if !th.Check(a, mustLimit(t, "20/m", 20)).Allowed {
		t.Fatal("the raised limit does not hold at once")
	}
}

func TestSweepEveryStops(t *testing.T) {
	th := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		th.SweepEvery(ctx, time.Millisecond)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SweepEvery did not return after its context ended")
	}
}

func TestConcurrentUse(t *testing.T) {
	th := New(Config{MaxAddresses: 128})
	l := mustLimit(t, "100/s", 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				th.Check(a, l)
				th.Fail(a, l)
				if i%500 == 0 {
					th.Sweep()
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for i := range th.shards {
		n += len(th.shards[i].tats)
	}
	if n != th.Len() || n > 128 {
		t.Fatalf("shards hold %d, count %d, bound 128", n, th.Len())
	}
}
