// Package authfail throttles failed authentications per client address.
//
// Each address has an allowance of failures that refills at a rate (GCRA,
// as in package ratelimit: one timestamp per address, no window
// boundaries). A failure spends one unit; while an address has none left,
// its requests are refused before their credentials are looked at, so that
// guessing keys and flooding with bad credentials cost the gateway a map
// lookup each. Successes spend nothing.
//
// The table is bounded: an attacker rotating addresses makes the table
// evict entries, never grow past its size. IPv6 clients are counted per
// /64, the smallest block a network usually hands one host, so that one
// host cannot rotate through the 2^64 addresses it owns.
package authfail

import (
	"context"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// DefaultMaxAddresses is how many addresses a Throttle tracks at once when
// its config sets no bound: about 4 MB of table.
const DefaultMaxAddresses = 1 << 16

// shardCount spreads addresses over independent locks.
const shardCount = 64

// evictionSample is how many entries a full shard looks at to choose the
// one it forgets.
const evictionSample = 8

// Address returns the address under which the failures of addr are
// counted: an IPv4 address (or IPv4-mapped IPv6 address) stands for
// itself, an IPv6 address for its /64. Zones are dropped. The zero Addr
// (a client whose address is unknown) stays the zero Addr: such clients
// share one allowance.
func Address(addr netip.Addr) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return addr
}

// Config configures a Throttle.
type Config struct {
	// MaxAddresses bounds the addresses tracked at once (DefaultMaxAddresses
	// when 0). When the table is full, a new address takes the place of
	// the tracked one nearest to having its whole allowance back.
	MaxAddresses int
	// Clock tells the time; time.Now when nil.
	Clock clock.Clock
}

// Throttle holds the failure allowance of client addresses. It is safe for
// concurrent use. The limit is given on each call, so that one Throttle
// can outlive a configuration and its limit.
type Throttle struct {
	now      ratelimit.Nanos
	seed     maphash.Seed
	perShard int
	// tracked is the number of addresses in the table: while it is zero,
	// Check answers without a lock.
	tracked atomic.Int64
	shards  [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	// tats maps an address (as Address gives it, in 16 bytes) to the
	// theoretical arrival time of its next failure, in nanoseconds of the
	// throttle's ratelimit.Nanos.
	tats map[[16]byte]int64
}

// New returns an empty Throttle.
func New(c Config) *Throttle {
	if c.MaxAddresses <= 0 {
		c.MaxAddresses = DefaultMaxAddresses
	}
	t := &Throttle{
		now:      ratelimit.NewNanos(c.Clock),
		seed:     maphash.MakeSeed(),
		perShard: max(1, c.MaxAddresses/shardCount),
	}
	for i := range t.shards {
		t.shards[i].tats = make(map[[16]byte]int64)
	}
	return t
}

// key returns the table key of addr and its shard.
func (t *Throttle) key(addr netip.Addr) ([16]byte, *shard) {
	k := Address(addr).As16()
	return k, &t.shards[maphash.Comparable(t.seed, k)%shardCount]
}

// Check tells whether addr has at least one failure left under l, without
// spending it. When it has none, the result's RetryAfter says when it
// will have one. An address not valid (none known: a proxy's "unknown", a
// unix socket) always has: all such clients would share one allowance,
// and one of them spend it for all.
func (t *Throttle) Check(addr netip.Addr, l ratelimit.Limit) ratelimit.Result {
	if !addr.IsValid() || t.tracked.Load() == 0 {
		return ratelimit.Result{Allowed: true}
	}
	key, s := t.key(addr)
	s.mu.RLock()
	tat, ok := s.tats[key]
	s.mu.RUnlock()
	if !ok {
		return ratelimit.Result{Allowed: true}
	}
	_, res := ratelimit.Decide(tat, t.now.Now(), l)
	return res
}

// Fail spends one failure of addr under l and returns the decision: not
// allowed when the address had none left (its allowance is then
// unchanged). An address not valid spends nothing (see Check).
func (t *Throttle) Fail(addr netip.Addr, l ratelimit.Limit) ratelimit.Result {
	if !addr.IsValid() {
		return ratelimit.Result{Allowed: true, Remaining: l.Burst}
	}
	key, s := t.key(addr)
	// The time is read under the lock, as ratelimit.Memory.Take does.
	s.mu.Lock()
	defer s.mu.Unlock()
	now := t.now.Now()
	tat, ok := s.tats[key]
	next, res := ratelimit.Decide(tat, now, l)
	if !res.Allowed {
		return res
	}
	if !ok {
		if len(s.tats) >= t.perShard {
			s.evict(now)
			t.tracked.Add(-1)
		}
		t.tracked.Add(1)
	}
	s.tats[key] = next
	return res
}

// evict forgets one entry of a full shard: of a few chosen at random (the
// map's iteration order), the one whose allowance comes back soonest,
// which holds the least. Called with the lock held.
func (s *shard) evict(now int64) {
	var victim [16]byte
	soonest := int64(0)
	n := 0
	for k, tat := range s.tats {
		if n == 0 || tat < soonest {
			victim, soonest = k, tat
		}
		n++
		if n == evictionSample || tat <= now {
			break
		}
	}
	delete(s.tats, victim)
}

// Sweep forgets every address whose allowance is whole again and returns
// how many it forgot. Forgetting them changes no decision.
func (t *Throttle) Sweep() int {
	now := t.now.Now()
	swept := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, tat := range s.tats {
			if tat <= now {
				delete(s.tats, k)
				swept++
			}
		}
		s.mu.Unlock()
	}
	t.tracked.Add(int64(-swept))
	return swept
}

// Len returns the number of addresses tracked.
func (t *Throttle) Len() int { return int(t.tracked.Load()) }

// SweepEvery sweeps at each interval until ctx ends.
func (t *Throttle) SweepEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Sweep()
		}
	}
}
