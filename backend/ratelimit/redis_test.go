package ratelimit

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/internal/redistest"
)

// testPrefix is the prefix production uses.
const testPrefix = "{tg}:rl:"

// newTestRedis starts a redis-server for the test and returns the store on
// it and a client to look at its keys.
func newTestRedis(t *testing.T) (*Redis, *goredis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	// No client-side deadlines: on a machine busy with other work a reply
	// can take longer than go-redis's default 3 s, and a test of decisions
	// must not turn that into a store failure (a Fallback would then decide
	// locally and admit more than the limit). Tests of failures stop the
	// server instead.
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ReadTimeout: -1, WriteTimeout: -1, PoolTimeout: time.Minute})
	t.Cleanup(func() { _ = rdb.Close() })
	// No test here restarts the server: spare them an fsync per write.
	if err := rdb.ConfigSet(context.Background(), "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	return NewRedis(rdb, testPrefix), rdb
}

// redisAt is the Redis store deciding at a fake clock's time instead of
// Redis's: the same script, given now.
type redisAt struct {
	r     *Redis
	clock *fakeClock
}

func (s redisAt) Take(ctx context.Context, key string, l Limit) (Result, error) {
	now := s.clock.Now().UnixNano()
	k := s.r.prefixOf(key) + key
	// The script lets a key expire when its TAT passes, on Redis's own
	// clock: with the fake one the TTL means nothing, and a test slowed
	// down past it (a busy machine; a TTL may be a millisecond) would find
	// its state gone. The fake clock's tests keep their keys: the expiry
	// is lifted in the same transaction as the decision.
	for loaded := false; ; loaded = true {
		var eval *goredis.Cmd
		_, err := s.r.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			eval = takeScript.EvalSha(ctx, p, []string{k}, takeArgs(l, []any{now / 1e9, now % 1e9})...)
			p.Persist(ctx, k)
			return nil
		})
		if err != nil && !loaded && goredis.HasErrorPrefix(eval.Err(), "NOSCRIPT") {
			if err := takeScript.Load(ctx, s.r.rdb).Err(); err != nil {
				return Result{}, err
			}
			continue
		}
		v, verr := eval.Int64Slice()
		if verr != nil {
			return Result{}, verr
		}
		return takeResult(v, l)
	}
}

// takeArgs are the script's arguments for one request under l at (seconds
// and nanoseconds).
func takeArgs(l Limit, at []any) []any {
	return appendLimit(append(append([]any{}, at...), 1, 0, 0, 0), l)
}

// takeResult reads the script's answer for a call of one request.
func takeResult(v []int64, l Limit) (Result, error) {
	if len(v) != 8 {
		return Result{}, errors.New("unexpected script reply")
	}
	return grantOf(v[:2], v[2:]).result(0, l), nil
}

func TestRedisConformance(t *testing.T) {
	testStore(t, func(t *testing.T, clock *fakeClock) Store {
		r, _ := newTestRedis(t)
		return redisAt{r, clock}
	})
}

func TestRedisBurstThenRefusal(t *testing.T) {
	r, _ := newTestRedis(t)
	l := mustLimit(t, "1/h", 5)
	if got := admitN(t, r, "a", l, 20); got != 5 {
		t.Fatalf("admitted %d, want the burst 5", got)
	}
	if got := admitN(t, r, "b", l, 20); got != 5 {
		t.Fatalf("another key: admitted %d, want its own burst 5", got)
	}
}

func TestRedisResultFields(t *testing.T) {
	r, _ := newTestRedis(t)
	// An hour per request: the time the test takes changes no decision,
	// and bounds how far the durations are below whole hours.
	l := mustLimit(t, "1/h", 3)
	ctx := context.Background()
	start := time.Now()
	// plausible tells whether d is want less the time since start (and a
	// millisecond for the clocks' resolutions).
	plausible := func(d, want time.Duration) bool {
		return d <= want && d > want-time.Since(start)-time.Millisecond
	}
	for i, wantRemaining := range []int64{2, 1, 0} {
		res, err := r.Take(ctx, "a", l)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Remaining != wantRemaining || res.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, wantRemaining)
		}
		if want := time.Duration(i+1) * time.Hour; !plausible(res.ResetAfter, want) {
			t.Fatalf("request %d: reset after %v, want just under %v", i, res.ResetAfter, want)
		}
	}
	res, err := r.Take(ctx, "a", l)
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed || res.Remaining != 0 || !plausible(res.RetryAfter, time.Hour) || !plausible(res.ResetAfter, 3*time.Hour) {
		t.Fatalf("refused request: %+v, want retry after just under 1h, reset after just under 3h", res)
	}
}

