package webhook

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"time"
)

// Policy says how long an attempt may take and when a delivery that did not
// get through is tried again.
type Policy struct {
	// First is the delay before the first retry; each later retry waits
	// twice as long as the one before.
	First time.Duration
	// Max caps the delay between two attempts.
	Max time.Duration
	// GiveUp is how long after its creation a delivery is still retried;
	// an attempt whose retry would come later is the last.
	GiveUp time.Duration
	// Timeout bounds one attempt, from dialing to reading the answer.
	Timeout time.Duration
}

// The defaults of DefaultPolicy.
const (
	DefaultFirst   = 2 * time.Second
	DefaultMax     = time.Hour
	DefaultGiveUp  = 24 * time.Hour
	DefaultTimeout = 15 * time.Second
)

// Jitter is the spread of a retry delay: each is drawn uniformly from
// ±Jitter around its exponential value (never above Policy.Max).
const Jitter = 0.2

// DefaultPolicy returns the policy of the spec: first retry after 2 s,
// doubling, capped at 1 h, giving up after 24 h, 15 s per attempt.
func DefaultPolicy() Policy {
	return Policy{First: DefaultFirst, Max: DefaultMax, GiveUp: DefaultGiveUp, Timeout: DefaultTimeout}
}

// WithDefaults returns p with its zero fields set to DefaultPolicy's.
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy()
	if p.First == 0 {
		p.First = d.First
	}
	if p.Max == 0 {
		p.Max = max(d.Max, p.First)
	}
	if p.GiveUp == 0 {
		p.GiveUp = d.GiveUp
	}
	if p.Timeout == 0 {
		p.Timeout = d.Timeout
	}
	return p
}

// Validate reports a policy that cannot work: a duration that is not
// positive, or a cap below the first delay.
func (p Policy) Validate() error {
	switch {
	case p.First <= 0 || p.Max <= 0 || p.GiveUp <= 0 || p.Timeout <= 0:
		return errors.New("webhook retry durations and timeout must be positive")
	case p.Max < p.First:
		return errors.New("webhook maximum retry delay is below the first delay")
	}
	return nil
}

// Delay returns how long to wait before retry number retry (1 for the first
// retry, after the first attempt): First·2^(retry-1), capped at Max, then
// spread by ±Jitter with rnd (a uniform draw in [0, 1); nil: math/rand/v2),
// never below First/2 nor above Max.
func (p Policy) Delay(retry int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	base := p.First
	for i := 1; i < retry && base < p.Max; i++ {
		if base > p.Max/2 {
			base = p.Max
			break
		}
		base *= 2
	}
	base = min(base, p.Max)
	// Uniform over [base-Jitter, base+Jitter] cut at Max: at the cap the
	// spread is all downward rather than a pile of delays exactly at Max,
	// which would bring retries of a failing receiver back in step.
	lo := float64(base) * (1 - Jitter)
	hi := min(float64(base)*(1+Jitter), float64(p.Max))
	d := time.Duration(lo + rnd()*(hi-lo))
	return min(max(d, p.First/2), p.Max)
}

// Classify says what an answer means for a delivery: a 2xx is delivered; a
// transport error (no answer, a timeout), a 5xx, 408 Request Timeout and 429
// Too Many Requests are worth retrying, the last two because the receiver
// asks to be tried later; every other status, redirects included (they are
// not followed), is a final failure.
func Classify(statusCode int, err error) (delivered, retryable bool) {
	switch {
	case err != nil || statusCode == 0:
		return false, true
	case statusCode >= 200 && statusCode < 300:
		return true, false
	case statusCode >= 500, statusCode == http.StatusRequestTimeout, statusCode == http.StatusTooManyRequests:
		return false, true
	}
	return false, false
}

// Next returns the state of d after its latest attempt, made at now:
// Delivered; Pending with the time of the next attempt, now plus the Delay
// of retry len(d.Attempts); or Failed when the attempt is not worth
// retrying or the retry would come after d.CreatedAt+GiveUp. rnd is the
// jitter's source, as in Delay. A delivery without attempts is due now.
func (p Policy) Next(d *Delivery, now time.Time, rnd func() float64) (status Status, nextAt time.Time) {
	if len(d.Attempts) == 0 {
		return Pending, now
	}
	last := d.Attempts[len(d.Attempts)-1]
	// An attempt carries a status code whenever the receiver answered; its
	// Error then only describes the status.
	delivered, retryable := Classify(last.StatusCode, nil)
	switch {
	case last.Error == ErrorDestinationNotAllowed:
		// The same address would be refused again.
		return Failed, time.Time{}
	case delivered:
		return Delivered, time.Time{}
	case !retryable:
		return Failed, time.Time{}
	}
	delay := p.Delay(len(d.Attempts), rnd)
	// A receiver that asked for a pause (Retry-After) gets it, up to the
	// policy's longest delay.
	if asked := time.Duration(last.RetryAfterMS) * time.Millisecond; asked > delay {
		delay = min(asked, p.Max)
	}
	nextAt = now.Add(delay)
	if nextAt.After(d.CreatedAt.Add(p.GiveUp)) {
		return Failed, time.Time{}
	}
	return Pending, nextAt
}
