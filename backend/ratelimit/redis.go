package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/internal/batch"
)

//go:embed redis.lua
var takeLua string

// takeScript decides a batch of requests: EVALSHA, loaded by EVAL the first
// time a Redis does not know it.
var takeScript = goredis.NewScript(takeLua)

// The batching of decisions.
const (
	// maxBatch bounds the decisions of one script call.
	maxBatch = 256
	// maxSenders bounds the script calls of a store in flight at once.
	// While they are, the requests that arrive wait to go together in
	// the next call.
	maxSenders = 2
)

// The leases of busy keys (WithLeases).
const (
	// maxLease bounds the tokens a node leases in one call, and
	// leaseShare, as a divisor of the burst, the share of a burst: all
	// a node can lose of a key's tokens when its requests stop.
	maxLease   = 1024
	leaseShare = 100
	// idleHeld is how long a key's lease and refusal are kept after its
	// last request, and sweepEvery how often they are looked over.
	idleHeld   = 10 * time.Second
	sweepEvery = 10 * time.Second
)

// Redis keeps one TAT per key in Redis, shared by every node, and decides
// requests with a Lua script: atomic, on Redis's clock (TIME, whole
// microseconds), so that the nodes' clocks do not matter. The arithmetic
// is Decide's, to the nanosecond. A key is a string of the TAT in
// nanoseconds that expires when the TAT passes (at most a window after the
// last admitted request), so idle accounts take no memory.
//
// The decisions of concurrent requests go together: a request that comes
// while maxSenders calls are in flight waits for the next, which decides
// every request waiting then (up to maxBatch) in one round trip and one
// script run, those of a key as one entry. A lone request goes at once,
// alone. Each decision is the same as it would be alone, the requests of
// a key in the order they came.
//
// With leases (WithLeases) a node also takes ahead, for a busy key, the
// tokens its next requests will use, and keeps the refusals it is told
// until they end: see held.
type Redis struct {
	rdb goredis.UniversalClient
	// prefixOf returns the start of a key's key in Redis.
	prefixOf func(key string) string
	// batches sends the decisions of concurrent requests of a prefix
	// together, a queue per prefix; none when keys may not share a call:
	// on Redis Cluster when the prefix holds no hash tag, which would put
	// every key in one slot.
	batches sync.Map // prefix → *batch.Queue[*decision], or nil
	// ahead is the time of a key's demand a node leases ahead; 0 for no
	// leases. held is what it holds of each key, swept the last sweep
	// (on nanos).
	ahead time.Duration
	held  sync.Map // key (as Take has it, without its prefix) → *held
	swept atomic.Int64
	nanos Nanos
}

// decision is one request waiting for its batch.
type decision struct {
	key    string
	prefix string
	l      Limit
	h      *held // nil without leases
	res    Result
	err    error
	done   chan struct{}
}

// leasedTokens and lostTokens count the tokens the Redis stores of this
// process leased, and those of them that went unused (expired, replaced or
// swept): lost to the other nodes.
var leasedTokens, lostTokens atomic.Uint64

// LeaseTokens returns the tokens the Redis stores of this process leased
// so far, and how many of them were lost unused.
func LeaseTokens() (leased, lost uint64) { return leasedTokens.Load(), lostTokens.Load() }

// Option configures a Redis store.
type Option func(*Redis)

// WithLeases has a node lease a busy key's tokens ahead: a call for a key
// asks for its requests waiting and for the tokens the node expects to
// use over the next ahead (its rate since the call before), at most twice
// the requests it saw since then, a hundredth of the key's burst and
// maxLease. Redis takes them as requests
// arriving ahead from now, and the node admits its next requests from
// them, without a call, until then and never after; it also refuses
// without a call until a refusal Redis gave ends.
//
// The limit holds across nodes as without: a leased token used before
// the instant it was taken for is used early, as a burst would be, so no
// more requests pass than the limit allows. What changes is who gets
// them: a node's leased tokens pass its requests while another's are
// refused; the tokens a lease leaves unused are lost (LeaseTokens counts
// them); and a lease taken while the key's burst is nearly whole
// spends up to ahead of its refill. A limit under 100 requests a burst
// leases nothing.
func WithLeases(ahead time.Duration) Option {
	return func(r *Redis) { r.ahead = ahead }
}

// NewRedis returns the store that keeps the TAT of account key at prefix +
// key in rdb. On Redis Cluster, a hash tag in the prefix (as in
// "{tg}:rl:") puts every account's key in one slot, which lets decisions
// go in batches; without one, each decision is a call of its own.
func NewRedis(rdb goredis.UniversalClient, prefix string, opts ...Option) *Redis {
	return NewRedisSharded(rdb, func(string) string { return prefix }, opts...)
}

