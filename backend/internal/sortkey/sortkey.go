// Package sortkey turns values into numbers whose order, as unsigned
// integers (or their big-endian bytes), is the values' order: the parts
// of keys that stores keep sorted.
package sortkey

import (
	"math"
	"time"
)

// The instants int64 nanoseconds since 1970 can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// Time returns t as a number whose order is the instants' order:
// nanoseconds since 1970 with the sign bit flipped. Instants outside the
// years 1678–2262 are clamped to the nearest end.
func Time(t time.Time) uint64 {
	n := int64(math.MaxInt64)
	switch {
	case t.Before(minTime):
		n = math.MinInt64
	case !t.After(maxTime):
		n = t.UnixNano()
	}
	return uint64(n) ^ (1 << 63)
}
