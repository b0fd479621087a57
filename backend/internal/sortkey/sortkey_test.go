package sortkey

import (
	"math"
	"testing"
	"time"
)

func TestTimeKeepsOrder(t *testing.T) {
	times := []time.Time{
		time.Unix(0, math.MinInt64).Add(-time.Hour),
		time.Unix(0, math.MinInt64),
		time.Unix(-1, 0),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		time.Unix(0, math.MaxInt64),
		time.Unix(0, math.MaxInt64).Add(time.Hour),
	}
	for i := 1; i < len(times); i++ {
		if Time(times[i-1]) > Time(times[i]) {
			t.Errorf("Time(%v) > Time(%v)", times[i-1], times[i])
		}
	}
	if Time(times[0]) != Time(times[1]) || Time(times[6]) != Time(times[7]) {
		t.Error("instants beyond int64 nanoseconds are not clamped")
	}
}