// NewRedisSharded returns the store that keeps the TAT of key at
// prefixOf(key) + key in rdb: a store whose keys are spread over hash tags
// (shards) keeps each account's where its data is. The decisions of the
// keys of one prefix go in batches, each batch to its tag's master.
func NewRedisSharded(rdb goredis.UniversalClient, prefixOf func(key string) string, opts ...Option) *Redis {
	r := &Redis{rdb: rdb, prefixOf: prefixOf, nanos: NewNanos(nil)}
	for _, o := range opts {
		o(r)
	}
	return r
}

// queue returns the batches of the prefix, nil when its keys may not share
// a call.
func (r *Redis) queue(prefix string) *batch.Queue[*decision] {
	if q, ok := r.batches.Load(prefix); ok {
		return q.(*batch.Queue[*decision])
	}
	_, cluster := r.rdb.(*goredis.ClusterClient)
	tagged := strings.Contains(prefix, "{") && strings.Contains(prefix[strings.Index(prefix, "{"):], "}")
	var q *batch.Queue[*decision]
	if !cluster || tagged {
		q = &batch.Queue[*decision]{Max: maxBatch, Senders: maxSenders, Send: func(ds []*decision) {
			// The batch's callers may have given up; the call is bounded
			// by the client's own timeouts.
			r.decide(context.Background(), ds, nil)
			for _, d := range ds {
				close(d.done)
			}
		}}
	}
	actual, _ := r.batches.LoadOrStore(prefix, q)
	return actual.(*batch.Queue[*decision])
}

// Take decides one request of key under limit l.
func (r *Redis) Take(ctx context.Context, key string, l Limit) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("rate limit: redis: %w", err)
	}
	prefix := r.prefixOf(key)
	d := &decision{key: prefix + key, prefix: prefix, l: l, done: make(chan struct{})}
	if r.ahead > 0 {
		r.sweep(time.Now())
		for st := gone; st != undecided; {
			d.h = r.holding(key)
			switch st = d.h.take(d); st {
			case decided:
				return d.res, nil
			case waiting:
				return wait(ctx, d)
			case gone:
				// The sweep may not have removed it yet.
				r.held.CompareAndDelete(key, d.h)
			}
		}
	}
	q := r.queue(prefix)
	if q == nil {
		r.decideAlone(ctx, d)
		return d.res, d.err
	}
	q.Add(d)
	return wait(ctx, d)
}

// TakeHeld decides a request of key under l from what the node holds of
// it (a token leased, a refusal that lasts), without a call to Redis, if
// it can: the way a caller with a call's costs to spare (a timeout, a
// goroutine) tries first.
func (r *Redis) TakeHeld(key string, l Limit) (Result, bool) {
	if r.ahead <= 0 {
		return Result{}, false
	}
	v, ok := r.held.Load(key)
	if !ok {
		return Result{}, false
	}
	h := v.(*held)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return Result{}, false
	}
	now := time.Now() // under the lock: a lease's end is checked when used
	d := decision{l: l}
	if !h.decide(&d, now) {
		return Result{}, false
	}
	h.seen++
	h.used = now
	return d.res, true
}

// wait waits for d's decision.
func wait(ctx context.Context, d *decision) (Result, error) {
	select {
	case <-d.done:
		return d.res, d.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("rate limit: redis: %w", ctx.Err())
	}
}

// decideAlone decides d in a call of its own and then answers it.
func (r *Redis) decideAlone(ctx context.Context, d *decision) {
	r.decide(ctx, []*decision{d}, nil)
	close(d.done)
}

// requeue sends d, which waited for a lease that did not cover it, to
// Redis.
func (r *Redis) requeue(d *decision) {
	if q := r.queue(d.prefix); q != nil {
		q.Add(d)
		return
	}
	go r.decideAlone(context.Background(), d)
}

// take decides one request alone, without leases; at, in tests only, is
// the time to decide at (seconds and nanoseconds) instead of Redis's clock.
func (r *Redis) take(ctx context.Context, key string, l Limit, at ...any) (Result, error) {
	d := &decision{key: r.prefixOf(key) + key, prefix: r.prefixOf(key), l: l}
	r.decide(ctx, []*decision{d}, at)
	return d.res, d.err
}

// entry is the decisions of one key and limit in a call, and the tokens
// leased on top of them.
type entry struct {
	key   string
	l     Limit
	ds    []*decision
	h     *held
	ahead int64
}

// The outcomes of held.take.
const (
	undecided = iota // the request goes to Redis
	decided          // from a lease or a refusal held
	waiting          // for the lease in flight
	gone             // swept: the request looks for the key's new record
)

