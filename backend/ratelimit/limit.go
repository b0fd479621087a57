// Package ratelimit decides whether a request of an account may pass, with the
// generic cell rate algorithm (GCRA): each key holds one timestamp, the
// theoretical arrival time (TAT) of its next request, so there are no window
// boundaries to burst across and no per-event buffers.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limit is a rate (Count requests per Period) with a burst: up to Burst
// requests pass at once, then one every Period/Count.
type Limit struct {
	Count  int64
	Period time.Duration
	Burst  int64
}

// DefaultLimit is the limit of an account that sets none: 30 requests per
// second with a burst of 30.
var DefaultLimit = Limit{Count: 30, Period: time.Second, Burst: 30}

// ParseRate parses "N/s", "N/m", "N/h", "N/d" or "N/<duration>" (such as
// "10/500ms"). N is a positive integer.
func ParseRate(s string) (count int64, period time.Duration, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want N/s, N/m, N/h, N/d or N/<duration>", s)
	}
	count, err = strconv.ParseInt(num, 10, 64)
	if err != nil || count <= 0 {
		return 0, 0, fmt.Errorf("rate %q: count must be a positive integer", s)
	}
	switch unit {
	case "s":
		period = time.Second
	case "m":
		period = time.Minute
	case "h":
		period = time.Hour
	case "d":
		period = 24 * time.Hour
	default:
		period, err = time.ParseDuration(unit)
		if err != nil || period <= 0 {
			return 0, 0, fmt.Errorf("rate %q: unit must be s, m, h, d or a positive duration", s)
		}
	}
	if period/time.Duration(count) <= 0 {
		return 0, 0, fmt.Errorf("rate %q: more than one request per nanosecond", s)
	}
	return count, period, nil
}

// NewLimit returns the limit of count requests per period with the given
// burst; burst 0 means one second's worth of requests (at least one).
func NewLimit(count int64, period time.Duration, burst int64) (Limit, error) {
	if count <= 0 || period <= 0 || period/time.Duration(count) <= 0 {
		return Limit{}, errors.New("rate must be a positive count over a positive period, at most one per nanosecond")
	}
	if burst < 0 {
		return Limit{}, errors.New("burst must not be negative")
	}
	if burst == 0 {
		burst = int64(math.Ceil(float64(count) * float64(time.Second) / float64(period)))
		burst = max(burst, 1)
	}
	l := Limit{Count: count, Period: period, Burst: burst}
	if l.Interval() > MaxWindow/time.Duration(burst) {
		return Limit{}, errors.New("burst too large for this rate: an idle key would take over 100 years to regain it")
	}
	return l, nil
}

// MaxWindow bounds a limit's Window: Decide adds it to the time in
// nanoseconds since 1970, which must not pass the largest int64 (in
// 2262) before this century's end.
const MaxWindow = 100 * 365 * 24 * time.Hour

// ParseLimit parses a rate as ParseRate does and applies NewLimit.
func ParseLimit(rate string, burst int64) (Limit, error) {
	count, period, err := ParseRate(rate)
	if err != nil {
		return Limit{}, err
	}
	return NewLimit(count, period, burst)
}

// Interval is the emission interval: the time one request costs.
func (l Limit) Interval() time.Duration { return l.Period / time.Duration(l.Count) }

// Window is the time an idle key takes to regain its whole burst.
func (l Limit) Window() time.Duration { return l.Interval() * time.Duration(l.Burst) }

// String gives the limit in the Caddyfile's words, e.g. "30/s burst 30".
func (l Limit) String() string {
	return fmt.Sprintf("%s burst %d", l.Rate(), l.Burst)
}

// Rate gives the rate as ParseRate reads it, e.g. "30/s".
func (l Limit) Rate() string {
	unit := l.Period.String()
	switch l.Period {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	case 24 * time.Hour:
		unit = "d"
	}
	return fmt.Sprintf("%d/%s", l.Count, unit)
}

// Result is the outcome of one decision.
type Result struct {
	// Allowed tells whether the request may pass.
	Allowed bool
	// Remaining is how many more requests would pass right now.
	Remaining int64
	// RetryAfter is, when not allowed, how long until one request would pass.
	RetryAfter time.Duration
	// ResetAfter is how long until the key has regained its whole burst.
	ResetAfter time.Duration
}

// Decide applies GCRA to one request at time now (nanoseconds), given the
// key's stored theoretical arrival time tat (zero when the key is new). It
// returns the TAT to store and the result; when the request is refused the
// stored TAT does not change.
//
// Under one limit the TAT never runs more than a window ahead of now. A
// TAT further ahead was set under a stricter limit that has since been
// raised: the raised limit holds at once, from a spent burst (the next
// request passes, those after it at the new rate), not after the old
// limit's backlog.
func Decide(tat, now int64, l Limit) (int64, Result) {
	interval := int64(l.Interval())
	window := interval * l.Burst
	if tat < now {
		tat = now
	}
	if tat > now+window {
		tat = now + window - interval
	}
	next := tat + interval
	allowAt := next - window
	if now < allowAt {
		return tat, Result{
			RetryAfter: time.Duration(allowAt - now),
			ResetAfter: time.Duration(tat - now),
		}
	}
	return next, Result{
		Allowed:    true,
		Remaining:  (window - (next - now)) / interval,
		ResetAfter: time.Duration(next - now),
	}
}

// Store holds the TATs of keys and decides requests against them. Memory is
// the single-node store; a shared store (Redis) decides atomically on its
// own clock, for every node.
type Store interface {
	Take(ctx context.Context, key string, l Limit) (Result, error)
}
