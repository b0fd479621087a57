package usage

import (
	"strconv"
	"testing"
)

// BenchmarkMeterRequest measures counting one request, from parallel
// goroutines over 1,000 accounts: the cost usage adds to the hot path.
func BenchmarkMeterRequest(b *testing.B) {
	m := NewMeter(MeterConfig{Store: &fakeStore{}})
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "acct-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Request(ids[i%len(ids)], "verify_with_source/ind_pan", "")
			i++
		}
	})
}
