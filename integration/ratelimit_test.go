package integration

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// The rates of these tests are per minute or slower, so nothing is regained
// while a test runs and every count is exact.
const rateLimitAccounts = `
taskgate {
	rate_limit 10/m burst 2
	account slow {
		key key-slow
		rate_limit 10/m burst 3
	}
	account other {
		key key-other
		rate_limit 10/m burst 3
	}
	account dflt {
		key key-dflt
	}
	account single {
		key key-single
		rate_limit 10/m
	}
	account hourly {
		key key-hourly
		rate_limit 100/h burst 2
	}
}`

var rateLimitHeader = regexp.MustCompile(`^"default";r=(\d+);t=(\d+)$`)

// rateLimitState parses the RateLimit header of r.
func rateLimitState(t *testing.T, r response) (remaining, reset int64) {
	t.Helper()
	v := r.header.Values("RateLimit")
	if len(v) != 1 {
		t.Fatalf("RateLimit headers %q, want one", v)
	}
	m := rateLimitHeader.FindStringSubmatch(v[0])
	if m == nil {
		t.Fatalf("RateLimit %q, want \"default\";r=<n>;t=<s>", v[0])
	}
	remaining, _ = strconv.ParseInt(m[1], 10, 64)
	reset, _ = strconv.ParseInt(m[2], 10, 64)
	return remaining, reset
}

// TestAccountRateLimit checks GCRA's counts and the RateLimit-Policy,
// RateLimit and Retry-After headers, per account and with the default rate.
func TestAccountRateLimit(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s := startServer(t, config{
		Global: rateLimitAccounts,
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	account_rate_limit
	respond "ok {http.auth.user.id}" 200
}`, port),
	})

	tests := []struct {
		account string
		burst   int64
		// interval is the seconds one request costs; window = burst *
		// interval is the w of RateLimit-Policy.
		interval int64
	}{
		{account: "slow", burst: 3, interval: 6},
		{account: "dflt", burst: 2, interval: 6},   // the global rate_limit
		{account: "single", burst: 1, interval: 6}, // burst: one second's worth, at least 1
		{account: "hourly", burst: 2, interval: 36},
	}
	for _, tc := range tests {
		t.Run(tc.account, func(t *testing.T) {
			policy := fmt.Sprintf(`"default";q=%d;w=%d`, tc.burst, tc.burst*tc.interval)
			window := tc.burst * tc.interval
			h := creds(tc.account, "key-"+tc.account)
			// The seconds in the headers count from the server's clock at
			// each request; the client's clock bounds how far that moved
			// since the first one.
			start := time.Now()
			between := func(got, want int64) bool {
				low := int64(math.Ceil(float64(want) - time.Since(start).Seconds()))
				return got >= low && got <= want
			}
			for i := int64(1); i <= tc.burst; i++ {
				r := s.get(t, siteURL(port, "/"), h)
				wantOK(t, r, "ok "+tc.account)
				if got := r.header.Get("RateLimit-Policy"); got != policy {
					t.Errorf("request %d: RateLimit-Policy %q, want %q", i, got, policy)
				}
				remaining, reset := rateLimitState(t, r)
				if remaining != tc.burst-i {
					t.Errorf("request %d: remaining %d, want %d", i, remaining, tc.burst-i)
				}
				// The whole burst is back i intervals after the first
				// request.
				if !between(reset, i*tc.interval) {
					t.Errorf("request %d: reset %d s, want %d", i, reset, i*tc.interval)
				}
			}
			for i := 0; i < 2; i++ {
				r := s.get(t, siteURL(port, "/"), h)
				wantError(t, r, http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
				if got := r.header.Get("RateLimit-Policy"); got != policy {
					t.Errorf("429: RateLimit-Policy %q, want %q", got, policy)
				}
				remaining, reset := rateLimitState(t, r)
				if remaining != 0 || !between(reset, window) {
					t.Errorf("429: RateLimit r=%d;t=%d, want r=0;t=%d", remaining, reset, window)
				}
				// One request is allowed again one interval after the
				// first.
				retry, err := strconv.ParseInt(r.header.Get("Retry-After"), 10, 64)
				if err != nil || retry < 1 || !between(retry, tc.interval) {
					t.Errorf("429: Retry-After %q, want %d", r.header.Get("Retry-After"), tc.interval)
				}
			}
		})
	}

	t.Run("accounts are limited independently", func(t *testing.T) {
		// Use up slow's burst (already used when the subtests above ran).
		limited := false
		for i := 0; i < 4 && !limited; i++ {
			limited = s.get(t, siteURL(port, "/"), creds("slow", "key-slow")).status == http.StatusTooManyRequests
		}
		if !limited {
			t.Fatal("slow is not limited after 4 requests")
		}
		r := s.get(t, siteURL(port, "/"), creds("other", "key-other"))
		wantOK(t, r, "ok other")
		if remaining, _ := rateLimitState(t, r); remaining != 2 {
			t.Errorf("other: remaining %d, want 2", remaining)
		}

		// Failed authentications are not charged to the account.
		for i := 0; i < 5; i++ {
			wantError(t, s.get(t, siteURL(port, "/"), creds("other", "key-wrong")), http.StatusForbidden, "INVALID_CREDENTIALS")
		}
		r = s.get(t, siteURL(port, "/"), creds("other", "key-other"))
		wantOK(t, r, "ok other")
		if remaining, _ := rateLimitState(t, r); remaining != 1 {
			t.Errorf("other: remaining %d, want 1", remaining)
		}
	})
}
