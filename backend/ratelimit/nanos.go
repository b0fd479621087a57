package ratelimit

import (
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// Nanos tells the time as an in-memory limiter keeps it: nanoseconds that
// follow the clock's monotonic reading, counted from the wall time of the
// moment it was made. A step of the wall clock (an NTP correction, a
// virtual machine's host setting its guest's time) then neither refills
// every bucket at once nor drains them; a clock without a monotonic
// reading (a test's) is followed as it is.
type Nanos struct {
	clock  clock.Clock
	origin time.Time
	base   int64
}

// NewNanos returns the Nanos of c (time.Now if nil).
func NewNanos(c clock.Clock) Nanos {
	if c == nil {
		c = time.Now
	}
	origin := c()
	return Nanos{clock: c, origin: origin, base: origin.UnixNano()}
}

// Now returns the time in nanoseconds.
func (n Nanos) Now() int64 { return n.base + int64(n.clock().Sub(n.origin)) }