func TestRedisRefusedRequestsCostNothing(t *testing.T) {
	r, rdb := newTestRedis(t)
	ctx := context.Background()
	l := mustLimit(t, "1/h", 1)
	admitN(t, r, "a", l, 1)
	before, err := rdb.Get(ctx, testPrefix+"a").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := admitN(t, r, "a", l, 200); got != 0 {
		t.Fatalf("admitted %d past a spent burst", got)
	}
	if after := rdb.Get(ctx, testPrefix+"a").Val(); after != before {
		t.Fatalf("refused requests moved the TAT from %s to %s", before, after)
	}
}

func TestRedisKeyExpiresWithItsTAT(t *testing.T) {
	r, rdb := newTestRedis(t)
	ctx := context.Background()
	l := mustLimit(t, "1/h", 5)
	admitN(t, r, "a", l, 2)
	// One key per account, at prefix + key, gone when the TAT passes: two
	// hours from now.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != testPrefix+"a" {
		t.Fatalf("keys %q, want just %q", keys, testPrefix+"a")
	}
	ttl := rdb.PTTL(ctx, testPrefix+"a").Val()
	if ttl > 2*time.Hour || ttl < 2*time.Hour-time.Minute {
		t.Fatalf("TTL %v, want just under 2h", ttl)
	}
	// Each admission pushes the TTL one interval; the refusal after the
	// burst leaves it.
	admitN(t, r, "a", l, 3)
	admitN(t, r, "a", l, 1)
	if ttl := rdb.PTTL(ctx, testPrefix+"a").Val(); ttl > 5*time.Hour || ttl < 5*time.Hour-time.Minute {
		t.Fatalf("TTL %v after the burst, want just under 5h (the window)", ttl)
	}

	// A key of a millisecond's TAT vanishes: Redis tells of the expiry.
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatal(err)
	}
	sub := rdb.Subscribe(ctx, "__keyevent@0__:expired")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	fast := mustLimit(t, "1000/s", 1)
	admitN(t, r, "b", fast, 1)
	select {
	case msg := <-sub.Channel():
		if msg.Payload != testPrefix+"b" {
			t.Fatalf("expired %q, want %q", msg.Payload, testPrefix+"b")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("key of a passed TAT not expired within 10s, TTL %v", rdb.PTTL(ctx, testPrefix+"b").Val())
	}
}

// ttlSlack is how much shorter than a key's PX its PTTL may read, in
// the script's transaction: Redis's clock moves on between the two.
const ttlSlack = 250 * time.Millisecond

