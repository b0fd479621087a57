package quota

import (
	"strconv"
	"time"
)

// PolicyName names the quota at index i of an account's quotas in the
// RateLimit-Policy and RateLimit headers: "daily" or "monthly", followed
// by "-2", "-3"… for the second and later quotas of the same period.
func PolicyName(qs []Quota, i int) string {
	name := "daily"
	if qs[i].Period == Month {
		name = "monthly"
	}
	n := 1
	for _, q := range qs[:i] {
		if q.Period == qs[i].Period {
			n++
		}
	}
	if n > 1 {
		name += "-" + strconv.Itoa(n)
	}
	return name
}

// PolicyHeader formats a quota as an item of the RateLimit-Policy header
// of the IETF httpapi draft: `"<name>";q=<limit>;w=<seconds of the period
// that holds now>`.
func (q Quota) PolicyHeader(name string, now time.Time) string {
	w := q.Period.End(now).Sub(q.Period.Start(now))
	return `"` + name + `";q=` + strconv.FormatInt(q.Limit, 10) + ";w=" + strconv.FormatInt(int64(w/time.Second), 10)
}

// StateHeader formats a quota's state as an item of the RateLimit header
// of the draft: `"<name>";r=<units left>;t=<seconds to the period's end>`.
func StateHeader(name string, left int64, resetAfter time.Duration) string {
	t := int64((resetAfter + time.Second - 1) / time.Second)
	return `"` + name + `";r=` + strconv.FormatInt(left, 10) + ";t=" + strconv.FormatInt(t, 10)
}
