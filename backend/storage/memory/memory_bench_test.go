package memory_test

import (
	"fmt"
	"testing"

	"github.com/taskgate/taskgate/backend/quota/quotatest"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task/tasktest"
)

// BenchmarkCreateParallel measures Creates from 32 goroutines.
func BenchmarkCreateParallel(b *testing.B) {
	s := memory.New()
	b.Cleanup(func() { s.Close() })
	tasktest.CreateParallel(b, s, 32)
}

// BenchmarkFinishParallel measures Finishes from 32 goroutines, without
// deliveries and with two.
func BenchmarkFinishParallel(b *testing.B) {
	for _, deliveries := range []int{0, 2} {
		b.Run(fmt.Sprintf("deliveries=%d", deliveries), func(b *testing.B) {
			s := memory.New()
			b.Cleanup(func() { s.Close() })
			tasktest.FinishParallel(b, s, 32, deliveries)
		})
	}
}

// BenchmarkClaimDeliveriesBehindBacklog measures a claim of another URL's
// delivery behind 50,000 due deliveries to a URL at its cap.
func BenchmarkClaimDeliveriesBehindBacklog(b *testing.B) {
	s := memory.New()
	b.Cleanup(func() { s.Close() })
	tasktest.ClaimBehindBacklog(b, s, 50_000)
}

// BenchmarkQuotaSpendParallel measures quota spends (a daily and a
// monthly quota, under the store's lock) from 32 goroutines.
func BenchmarkQuotaSpendParallel(b *testing.B) {
	s := memory.New()
	b.Cleanup(func() { s.Close() })
	quotatest.SpendParallel(b, s, 32)
}

// BenchmarkClaimTurns measures a claim and a release behind a backlog of
// 10,000 tasks of one account (first-in first-out: the baseline) and of
// 1,000 accounts taking turns.
func BenchmarkClaimTurns(b *testing.B) {
	for _, accounts := range []int{1, 1000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			s := memory.New()
			b.Cleanup(func() { s.Close() })
			tasktest.ClaimTurns(b, s, accounts, 10_000)
		})
	}
}

// BenchmarkDispatchRetries measures the dispatcher retrying 10,000
// deliveries to a receiver answering 503, over one URL and ten: the
// baseline of the durable stores' figures.
func BenchmarkDispatchRetries(b *testing.B) {
	for _, urls := range []int{1, 10} {
		b.Run(fmt.Sprintf("urls=%d", urls), func(b *testing.B) {
			tasktest.DispatchRetries(b, memory.New(), urls, 10_000)
		})
	}
}
