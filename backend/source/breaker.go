package source

import (
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// BreakerSettings tune a circuit breaker. Zero fields take their defaults.
type BreakerSettings struct {
	// FailureThreshold is how many failures in a row open the circuit.
	// Default 5.
	FailureThreshold int
	// OpenFor is how long an opened circuit refuses calls before it lets a
	// probe through. Each failed probe doubles it, up to MaxOpenFor; a
	// successful probe resets it. Default 5s.
	OpenFor time.Duration
	// MaxOpenFor caps OpenFor's doubling. Default 60s.
	MaxOpenFor time.Duration
}

// The defaults of BreakerSettings.
const (
	DefaultFailureThreshold = 5
	DefaultOpenFor          = 5 * time.Second
	DefaultMaxOpenFor       = 60 * time.Second
)

// withDefaults fills the zero (or nonsensical) fields of s.
func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.FailureThreshold <= 0 {
		s.FailureThreshold = DefaultFailureThreshold
	}
	if s.OpenFor <= 0 {
		s.OpenFor = DefaultOpenFor
	}
	if s.MaxOpenFor <= 0 {
		s.MaxOpenFor = DefaultMaxOpenFor
	}
	s.MaxOpenFor = max(s.MaxOpenFor, s.OpenFor)
	return s
}

// CircuitState is where a breaker is.
type CircuitState int

// The states of a breaker.
const (
	// CircuitClosed lets every call through and counts failures in a row.
	CircuitClosed CircuitState = iota
	// CircuitOpen refuses every call until its time is up.
	CircuitOpen
	// CircuitHalfOpen lets one call at a time through as a probe and refuses
	// the others; the probe's outcome closes or reopens the circuit.
	CircuitHalfOpen
)

// String is the state's name as metrics show it: "closed", "open" or
// "half_open".
func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitOpen:
		return "open"
	case CircuitHalfOpen:
		return "half_open"
	}
	return "unknown"
}

// Breaker is a circuit breaker: it stops calls to something that keeps
// failing and lets a single probe find out when it works again. It knows
// nothing of what it guards. Every call it allows must be reported exactly
// once, with Success, Failure or Abandon, passing back the Ticket that
// Allow returned. A Breaker is safe for concurrent use.
type Breaker struct {
	settings BreakerSettings
	clock    clock.Clock

	mu        sync.Mutex
	state     CircuitState
	failures  int           // in a row, while closed
	openFor   time.Duration // the next (or current) open period
	openUntil time.Time     // while open
	probing   bool          // while half-open: a probe is out
	// period counts the circuit's openings and closings: a call allowed
	// in an earlier period than the circuit's now reports too late to
	// count.
	period uint64
}

// Ticket is what Allow gives a call it lets through, for the call to
// report its outcome with.
type Ticket struct {
	probe  bool
	period uint64
}

// Probe tells whether the call is the probe of a half-open circuit.
func (t Ticket) Probe() bool { return t.probe }

// NewBreaker returns a closed breaker with the settings, reading time from
// clock (time.Now if nil).
func NewBreaker(settings BreakerSettings, clock clock.Clock) *Breaker {
	if clock == nil {
		clock = time.Now
	}
	settings = settings.withDefaults()
	return &Breaker{settings: settings, clock: clock, openFor: settings.OpenFor}
}

// Allow tells whether a call may go ahead (ok), with the ticket it
// reports its outcome with: whether it is the probe of a half-open
// circuit, and in which period of the circuit it went.
func (b *Breaker) Allow() (Ticket, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case CircuitClosed:
		return Ticket{period: b.period}, true
	case CircuitOpen:
		if b.clock().Before(b.openUntil) {
			return Ticket{}, false
		}
		b.state = CircuitHalfOpen
	}
	if b.probing {
		return Ticket{}, false
	}
	b.probing = true
	return Ticket{probe: true, period: b.period}, true
}

// Refuses tells whether Allow would refuse a call now, changing nothing:
// the circuit open and not yet due for a probe, or half-open with its
// probe out.
func (b *Breaker) Refuses() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case CircuitOpen:
		return b.clock().Before(b.openUntil)
	case CircuitHalfOpen:
		return b.probing
	}
	return false
}

// Success reports that an allowed call found the guarded thing working.
// t is what Allow returned for the call.
func (b *Breaker) Success(t Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case t.probe:
		b.state = CircuitClosed
		b.probing = false
		b.failures = 0
		b.openFor = b.settings.OpenFor
		b.period++
	case b.state == CircuitClosed && t.period == b.period:
		b.failures = 0
	}
	// A non-probe call allowed in an earlier period (before the circuit
	// opened, and so before it closed again) reports too late to count:
	// only the probe, and the calls after it, decide what happens next.
}

// Failure reports that an allowed call found the guarded thing failing.
// t is what Allow returned for the call.
func (b *Breaker) Failure(t Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case t.probe:
		b.probing = false
		b.openFor = min(2*b.openFor, b.settings.MaxOpenFor)
		b.open()
	case b.state == CircuitClosed && t.period == b.period:
		b.failures++
		if b.failures >= b.settings.FailureThreshold {
			b.open()
		}
	}
	// As in Success, late outcomes of calls of an earlier period do not
	// count.
}

// Abandon reports that an allowed call ended without telling whether the
// guarded thing works (the caller gave up). An abandoned probe hands its
// turn to the next caller. t is what Allow returned for the call.
func (b *Breaker) Abandon(t Ticket) {
	if !t.probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// State returns the breaker's state. An open circuit whose time is up is
// half-open: the next call will be its probe.
func (b *Breaker) State() CircuitState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == CircuitOpen && !b.clock().Before(b.openUntil) {
		return CircuitHalfOpen
	}
	return b.state
}

// Failing tells whether the last calls failed: a closed circuit counting
// failures in a row, or one not closed.
func (b *Breaker) Failing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != CircuitClosed || b.failures > 0
}

// open opens the circuit for the current open period. b.mu is held.
func (b *Breaker) open() {
	b.state = CircuitOpen
	b.failures = 0
	b.openUntil = b.clock().Add(b.openFor)
	b.period++
}
