package redis_test

import (
	"fmt"
	"testing"

	"github.com/taskgate/taskgate/backend/quota/quotatest"
	"github.com/taskgate/taskgate/backend/task/tasktest"
	"github.com/taskgate/taskgate/internal/redistest"
)

// BenchmarkCreateParallel measures durable Creates from 32 goroutines:
// each one script, acknowledged once Redis has written it to its
// append-only file and synced it (appendfsync always, which syncs once per
// turn of its event loop for all the writes of that turn). Compare with
// the bolt store's group commit.
func BenchmarkCreateParallel(b *testing.B) {
	tasktest.CreateParallel(b, open(b, redistest.Start(b)), 32)
}

// BenchmarkFinishParallel measures durable Finishes from 32 goroutines,
// without deliveries and with two (the outbox of a task with two
// webhooks), each in the script that ends its task.
func BenchmarkFinishParallel(b *testing.B) {
	for _, deliveries := range []int{0, 2} {
		b.Run(fmt.Sprintf("deliveries=%d", deliveries), func(b *testing.B) {
			tasktest.FinishParallel(b, open(b, redistest.Start(b)), 32, deliveries)
		})
	}
}

// BenchmarkClaimDeliveriesBehindBacklog measures a claim of another URL's
// delivery behind 50,000 due deliveries to a URL at its cap.
func BenchmarkClaimDeliveriesBehindBacklog(b *testing.B) {
	tasktest.ClaimBehindBacklog(b, open(b, redistest.Start(b)), 50_000)
}

// BenchmarkQuotaSpendParallel measures quota spends (a daily and a
// monthly quota, one script) from 32 goroutines.
func BenchmarkQuotaSpendParallel(b *testing.B) {
	quotatest.SpendParallel(b, open(b, redistest.Start(b)), 32)
}

// BenchmarkClaimTurns measures a claim and a release, a script each,
// behind a backlog of 10,000 tasks of one account (first-in first-out:
// the baseline) and of 1,000 accounts taking turns.
func BenchmarkClaimTurns(b *testing.B) {
	srv := redistest.Start(b)
	for _, accounts := range []int{1, 1000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			tasktest.ClaimTurns(b, open(b, srv), accounts, 10_000)
		})
	}
}
