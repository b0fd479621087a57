package quotatest

import (
	"testing"

	"github.com/taskgate/taskgate/backend/quota"
)

// SpendParallel measures Spends of a daily and a monthly quota (two
// counters, one atomic step) from goroutines per GOMAXPROCS, as the
// creates of one account do.
func SpendParallel(b *testing.B, s quota.Store, goroutines int) {
	bk, _ := book(s)
	qs := []quota.Quota{{Limit: 1 << 40, Period: quota.Day}, {Limit: 1 << 40, Period: quota.Month}}
	b.SetParallelism(goroutines)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bk.Spend(b.Context(), accountA, qs, typePAN); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