// TestRedisScriptEqualsDecide feeds the script and Decide the same random
// requests at the same times (to the nanosecond: the test gives the
// script its now) and wants the same results and the same stored TATs.
func TestRedisScriptEqualsDecide(t *testing.T) {
	_, rdb := newTestRedis(t)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x7a7e))

	limits := []Limit{
		mustLimit(t, "30/s", 0),
		mustLimit(t, "3/s", 5),
		mustLimit(t, "7/100ms", 1),
		mustLimit(t, "1000/s", 1000),
		mustLimit(t, "1/h", 1),
		mustLimit(t, "5/m", 2),
		mustLimit(t, "1000000000/s", 0), // one per nanosecond
		mustLimit(t, "3/s", 1<<20),
		// Windows beyond 2^53 ns (104 days), where a double loses
		// nanoseconds: 200 days and a century.
		mustLimit(t, "1/d", 200),
		mustLimit(t, "1/d", 36500),
	}
	keys := []string{"a", "b", "c"}
	limitOf := map[string]Limit{}
	model := map[string]int64{} // the TATs, as Memory keeps them
	now := int64(1_763_000_000_123_456_789)

	if err := takeScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	for step := range 10000 {
		key := keys[rng.IntN(len(keys))]
		l, ok := limitOf[key]
		if !ok || rng.IntN(20) == 0 {
			l = limits[rng.IntN(len(limits))]
			limitOf[key] = l
		}
		switch rng.IntN(7) {
		case 0, 1: // at the same instant
		case 2:
			now += rng.Int64N(int64(l.Interval())*2 + 1)
		case 3:
			now += rng.Int64N(int64(l.Interval())/3 + 1)
		case 4:
			// Whole microseconds, as TIME gives, or milliseconds: times
			// that carry exactly into the seconds.
			now += rng.Int64N(1000) * []int64{1e3, 1e6}[rng.IntN(2)]
		case 5:
			now += rng.Int64N(min(int64(l.Window()), int64(30*24*time.Hour)) + 1)
		case 6:
			now = (now/1e9 + 1) * 1e9 // the next whole second
		}

		wantTAT, want := Decide(model[key], now, l)
		if want.Allowed {
			model[key] = wantTAT
		}

		// The script and a look at its key in one transaction, with the
		// key's expiry lifted: the key would expire on Redis's clock, not
		// on the test's.
		k := testPrefix + key
		var eval *goredis.Cmd
		var pttl *goredis.DurationCmd
		var stored *goredis.StringCmd
		_, err := rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			eval = takeScript.EvalSha(ctx, p, []string{k}, takeArgs(l, []any{now / 1e9, now % 1e9})...)
			pttl = p.PTTL(ctx, k)
			p.Persist(ctx, k)
			stored = p.Get(ctx, k)
			return nil
		})
		if err != nil && err != goredis.Nil {
			t.Fatalf("step %d: %v", step, err)
		}
		v, err := eval.Int64Slice()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		got, err := takeResult(v, l)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if got != want {
			t.Fatalf("step %d: key %s, %v at %d after TAT %d: script %+v, Decide %+v",
				step, key, l, now, model[key], got, want)
		}
		if model[key] == 0 {
			if stored.Err() != goredis.Nil {
				t.Fatalf("step %d: stored TAT %q, want none", step, stored.Val())
			}
		} else if tat, err := strconv.ParseInt(stored.Val(), 10, 64); err != nil || tat != model[key] {
			t.Fatalf("step %d: stored TAT %q, want %d", step, stored.Val(), model[key])
		}
		if got.Allowed {
			// PX is the reset time rounded up to milliseconds. PTTL,
			// read after the script in the same transaction, is on
			// Redis's clock, which moves on between the two: by more
			// than a few milliseconds when the machine is busy.
			wantTTL := (got.ResetAfter + time.Millisecond - 1).Truncate(time.Millisecond)
			if d := pttl.Val(); d > wantTTL || d < wantTTL-ttlSlack {
				t.Fatalf("step %d: TTL %v, want %v", step, d, wantTTL)
			}
		}
	}
}

