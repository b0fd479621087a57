// Package clock is the one kind of clock the engine's parts take: a
// function that tells the time. Behaviour that depends on time takes one,
// so that tests move time by hand (backend/internal/clocktest) instead of
// sleeping.
package clock

import "time"

// Clock tells the time. The nil Clock is the system's.
type Clock func() time.Time

// Now tells the time: c's, or the system's when c is nil.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}
