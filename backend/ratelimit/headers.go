package ratelimit

import (
	"strconv"
	"time"
)

// PolicyHeader formats the RateLimit-Policy header of the IETF httpapi
// draft: `"default";q=<burst>;w=<seconds to regain the burst>`.
func (l Limit) PolicyHeader() string {
	b := make([]byte, 0, 48)
	b = append(b, `"default";q=`...)
	b = strconv.AppendInt(b, l.Burst, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, CeilSeconds(l.Window()), 10)
	return string(b)
}

// StateHeader formats the RateLimit header of the IETF httpapi draft after
// a decision: `"default";r=<remaining>;t=<seconds until the burst is back>`.
func (r Result) StateHeader() string {
	b := make([]byte, 0, 48)
	b = append(b, `"default";r=`...)
	b = strconv.AppendInt(b, r.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, CeilSeconds(r.ResetAfter), 10)
	return string(b)
}

// CeilSeconds rounds d up to whole seconds, at least 1 when d is positive:
// the unit of the headers and of Retry-After.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