// TestRedisScriptBatchEqualsDecide checks calls of several entries, a key
// often more than once and under changing limits, each entry of one to
// five requests, against Decide made one request after the other at the
// call's instant: the script keeps a key's TAT between its entries and
// writes it once, as its last admission leaves it, with that admission's
// expiry. An entry may lease tokens too, once all its requests passed:
// taken as requests arriving at the end of the lease's life, from the
// later of it and the TAT, while they would pass at the call's instant.
func TestRedisScriptBatchEqualsDecide(t *testing.T) {
	_, rdb := newTestRedis(t)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0xba7c))
	limits := []Limit{mustLimit(t, "30/s", 0), mustLimit(t, "3/s", 5), mustLimit(t, "7/100ms", 1),
		mustLimit(t, "5/m", 2), mustLimit(t, "1000/s", 1000), mustLimit(t, "1/d", 200),
		mustLimit(t, "1/d", 36500), mustLimit(t, "1000000000/s", 0)}
	keys := []string{"a", "b", "c"}
	model := map[string]int64{}
	now := int64(1_763_000_000_123_456_789)
	for step := range 2000 {
		now += rng.Int64N(int64(200 * time.Millisecond))
		m := 1 + rng.IntN(8)
		batch := make([]string, m)
		counts := make([]int, m)
		leases := make([]int64, m)
		args := []any{now / 1e9, now % 1e9}
		want := make([][]Result, m)
		ls := make([]Limit, m)
		lastAllowed := map[string]Result{}
		for i := range batch {
			batch[i] = testPrefix + keys[rng.IntN(len(keys))]
			ls[i] = limits[rng.IntN(len(limits))]
			counts[i] = 1 + rng.IntN(5)
			ahead := []int64{0, 0, 1, 3, 10}[rng.IntN(5)]
			life := rng.Int64N(int64(50 * time.Millisecond))
			args = appendLimit(append(args, counts[i], ahead, life/1e9, life%1e9), ls[i])
			passed := 0
			for range counts[i] {
				tat, res := Decide(model[batch[i]], now, ls[i])
				if res.Allowed {
					model[batch[i]] = tat
					lastAllowed[batch[i]] = res
					passed++
				}
				want[i] = append(want[i], res)
			}
			if passed == counts[i] && ahead > 0 {
				// The lease's tokens start from the later of the end of
				// its life and the TAT, and pass while their TAT is at
				// most a window past now.
				l, tat := ls[i], max(model[batch[i]], now+life)
				for leases[i] < ahead && tat+int64(l.Interval()) <= now+int64(l.Window()) {
					tat += int64(l.Interval())
					leases[i]++
				}
				if leases[i] > 0 {
					model[batch[i]] = tat
					lastAllowed[batch[i]] = Result{Allowed: true, ResetAfter: time.Duration(tat - now)}
				}
			}
		}
		var eval *goredis.Cmd
		gets := map[string]*goredis.StringCmd{}
		pttls := map[string]*goredis.DurationCmd{}
		if _, err := rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			eval = takeScript.Eval(ctx, p, batch, args...)
			for _, k := range batch {
				if gets[k] != nil {
					continue
				}
				pttls[k] = p.PTTL(ctx, k)
				p.Persist(ctx, k)
				gets[k] = p.Get(ctx, k)
			}
			return nil
		}); err != nil && err != goredis.Nil {
			t.Fatalf("step %d: %v", step, err)
		}
		v, err := eval.Int64Slice()
		if err != nil || len(v) != 2+6*m {
			t.Fatalf("step %d: %v, %v", step, v, err)
		}
		if got := v[0]*1e9 + v[1]; got != now {
			t.Fatalf("step %d: the script's now is %d, want %d", step, got, now)
		}
		for i := range batch {
			g := grantOf(v[:2], v[2+6*i:8+6*i])
			if g.leased != leases[i] {
				t.Fatalf("step %d: entry %d of %d (key %s): %d leased, want %d", step, i+1, m, batch[i], g.leased, leases[i])
			}
			for j, w := range want[i] {
				if got := g.result(int64(j), ls[i]); got != w {
					t.Fatalf("step %d: entry %d of %d (key %s, %d requests), request %d: script %+v; Decide %+v",
						step, i+1, m, batch[i], counts[i], j+1, got, w)
				}
			}
		}
		for k, get := range gets {
			if model[k] == 0 {
				if get.Err() != goredis.Nil {
					t.Fatalf("step %d: key %s holds %q, want nothing", step, k, get.Val())
				}
				continue
			}
			if tat, err := strconv.ParseInt(get.Val(), 10, 64); err != nil || tat != model[k] {
				t.Fatalf("step %d: key %s holds %q, want %d", step, k, get.Val(), model[k])
			}
			if res, ok := lastAllowed[k]; ok {
				wantTTL := (res.ResetAfter + time.Millisecond - 1).Truncate(time.Millisecond)
				if d := pttls[k].Val(); d > wantTTL || d < wantTTL-ttlSlack {
					t.Fatalf("step %d: key %s TTL %v, want %v", step, k, d, wantTTL)
				}
			}
		}
	}
}

