package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// shardCount spreads keys over independent locks so that concurrent requests
// of different accounts rarely contend.
const shardCount = 256

// Memory keeps one TAT per key in process memory: a map entry of a string
// header and an int64 (the key's bytes are shared with the caller's string).
// Keys whose TAT has passed hold no information (a new key behaves the same)
// and are swept.
type Memory struct {
	now    Nanos
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu   sync.Mutex
	tats map[string]int64
}

// NewMemory returns an empty in-memory store using clock (time.Now if nil).
func NewMemory(clock clock.Clock) *Memory {
	m := &Memory{now: NewNanos(clock), seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].tats = make(map[string]int64)
	}
	return m
}

// Take decides one request of key under limit l. The time is read under
// the key's lock: read before it, a request that waited for the lock
// would bring a time older than the TAT another stored meanwhile, which
// Decide takes for a limit raised since, and lets through.
func (m *Memory) Take(_ context.Context, key string, l Limit) (Result, error) {
	s := &m.shards[maphash.String(m.seed, key)%shardCount]
	s.mu.Lock()
	now := m.now.Now()
	tat, res := Decide(s.tats[key], now, l)
	if res.Allowed {
		s.tats[key] = tat
	}
	s.mu.Unlock()
	return res, nil
}

// Sweep forgets every key whose TAT has passed and returns how many it
// forgot. Forgetting them changes no decision.
func (m *Memory) Sweep() int {
	now := m.now.Now()
	swept := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, tat := range s.tats {
			if tat <= now {
				delete(s.tats, k)
				swept++
			}
		}
		s.mu.Unlock()
	}
	return swept
}

// Len returns the number of keys tracked.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

// SweepEvery sweeps at each interval until ctx ends.
func (m *Memory) SweepEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep()
		}
	}
}
