package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/taskgate/taskgate/backend/ratelimit"
)

// limiterAccounts is how many accounts the limiter memory measure tracks.
const limiterAccounts = 1_000_000

// limiterMemoryResult is the heap the in-process rate limiter holds per
// tracked account, against a plain map of the same keys.
type limiterMemoryResult struct {
	accounts int
	// limiter and baseline are the heap growth per account of a
	// ratelimit.Memory that took one request of each account, and of a
	// map[string]int64 holding the same keys, in bytes.
	limiter, baseline float64
	// took is how long the whole measure ran.
	took time.Duration
}

// measureLimiterMemory measures, in this process, the heap a
// ratelimit.Memory holds per tracked account with limiterAccounts accounts
// tracked, and the same for a plain map[string]int64 of the same keys, as
// BenchmarkMemoryPerAccount does: the ids are allocated before either
// measure (a tracked account's id string is shared with the caller's
// account record), and each figure is HeapAlloc after a GC with the store
// filled minus HeapAlloc after a GC before it was made.
func measureLimiterMemory() (*limiterMemoryResult, error) {
	start := time.Now()
	ids := make([]string, limiterAccounts)
	for i := range ids {
		ids[i] = "acct-" + strconv.Itoa(i)
	}
	res := &limiterMemoryResult{accounts: limiterAccounts}
	var err error
	if res.limiter, err = limiterHeapPerAccount(ids); err != nil {
		return nil, err
	}
	if res.baseline, err = mapHeapPerEntry(ids); err != nil {
		return nil, err
	}
	runtime.KeepAlive(ids)
	res.took = time.Since(start)
	return res, nil
}

// limiterHeapPerAccount is the heap growth of a ratelimit.Memory after one
// request of each id, per id.
func limiterHeapPerAccount(ids []string) (float64, error) {
	l, err := ratelimit.NewLimit(1, time.Hour, 1)
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	before := heapAlloc()
	m := ratelimit.NewMemory(nil)
	for _, id := range ids {
		if _, err := m.Take(ctx, id, l); err != nil {
			return 0, err
		}
	}
	after := heapAlloc()
	if n := m.Len(); n != len(ids) {
		return 0, fmt.Errorf("limiter memory: %d accounts tracked, want %d", n, len(ids))
	}
	runtime.KeepAlive(m)
	return float64(int64(after)-int64(before)) / float64(len(ids)), nil
}

// mapHeapPerEntry is the heap growth of a map[string]int64 holding each id,
// per id: the least a limiter keeping one TAT per account in a Go map can
// hold.
func mapHeapPerEntry(ids []string) (float64, error) {
	before := heapAlloc()
	m := make(map[string]int64)
	for i, id := range ids {
		m[id] = int64(i)
	}
	after := heapAlloc()
	if len(m) != len(ids) {
		return 0, fmt.Errorf("limiter memory baseline: %d entries, want %d", len(m), len(ids))
	}
	runtime.KeepAlive(m)
	return float64(int64(after)-int64(before)) / float64(len(ids)), nil
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// ratio is the limiter's bytes per account over the map's per entry.
func (l *limiterMemoryResult) ratio() float64 {
	if l.baseline <= 0 {
		return 0
	}
	return l.limiter / l.baseline
}
