package ratelimit_test

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/internal/redistest"
)

// redisBenchKeys is how many accounts the Redis benchmarks spread over.
const redisBenchKeys = 10_000

// redisBenchParallelism times GOMAXPROCS is how many requests are in
// flight at once: enough to keep Redis busy across round trips.
const redisBenchParallelism = 8

// redisRateAllowN is go-redis/redis_rate's script (lua.go, allowN), the
// reference to beat, copied as the baseline only:
//
//	Copyright (c) 2017 Pavel Pravosud
//	https://github.com/rwz/redis-gcra/blob/master/vendor/perform_gcra_ratelimit.lua
//	via github.com/go-redis/redis_rate (BSD-2-Clause)
var redisRateAllowN = goredis.NewScript(`
-- this script has side-effects, so it requires replicate commands mode
redis.replicate_commands()

local rate_limit_key = KEYS[1]
local burst = ARGV[1]
local rate = ARGV[2]
local period = ARGV[3]
local cost = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst

-- redis returns time as an array containing two integers: seconds of the epoch
-- time (10 digits) and microseconds (6 digits). for convenience we need to
-- convert them to a floating point number. the resulting number is 16 digits,
-- bordering on the limits of a 64-bit double-precision floating point number.
-- adjust the epoch to be relative to Jan 1, 2017 00:00:00 GMT to avoid floating
-- point problems. this approach is good until "now" is 2,483,228,799 (Wed, 09
-- Sep 2048 01:46:39 GMT), when the adjusted value is 16 digits.
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", rate_limit_key)

if not tat then
  tat = now
else
  tat = tonumber(tat)
end

tat = math.max(tat, now)

local new_tat = tat + increment
local allow_at = new_tat - burst_offset

local diff = now - allow_at
local remaining = math.floor(diff / emission_interval + 0.5)

if remaining >= 0 then
  local reset_after = new_tat - now
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
  local retry_after = -1
  return {cost, remaining, tostring(retry_after), tostring(reset_after)}
end

remaining = 0
local reset_after = tat - now
local retry_after = diff * -1
return {0, remaining, tostring(retry_after), tostring(reset_after)}
`)

// BenchmarkRedisTake measures decisions in Redis from many goroutines over
// many accounts, each account's key alive (the steady state of busy
// accounts: every request passes and rewrites a key with a TTL of hours).
// Next to ns/op, the Redis server's own cost:
//
//   - redis-µs/decision: the server process's CPU time (user + system, from
//     INFO cpu) per decision, network reads and writes included: what a
//     decision costs the shared Redis;
//   - redis-cmd-µs/decision: the command's own time (INFO commandstats),
//     shared by the decisions of a call;
//   - decisions/call: how many decisions a call carried (the batching of
//     concurrent requests);
//   - cpu-x-incr: redis-µs/decision over that of as many INCRs (one key per
//     account, no TTL: the cheapest counter there is), measured right
//     after in the same run, so that the figure holds on a noisy machine.
//
// one_key_leased is one_key on a store with leases (WithLeases), as
// storage redis has it. Baselines: incr, and redis_rate (go-redis/redis_rate's GCRA script, on
// floating-point seconds) under the same limit.
//
// The server's append-only file is off: the figures are of the decision,
// not of the disk.
func BenchmarkRedisTake(b *testing.B) {
	ctx := context.Background()
	srv := redistest.Start(b)
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, redisBenchKeys)
	for i := range keys {
		keys[i] = "account-" + strconv.Itoa(i)
	}
	// Every request passes, and no key expires during the run.
	l, err := ratelimit.NewLimit(1, time.Hour, 1_000_000)
	if err != nil {
		b.Fatal(err)
	}
	store := ratelimit.NewRedis(rdb, "{tg}:rl:")

	gcra := func(ctx context.Context, key string) (bool, error) {
		res, err := store.Take(ctx, key, l)
		return res.Allowed, err
	}
	incr := func(ctx context.Context, key string) (bool, error) {
		return true, rdb.Incr(ctx, "{tg}:incr:"+key).Err()
	}
	redisRate := func(ctx context.Context, key string) (bool, error) {
		v, err := redisRateAllowN.Run(ctx, rdb, []string{"{tg}:rate:" + key},
			l.Burst, l.Count, l.Period.Seconds(), 1).Slice()
		if err != nil {
			return false, err
		}
		return v[0].(int64) == 1, nil
	}
	// Every key exists before the measurements.
	for _, take := range []decide{gcra, incr, redisRate} {
		if _, err := runDecisions(ctx, keys, len(keys), take); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("many_keys", func(b *testing.B) {
		benchDecisions(b, rdb, keys, "evalsha", gcra, incr)
	})
	// One busy account: the decisions of a call share its key.
	b.Run("one_key", func(b *testing.B) {
		benchDecisions(b, rdb, keys[:1], "evalsha", gcra, incr)
	})
	// The same busy account on a store that leases its tokens ahead
	// (what storage redis runs): most decisions make no call.
	// Its own key and a burst of a billion: leases go through tokens
	// fast.
	leasing := ratelimit.NewRedis(rdb, "{tg}:rl:", ratelimit.WithLeases(20*time.Millisecond))
	big, err := ratelimit.NewLimit(1, time.Second, 1_000_000_000)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("one_key_leased", func(b *testing.B) {
		benchDecisions(b, rdb, []string{"leased"}, "evalsha", func(ctx context.Context, key string) (bool, error) {
			res, err := leasing.Take(ctx, key, big)
			return res.Allowed, err
		}, incr)
	})
	b.Run("baseline_incr", func(b *testing.B) {
		benchDecisions(b, rdb, keys, "incr", incr, nil)
	})
	b.Run("baseline_redis_rate", func(b *testing.B) {
		benchDecisions(b, rdb, keys, "evalsha", redisRate, incr)
	})
}

