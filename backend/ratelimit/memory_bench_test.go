package ratelimit_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/ratelimit"
)

// benchKeys is how many accounts the many-keys benchmarks spread over:
// enough that the shards' maps outgrow the CPU caches.
const benchKeys = 100_000

// openLimit admits every request of a benchmark (one per nanosecond, with a
// second's burst), so each Take stores a new TAT.
func openLimit(b *testing.B) ratelimit.Limit {
	b.Helper()
	l, err := ratelimit.NewLimit(1_000_000_000, time.Second, 0)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func manyKeys() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "account-" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkMemoryTake measures one decision on the real clock, from one
// goroutine.
func BenchmarkMemoryTake(b *testing.B) {
	ctx := context.Background()

	b.Run("one_key", func(b *testing.B) {
		m, l := ratelimit.NewMemory(nil), openLimit(b)
		refused := 0
		b.ReportAllocs()
		for b.Loop() {
			if res, _ := m.Take(ctx, "account-1", l); !res.Allowed {
				refused++
			}
		}
		if refused > 0 {
			b.Fatalf("%d requests refused under an open limit", refused)
		}
	})

	// A client hammering past its limit: every decision is a refusal,
	// which stores nothing.
	b.Run("one_key_refused", func(b *testing.B) {
		m := ratelimit.NewMemory(nil)
		l, err := ratelimit.NewLimit(1, time.Hour, 1)
		if err != nil {
			b.Fatal(err)
		}
		m.Take(ctx, "account-1", l) // spends the burst
		b.ReportAllocs()
		for b.Loop() {
			if res, _ := m.Take(ctx, "account-1", l); res.Allowed {
				b.Fatal("a request passed a spent limit")
			}
		}
	})

	b.Run("many_keys", func(b *testing.B) {
		m, l, keys := ratelimit.NewMemory(nil), openLimit(b), manyKeys()
		for _, k := range keys {
			m.Take(ctx, k, l) // every key exists: the steady state
		}
		refused, i := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			if res, _ := m.Take(ctx, keys[i], l); !res.Allowed {
				refused++
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
		if refused > 0 {
			b.Fatalf("%d requests refused under an open limit", refused)
		}
	})
}

// BenchmarkMemoryTakeParallel measures decisions from GOMAXPROCS goroutines:
// on one key they all contend for one shard's lock; on many keys they
// rarely meet.
func BenchmarkMemoryTakeParallel(b *testing.B) {
	ctx := context.Background()

	b.Run("one_key", func(b *testing.B) {
		m, l := ratelimit.NewMemory(nil), openLimit(b)
		var refused atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res, _ := m.Take(ctx, "account-1", l); !res.Allowed {
					refused.Add(1)
				}
			}
		})
		if n := refused.Load(); n > 0 {
			b.Fatalf("%d requests refused under an open limit", n)
		}
	})

	b.Run("many_keys", func(b *testing.B) {
		m, l, keys := ratelimit.NewMemory(nil), openLimit(b), manyKeys()
		for _, k := range keys {
			m.Take(ctx, k, l)
		}
		var refused, next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine walks the keys from its own starting point.
			i := int(next.Add(benchKeys/7)) % len(keys)
			for pb.Next() {
				if res, _ := m.Take(ctx, keys[i], l); !res.Allowed {
					refused.Add(1)
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
		if n := refused.Load(); n > 0 {
			b.Fatalf("%d requests refused under an open limit", n)
		}
	})
}

// BenchmarkMemoryPerAccount reports the heap the limiter holds per tracked
// account, with 1,000,000 accounts tracked (their ids are allocated before
// the measurement: a tracked account's id string is shared with the
// caller's account record).
func BenchmarkMemoryPerAccount(b *testing.B) {
	const accounts = 1_000_000
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = "acct-" + strconv.Itoa(i)
	}
	l, err := ratelimit.NewLimit(1, time.Hour, 1)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var perAccount float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := ratelimit.NewMemory(nil)
		for _, id := range ids {
			if _, err := m.Take(ctx, id, l); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if m.Len() != accounts {
			b.Fatalf("%d tracked", m.Len())
		}
		perAccount = float64(after.HeapAlloc-before.HeapAlloc) / accounts
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perAccount, "B/account")
}
