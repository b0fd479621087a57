package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
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
// script run. A lone request goes at once, alone. Each decision is the
// same as it would be alone, in the order of the batch.
type Redis struct {
	rdb goredis.UniversalClient
	// prefixOf returns the start of a key's key in Redis.
	prefixOf func(key string) string
	// batches sends the decisions of concurrent requests of a prefix
	// together, a queue per prefix; none when keys may not share a call:
	// on Redis Cluster when the prefix holds no hash tag, which would put
	// every key in one slot.
	batches sync.Map // prefix → *batch.Queue[*decision], or nil
}

// decision is one request waiting for its batch.
type decision struct {
	key  string
	l    Limit
	res  Result
	err  error
	done chan struct{}
}

// NewRedis returns the store that keeps the TAT of account key at prefix +
// key in rdb. On Redis Cluster, a hash tag in the prefix (as in
// "{tg}:rl:") puts every account's key in one slot, which lets decisions
// go in batches; without one, each decision is a call of its own.
func NewRedis(rdb goredis.UniversalClient, prefix string) *Redis {
	return NewRedisSharded(rdb, func(string) string { return prefix })
}

// NewRedisSharded returns the store that keeps the TAT of key at
// prefixOf(key) + key in rdb: a store whose keys are spread over hash tags
// (shards) keeps each account's where its data is. The decisions of the
// keys of one prefix go in batches, each batch to its tag's master.
func NewRedisSharded(rdb goredis.UniversalClient, prefixOf func(key string) string) *Redis {
	return &Redis{rdb: rdb, prefixOf: prefixOf}
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
	q := r.queue(prefix)
	if q == nil {
		return r.take(ctx, key, l)
	}
	d := &decision{key: prefix + key, l: l, done: make(chan struct{})}
	q.Add(d)
	select {
	case <-d.done:
		return d.res, d.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("rate limit: redis: %w", ctx.Err())
	}
}

// take decides one request alone; at, in tests only, is the time to
// decide at (seconds and nanoseconds) instead of Redis's clock.
func (r *Redis) take(ctx context.Context, key string, l Limit, at ...any) (Result, error) {
	d := &decision{key: r.prefixOf(key) + key, l: l}
	r.decide(ctx, []*decision{d}, at)
	return d.res, d.err
}

// decide runs the script for the batch and sets each decision's result.
func (r *Redis) decide(ctx context.Context, batch []*decision, at []any) {
	keys := make([]string, len(batch))
	args := make([]any, 0, 2+4*len(batch))
	if len(at) == 2 {
		args = append(args, at...)
	} else {
		args = append(args, "", "")
	}
	for i, d := range batch {
		keys[i] = d.key
		args = appendLimit(args, d.l)
	}
	v, err := takeScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err == nil && len(v) != 5*len(batch) {
		err = fmt.Errorf("unexpected script reply of %d numbers for %d decisions", len(v), len(batch))
	}
	for i, d := range batch {
		if err != nil {
			d.err = fmt.Errorf("rate limit: redis: %w", err)
			continue
		}
		d.res, d.err = takeResult(v[5*i:5*i+5], d.l)
	}
}

// takeArgs are the script's arguments for one decision under l: at (or
// Redis's clock), then the limit.
func takeArgs(l Limit, at []any) []any {
	args := append([]any{"", ""}, appendLimit(nil, l)...)
	if len(at) == 2 {
		args[0], args[1] = at[0], at[1]
	}
	return args
}

// appendLimit appends the interval and the window of l, as seconds and
// nanoseconds.
func appendLimit(args []any, l Limit) []any {
	interval, window := l.Interval(), l.Window()
	return append(args,
		int64(interval/time.Second), int64(interval%time.Second),
		int64(window/time.Second), int64(window%time.Second))
}

// takeResult reads one decision of the script's reply.
func takeResult(v []int64, l Limit) (Result, error) {
	switch {
	case len(v) == 5 && v[0] == 1:
		reset := pairDuration(v[1], v[2])
		return Result{
			Allowed:    true,
			Remaining:  int64((l.Window() - reset) / l.Interval()),
			ResetAfter: reset,
		}, nil
	case len(v) == 5 && v[0] == 0:
		return Result{
			RetryAfter: pairDuration(v[1], v[2]),
			ResetAfter: pairDuration(v[3], v[4]),
		}, nil
	}
	return Result{}, errors.New("rate limit: redis: unexpected script reply")
}

func pairDuration(s, ns int64) time.Duration {
	return time.Duration(s)*time.Second + time.Duration(ns)
}

var _ Store = (*Redis)(nil)
