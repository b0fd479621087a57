package ratelimit

import (
	"strings"
	"testing"
)

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"30/s", "100/m", "1/d", "10/500ms", "0/s", "1/0s", "9223372036854775807/s", "5/1h30m", "/", "1/-1s"} {
		f.Add(s, int64(0))
		f.Add(s, int64(7))
	}
	f.Add("1/d", int64(90000)) // a window of 246 years
	f.Add("1/d", int64(36000)) // 98.6 years
	f.Fuzz(func(t *testing.T, rate string, burst int64) {
		l, err := ParseLimit(rate, burst)
		if err != nil {
			return
		}
		if l.Interval() <= 0 || l.Burst < 1 || l.Window() < l.Interval() || l.Window() > MaxWindow {
			t.Fatalf("ParseLimit(%q, %d) = %+v: interval %v, window %v", rate, burst, l, l.Interval(), l.Window())
		}
		// The canonical form parses back to the same limit.
		r, b, _ := strings.Cut(l.String(), " burst ")
		again, err := ParseLimit(r, mustAtoi(t, b))
		if err != nil || again != l {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", l.String(), again, err, l)
		}
		// A decision never admits more than the burst at one instant, now
		// as then.
		for _, now := range []int64{1_000_000, fuzzNow} {
			admitOnce(t, l, now)
		}
		// A key whose burst is spent is refused.
		if _, res := Decide(fuzzNow+int64(l.Window()), fuzzNow, l); res.Allowed {
			t.Fatalf("%+v admitted a request with its burst spent", l)
		}
	})
}

// fuzzNow is a time of this century, in nanoseconds since 1970.
const fuzzNow = int64(1_796_000_000) * 1e9

// admitOnce checks that decisions at one instant admit at most the burst.
func admitOnce(t *testing.T, l Limit, now int64) {
	t.Helper()
	var tat int64
	admitted := int64(0)
	for range min(l.Burst+2, 64) {
		next, res := Decide(tat, now, l)
		if res.Allowed {
			admitted++
			tat = next
		}
	}
	if admitted > l.Burst {
		t.Fatalf("%+v admitted %d at one instant %d", l, admitted, now)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