// decide runs the script for the batch and sets each decision's result.
func (r *Redis) decide(ctx context.Context, batch []*decision, at []any) {
	entries := group(batch)
	keys := make([]string, len(entries))
	args := make([]any, 0, 2+8*len(entries))
	if len(at) == 2 {
		args = append(args, at...)
	} else {
		args = append(args, "", "")
	}
	sent := time.Now()
	for i, e := range entries {
		if e.h != nil {
			e.ahead = e.h.lease(e.l, sent, r.ahead)
		}
		keys[i] = e.key
		args = append(args, len(e.ds), e.ahead, int64(r.ahead/time.Second), int64(r.ahead%time.Second))
		args = appendLimit(args, e.l)
	}
	v, err := takeScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	got := time.Now()
	if err == nil && len(v) != 2+6*len(entries) {
		err = fmt.Errorf("unexpected script reply of %d numbers for %d keys", len(v), len(entries))
	}
	for i, e := range entries {
		if err != nil {
			for _, d := range e.ds {
				d.err = fmt.Errorf("rate limit: redis: %w", err)
			}
			if e.h != nil {
				for _, d := range e.h.settle(e, nil, sent, got, r.ahead) {
					r.requeue(d)
				}
			}
			continue
		}
		g := grantOf(v[:2], v[2+6*i:8+6*i])
		for j, d := range e.ds {
			d.res = g.result(int64(j), e.l)
		}
		if e.h != nil {
			for _, d := range e.h.settle(e, &g, sent, got, r.ahead) {
				r.requeue(d)
			}
		}
	}
}

// group gathers the decisions of a batch by key and limit, in the order
// of their first.
func group(batch []*decision) []*entry {
	entries := make([]*entry, 0, len(batch))
	type id struct {
		key string
		l   Limit
	}
	var index map[id]*entry
	if len(batch) > 1 {
		index = make(map[id]*entry, len(batch))
	}
	for _, d := range batch {
		if e := index[id{d.key, d.l}]; e != nil {
			e.ds = append(e.ds, d)
			continue
		}
		e := &entry{key: d.key, l: d.l, ds: []*decision{d}, h: d.h}
		entries = append(entries, e)
		if index != nil {
			index[id{d.key, d.l}] = e
		}
	}
	return entries
}

// grant is the script's answer for an entry: its first k requests are
// admitted, from the TAT base, and leased tokens are leased from the TAT
// leaseBase (times from the script's now).
type grant struct {
	k, leased       int64
	base, leaseBase time.Duration
}

// grantOf reads an entry's answer (six numbers) given the script's now
// (two).
func grantOf(now, v []int64) grant {
	n := pairDuration(now[0], now[1])
	return grant{k: v[0], base: pairDuration(v[1], v[2]) - n, leased: v[3], leaseBase: pairDuration(v[4], v[5]) - n}
}

// result is the outcome of the entry's request i (from 0): as Decide would
// have it, one request after the other.
func (g grant) result(i int64, l Limit) Result {
	if i < g.k {
		return allowed(g.base+time.Duration(i+1)*l.Interval(), l)
	}
	tat := g.base + time.Duration(g.k)*l.Interval()
	return Result{RetryAfter: tat + l.Interval() - l.Window(), ResetAfter: tat}
}

// allowed is the result of an admission whose TAT is reset from now.
func allowed(reset time.Duration, l Limit) Result {
	reset = max(reset, 0)
	return Result{Allowed: true, Remaining: min(int64((l.Window()-reset)/l.Interval()), l.Burst-1), ResetAfter: reset}
}

// held is what a node holds of a key between its calls, with leases: the
// tokens leased for its next requests, the refusal Redis last gave while
// it lasts, the requests waiting for a lease in flight, and the key's
// demand. Times are on the node's clock: a lease's from when its call was
// sent (before Redis's now, so that it ends sooner than Redis has it,
// never later), a refusal's from when the answer came (after Redis's now,
// so that it ends later, never sooner).
type held struct {
	mu sync.Mutex
	l  Limit // the limit of what is held
	// left tokens are leased, usable until expires; the next has the
	// TAT next.
	left          int64
	next, expires time.Time
	// Until until, every request is refused; the key's TAT is then tat.
	until, tat time.Time
	// leasing tells that a call leasing ahead is in flight, for whose
	// tokens the waiters wait.
	leasing bool
	waiters []*decision
	// seen requests came since the call sent at sent; inflight calls
	// are in flight; used is when the last request came.
	seen     int64
	sent     time.Time
	inflight int
	used     time.Time
	// gone tells that the sweep forgot the record: a request that still
	// found it looks for the key's new one.
	gone bool
}

// holding returns what the node holds of key.
func (r *Redis) holding(key string) *held {
	if h, ok := r.held.Load(key); ok {
		return h.(*held)
	}
	h, _ := r.held.LoadOrStore(key, &held{})
	return h.(*held)
}

