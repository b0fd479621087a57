package redis_test

import (
	"fmt"
	"strconv"
	"strings"
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
//
// Next to creates/s, Redis's own cost: redis-µs/create, the server's CPU
// time (INFO cpu, user + system) per creation, network and the
// append-only file included; script-µs/create, the scripts' own run time
// (INFO commandstats); creates/call, how many creations a call carried.
func BenchmarkCreateParallel(b *testing.B) {
	srv := redistest.Start(b)
	// No rewrite of the append-only file in the middle of the run: it
	// forks, and the writes after it copy the pages they touch, which
	// would be counted as the scripts' time.
	if reply, err := srv.Command("CONFIG SET auto-aof-rewrite-percentage 0"); err != nil || strings.TrimSpace(reply) != "+OK" {
		b.Fatalf("CONFIG SET auto-aof-rewrite-percentage 0: %q %v", reply, err)
	}
	s := open(b, srv)
	cpu0, usec0, calls0 := redisCosts(b, srv)
	tasktest.CreateParallel(b, s, 32)
	cpu1, usec1, calls1 := redisCosts(b, srv)
	n := float64(b.N)
	b.ReportMetric((cpu1-cpu0)*1e6/n, "redis-µs/create")
	b.ReportMetric((usec1-usec0)/n, "script-µs/create")
	b.ReportMetric(n/max(calls1-calls0, 1), "creates/call")
}

// BenchmarkCreateBatches measures Creates from 1 to 256 goroutines on a
// Redis as the bench runs it (appendfsync everysec, hash-max-listpack-value
// 1024): more goroutines, more creations in each script call. Its
// redis-µs/create against creates/call splits Redis's CPU into what a call
// costs, whatever it carries, and what each task adds (docs/sizing.md).
func BenchmarkCreateBatches(b *testing.B) {
	for _, g := range []int{1, 4, 16, 64, 256} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			srv := redistest.Start(b)
			for _, set := range []string{"auto-aof-rewrite-percentage 0", "appendfsync everysec", "hash-max-listpack-value 1024"} {
				if reply, err := srv.Command("CONFIG SET " + set); err != nil || strings.TrimSpace(reply) != "+OK" {
					b.Fatalf("CONFIG SET %s: %q %v", set, reply, err)
				}
			}
			s := open(b, srv)
			cpu0, usec0, calls0 := redisCosts(b, srv)
			tasktest.CreateParallel(b, s, g)
			cpu1, usec1, calls1 := redisCosts(b, srv)
			n := float64(b.N)
			b.ReportMetric((cpu1-cpu0)*1e6/n, "redis-µs/create")
			b.ReportMetric((usec1-usec0)/n, "script-µs/create")
			b.ReportMetric(n/max(calls1-calls0, 1), "creates/call")
		})
	}
}

// redisCosts reads the server's CPU seconds (user + system) and the
// run time (µs) and calls of its scripts so far.
func redisCosts(tb testing.TB, srv *redistest.Server) (cpu, scriptUsec, scriptCalls float64) {
	tb.Helper()
	info, err := srv.Command("INFO cpu")
	if err != nil {
		tb.Fatal(err)
	}
	stats, err := srv.Command("INFO commandstats")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(info+"\n"+stats, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		case "cmdstat_evalsha", "cmdstat_eval":
			for kv := range strings.SplitSeq(v, ",") {
				name, val, _ := strings.Cut(kv, "=")
				f, _ := strconv.ParseFloat(val, 64)
				switch name {
				case "usec":
					scriptUsec += f
				case "calls":
					scriptCalls += f
				}
			}
		}
	}
	return cpu, scriptUsec, scriptCalls
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
