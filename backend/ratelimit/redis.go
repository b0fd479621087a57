package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

//go:embed redis.lua
var takeLua string

// takeScript is one decision: EVALSHA, loaded by EVAL the first time a
// Redis does not know it.
var takeScript = goredis.NewScript(takeLua)

// Redis keeps one TAT per key in Redis, shared by every node, and decides
// each request with one Lua script: atomic, one round trip, on Redis's
// clock (TIME, whole microseconds), so that the nodes' clocks do not matter.
// The arithmetic is Decide's, to the nanosecond. A key is a string of the
// TAT in nanoseconds that expires when the TAT passes (at most a window
// after the last admitted request), so idle accounts take no memory.
type Redis struct {
	rdb    goredis.UniversalClient
	prefix string
}

// NewRedis returns the store that keeps the TAT of account key at prefix +
// key in rdb. Each call touches that one key only, so it runs on Redis
// Cluster whatever the prefix; a hash tag in it (as in "{tg}:rl:") puts
// every account's key in one slot.
func NewRedis(rdb goredis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

// Take decides one request of key under limit l.
func (r *Redis) Take(ctx context.Context, key string, l Limit) (Result, error) {
	return r.take(ctx, key, l)
}

// take runs the script; at, in tests only, is the time to decide at
// (seconds and nanoseconds) instead of Redis's clock.
func (r *Redis) take(ctx context.Context, key string, l Limit, at ...any) (Result, error) {
	v, err := takeScript.Run(ctx, r.rdb, []string{r.prefix + key}, takeArgs(l, at)...).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("rate limit: redis: %w", err)
	}
	return takeResult(v, l)
}

// takeArgs are the script's arguments: the interval and the window as
// seconds and nanoseconds, then at.
func takeArgs(l Limit, at []any) []any {
	interval, window := l.Interval(), l.Window()
	args := make([]any, 4, 4+len(at))
	args[0] = int64(interval / time.Second)
	args[1] = int64(interval % time.Second)
	args[2] = int64(window / time.Second)
	args[3] = int64(window % time.Second)
	return append(args, at...)
}

// takeResult reads the script's reply.
func takeResult(v []int64, l Limit) (Result, error) {
	switch {
	case len(v) == 3 && v[0] == 1:
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
	return Result{}, fmt.Errorf("rate limit: redis: unexpected script reply %v", v)
}

func pairDuration(s, ns int64) time.Duration {
	return time.Duration(s)*time.Second + time.Duration(ns)
}

var _ Store = (*Redis)(nil)