// sweep forgets, every sweepEvery, the keys idle for idleHeld: the tokens
// they hold are lost to the others.
func (r *Redis) sweep(now time.Time) {
	at, last := r.nanos.Now(), r.swept.Load()
	if at-last < int64(sweepEvery) || !r.swept.CompareAndSwap(last, at) {
		return
	}
	r.held.Range(func(k, v any) bool {
		h := v.(*held)
		h.mu.Lock()
		gone := h.inflight == 0 && now.Sub(h.used) > idleHeld
		if gone {
			h.gone = true
			h.loseLeft()
		}
		h.mu.Unlock()
		if gone {
			r.held.CompareAndDelete(k, h)
		}
		return true
	})
}

// loseLeft counts the tokens left as lost; h.mu is held.
func (h *held) loseLeft() {
	lostTokens.Add(uint64(h.left))
	h.left = 0
}

// take decides request d from what is held, if it can, or has it wait
// for the lease in flight.
func (h *held) take(d *decision) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return gone
	}
	now := time.Now() // under the lock: a lease's end is checked when used
	h.seen++
	h.used = now
	if h.decide(d, now) {
		return decided
	}
	if h.leasing && h.l == d.l {
		h.waiters = append(h.waiters, d)
		return waiting
	}
	return undecided
}

// decide sets d's result from a token leased or the refusal held, if
// either applies.
func (h *held) decide(d *decision, now time.Time) bool {
	if h.l != d.l {
		return false
	}
	if h.left > 0 && now.After(h.expires) {
		// Unused, they are lost: Redis counted them as used by then.
		h.loseLeft()
	}
	if h.left > 0 {
		tat := h.next
		h.left--
		h.next = tat.Add(d.l.Interval())
		d.res = allowed(tat.Sub(now), d.l)
		return true
	}
	if now.Before(h.until) {
		d.res = Result{RetryAfter: h.until.Sub(now), ResetAfter: max(h.tat.Sub(now), 0)}
		return true
	}
	return false
}

// lease returns the tokens a call sent at now asks for ahead: the
// requests of the key expected over ahead, at the rate they came since
// the call before, at most twice as many as came. It asks for none while
// another leasing call is in flight, or while tokens are left (leased
// since the requests of this call came): what a lease brings replaces
// nothing.
func (h *held) lease(l Limit, now time.Time, ahead time.Duration) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight++
	seen, since := h.seen, now.Sub(h.sent)
	first := h.sent.IsZero()
	h.seen, h.sent = 0, now
	if first || h.leasing || (h.left > 0 && now.Before(h.expires)) || since <= 0 {
		return 0
	}
	// At most twice the requests seen: a rate from two requests a few
	// microseconds apart says little, and a lease grows by doubling.
	n := min(int64(float64(seen)*float64(ahead)/float64(since)), 2*seen, l.Burst/leaseShare, maxLease)
	if n > 0 {
		h.leasing = true
	}
	return n
}

// settle keeps what the call of entry e, sent at sent, got at got: the
// tokens it leased, usable for life from when it was sent (before Redis's
// now: never later than Redis has them), and the refusal when one of its
// requests was refused, until its end counted from when the answer came
// (after Redis's now: never sooner); g is nil when the call failed. When
// e leased, its tokens go first to the requests that waited for them; it
// returns those they did not cover.
func (h *held) settle(e *entry, g *grant, sent, got time.Time, life time.Duration) (rest []*decision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight--
	if h.l != e.l {
		h.loseLeft()
		h.l, h.until = e.l, time.Time{}
	}
	if g != nil {
		if g.leased > 0 {
			// What is left of the lease before is past its life (lease
			// asks for none before): lost.
			h.loseLeft()
			leasedTokens.Add(uint64(g.leased))
			h.left, h.expires = g.leased, sent.Add(life)
			h.next = sent.Add(g.leaseBase + e.l.Interval())
		}
		h.until = time.Time{}
		if g.k < int64(len(e.ds)) {
			r := g.result(g.k, e.l)
			h.until, h.tat = got.Add(r.RetryAfter), got.Add(r.ResetAfter)
		}
	}
	if e.ahead == 0 {
		return nil
	}
	h.leasing = false
	now := time.Now()
	for _, d := range h.waiters {
		if g != nil && h.decide(d, now) {
			close(d.done)
			continue
		}
		rest = append(rest, d)
	}
	h.waiters = nil
	return rest
}

// appendLimit appends the interval and the window of l, as seconds and
// nanoseconds.
func appendLimit(args []any, l Limit) []any {
	interval, window := l.Interval(), l.Window()
	return append(args,
		int64(interval/time.Second), int64(interval%time.Second),
		int64(window/time.Second), int64(window%time.Second))
}

func pairDuration(s, ns int64) time.Duration {
	return time.Duration(s)*time.Second + time.Duration(ns)
}