// TestRedisBatches sends 400 concurrent decisions over 4 keys, each limited
// to a burst of 25 per hour: exactly 25 of each key's 100 are admitted, as
// one at a time, while the decisions go to Redis in fewer calls than
// requests.
func TestRedisBatches(t *testing.T) {
	ctx := t.Context()
	r, rdb := newTestRedis(t)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	l := mustLimit(t, "25/h", 25)
	keys := []string{"a", "b", "c", "d"}
	admitted := takeAtOnce(t, r, keys, 400, l)
	for _, k := range keys {
		if admitted[k] != 25 {
			t.Errorf("key %s: %d admitted of 100, want 25", k, admitted[k])
		}
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := redistest.ScriptCalls(stats)
	t.Logf("400 decisions in %d script calls", calls)
	if calls == 0 || calls >= 400 {
		t.Errorf("%d script calls for 400 concurrent decisions, want fewer", calls)
	}
}

// TestRedisTakeGivesUp checks that a decision whose caller's context ends
// answers at once, whatever its batch does.
func TestRedisTakeGivesUp(t *testing.T) {
	r, _ := newTestRedis(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Take(ctx, "a", mustLimit(t, "1/s", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Take with a canceled context: %v, want context.Canceled", err)
	}
}

// TestRedisBadValue checks that a key holding something other than a TAT
// decides as a missing key, without failing the decisions it goes with.
func TestRedisBadValue(t *testing.T) {
	ctx := t.Context()
	r, rdb := newTestRedis(t)
	if err := rdb.Set(ctx, testPrefix+"bad", "not a time", 0).Err(); err != nil {
		t.Fatal(err)
	}
	l := mustLimit(t, "1/h", 1)
	for _, key := range []string{"bad", "good"} {
		if res, err := r.Take(ctx, key, l); err != nil || !res.Allowed {
			t.Errorf("Take(%s) = %+v, %v; want allowed", key, res, err)
		}
	}
}

// TestRedisCluster decides through a Redis Cluster of three masters: the
// prefix's hash tag keeps a batch's keys in one slot, so batches go to the
// master that holds it, and the counts stay exact.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t, 3)
	var addrs []string
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr())
	}
	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ReadTimeout: -1, WriteTimeout: -1, PoolTimeout: time.Minute})
	t.Cleanup(func() { _ = rdb.Close() })
	for _, prefix := range []string{"{tg}:rl:", "{other}:rl:"} {
		r := NewRedis(rdb, prefix)
		if r.queue(prefix) == nil {
			t.Fatalf("prefix %s: no batches on a cluster, want them (the prefix holds a hash tag)", prefix)
		}
		admitted := takeAtOnce(t, r, []string{"a", "b"}, 200, mustLimit(t, "25/h", 25))
		if admitted["a"] != 25 || admitted["b"] != 25 {
			t.Errorf("prefix %s: admitted %v of 100 each, want 25 each", prefix, admitted)
		}
	}
	if NewRedis(rdb, "rl:").queue("rl:") != nil {
		t.Error("a prefix without a hash tag batches on a cluster, whose keys may be in other slots")
	}
	// Keys spread over tags: each tag's decisions batch to its master.
	tags := map[string]string{"a": "{tg.0.1}:rl:", "b": "{tg.1.2}:rl:", "c": "{tg.2.0}:rl:"}
	r := NewRedisSharded(rdb, func(key string) string { return tags[key] })
	admitted := takeAtOnce(t, r, []string{"a", "b", "c"}, 300, mustLimit(t, "25/h", 25))
	for key := range tags {
		if admitted[key] != 25 {
			t.Errorf("sharded: admitted %v of 100 each, want 25 each", admitted)
			break
		}
		if n, err := rdb.Exists(t.Context(), tags[key]+key).Result(); err != nil || n != 1 {
			t.Errorf("sharded: key %s%s exists %d, %v; want it", tags[key], key, n, err)
		}
	}
}

// takeAtOnce sends n decisions under l from n goroutines at once, over
// keys in turn, and returns how many each key admitted.
func takeAtOnce(t *testing.T, r *Redis, keys []string, n int, l Limit) map[string]int {
	t.Helper()
	var mu sync.Mutex
	admitted := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			key := keys[i%len(keys)]
			res, err := r.Take(t.Context(), key, l)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				mu.Lock()
				admitted[key]++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return admitted
}
