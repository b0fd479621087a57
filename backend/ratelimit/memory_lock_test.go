package ratelimit

import (
	"sync"
	"testing"
	"time"
)

// TestMemoryReadsTheTimeUnderTheLock: a take reads the time while it
// holds its key's lock. Read before, a take that waited for the lock
// brought a time older than the TAT another take stored meanwhile;
// Decide took that for a limit raised since, and let one more through.
// Under a busy machine a source's 20/s let two calls go 1 ms apart.
func TestMemoryReadsTheTimeUnderTheLock(t *testing.T) {
	var m *Memory
	var mu sync.Mutex
	outside := 0
	m = NewMemory(func() time.Time {
		if m == nil {
			return time.Now() // NewMemory's own reading
		}
		for i := range m.shards {
			if m.shards[i].mu.TryLock() {
				m.shards[i].mu.Unlock()
				continue
			}
			return time.Now() // a shard is held: this take's own
		}
		mu.Lock()
		outside++
		mu.Unlock()
		return time.Now()
	})
	l, err := ParseLimit("20/s", 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Take(t.Context(), "source:verify/pan", l); err != nil {
			t.Fatal(err)
		}
	}
	if outside != 0 {
		t.Errorf("%d takes read the time holding no lock", outside)
	}
}