// decide is one call to Redis, telling whether the request passed.
type decide func(ctx context.Context, key string) (bool, error)

// benchDecisions times b.N calls of take from parallel goroutines and
// reports Redis's cost per call; with baseline, also the ratio to as many
// calls of baseline.
func benchDecisions(b *testing.B, rdb *goredis.Client, keys []string, cmd string, take, baseline decide) {
	ctx := context.Background()
	cpu0, stat0 := redisCPU(b, rdb), redisCmdStat(b, rdb, cmd)
	var refused, next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(redisBenchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(redisBenchKeys/7)) % len(keys)
		for pb.Next() {
			allowed, err := take(ctx, keys[i])
			if err != nil {
				b.Error(err)
				return
			}
			if !allowed {
				refused.Add(1)
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
	b.StopTimer()
	if n := refused.Load(); n > 0 {
		b.Fatalf("%d requests refused", n)
	}
	cpu := (redisCPU(b, rdb) - cpu0) / float64(b.N)
	stat := redisCmdStat(b, rdb, cmd).sub(stat0)
	b.ReportMetric(cpu*1e6, "redis-µs/decision")
	// A call may decide a batch of requests: the script's time is shared
	// by the decisions, whatever the calls.
	b.ReportMetric(stat.usec/float64(b.N), "redis-cmd-µs/decision")
	b.ReportMetric(float64(b.N)/max(stat.calls, 1), "decisions/call")
	if baseline == nil {
		return
	}
	// Up to 200,000 baseline calls: enough for a cost per call.
	n := min(b.N, 200_000)
	cpu0 = redisCPU(b, rdb)
	if _, err := runDecisions(ctx, keys, n, baseline); err != nil {
		b.Fatal(err)
	}
	if base := (redisCPU(b, rdb) - cpu0) / float64(n); base > 0 {
		b.ReportMetric(cpu/base, "cpu-x-incr")
	}
}

// runDecisions makes n calls of take over keys from as many goroutines as
// the benchmarks use and returns how many passed.
func runDecisions(ctx context.Context, keys []string, n int, take decide) (int64, error) {
	workers := redisBenchParallelism * 2
	var next, passed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				ok, err := take(ctx, keys[i%int64(len(keys))])
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				if ok {
					passed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return passed.Load(), firstErr
}

// redisCPU is the Redis server's CPU time so far, in seconds.
func redisCPU(b *testing.B, rdb *goredis.Client) float64 {
	b.Helper()
	fields := redisInfo(b, rdb, "cpu")
	var total float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(fields[f], 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %q", f, fields[f])
		}
		total += v
	}
	return total
}

// cmdStat is a command's line of INFO commandstats.
type cmdStat struct{ calls, usec float64 }

func (s cmdStat) sub(o cmdStat) cmdStat { return cmdStat{s.calls - o.calls, s.usec - o.usec} }

// redisCmdStat reads cmd's calls and time so far.
func redisCmdStat(b *testing.B, rdb *goredis.Client, cmd string) cmdStat {
	b.Helper()
	var s cmdStat
	// calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0
	for kv := range strings.SplitSeq(redisInfo(b, rdb, "commandstats")["cmdstat_"+cmd], ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "calls":
			s.calls, _ = strconv.ParseFloat(v, 64)
		case "usec":
			s.usec, _ = strconv.ParseFloat(v, 64)
		}
	}
	return s
}

// redisInfo reads one section of INFO as fields.
func redisInfo(b *testing.B, rdb *goredis.Client, section string) map[string]string {
	b.Helper()
	text, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}
