package bolt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/taskgate/taskgate/backend/quota/quotatest"
	"github.com/taskgate/taskgate/backend/task/tasktest"
)

// BenchmarkCreateParallel measures durable Creates from 32 goroutines, the
// case group commit is for. Compare its creates/s with BenchmarkFsync's
// fsyncs/s on the same disk.
func BenchmarkCreateParallel(b *testing.B) {
	tasktest.CreateParallel(b, open(b, b.TempDir()), 32)
}

// BenchmarkFinishParallel measures durable Finishes from 32 goroutines,
// without deliveries and with two (the outbox of a task with two
// webhooks), each in the transaction that ends its task.
func BenchmarkFinishParallel(b *testing.B) {
	for _, deliveries := range []int{0, 2} {
		b.Run(fmt.Sprintf("deliveries=%d", deliveries), func(b *testing.B) {
			tasktest.FinishParallel(b, open(b, b.TempDir()), 32, deliveries)
		})
	}
}

// BenchmarkFsync measures the disk's raw rate of durable writes: one small
// record appended and synced per op, in the directory the store benchmark
// uses. A store without group commit could not do better.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	record := make([]byte, 128)
	for b.Loop() {
		if _, err := f.Write(record); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
}

// BenchmarkClaimDeliveriesBehindBacklog measures a claim of another URL's
// delivery behind 50,000 due deliveries to a URL at its cap, each claim a
// durable transaction of the writer.
func BenchmarkClaimDeliveriesBehindBacklog(b *testing.B) {
	tasktest.ClaimBehindBacklog(b, open(b, b.TempDir()), 50_000)
}

// BenchmarkQuotaSpendParallel measures durable quota spends (a daily and
// a monthly quota, one transaction, group-committed) from 32 goroutines.
func BenchmarkQuotaSpendParallel(b *testing.B) {
	quotatest.SpendParallel(b, open(b, b.TempDir()), 32)
}

// BenchmarkClaimTurns measures a claim and a release, two durable
// transactions, behind a backlog of 10,000 tasks of one account
// (first-in first-out: the baseline) and of 1,000 accounts taking turns.
func BenchmarkClaimTurns(b *testing.B) {
	for _, accounts := range []int{1, 1000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			tasktest.ClaimTurns(b, open(b, b.TempDir()), accounts, 10_000)
		})
	}
}

// BenchmarkDispatchRetries measures the dispatcher retrying 10,000
// deliveries to a receiver answering 503, over one URL (where the per-URL
// cap binds) and ten, every attempt recorded durably.
func BenchmarkDispatchRetries(b *testing.B) {
	for _, urls := range []int{1, 10} {
		b.Run(fmt.Sprintf("urls=%d", urls), func(b *testing.B) {
			tasktest.DispatchRetries(b, open(b, b.TempDir()), urls, 10_000)
		})
	}
}
