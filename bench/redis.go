package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisFsync is the redis-server's appendfsync setting: the append-only
// file is fsynced once a second, so a 202 means Redis has the task in
// memory and in its file's page cache, not on disk.
const redisFsync = "everysec"

// redisNodes is how many taskgate nodes share the Redis in the accuracy
// measure's second run.
const redisNodes = 3

// redisLimitKey is where taskgate keeps the limited account's rate-limit
// state: its store's prefix, "rl:", then the account's id.
const redisLimitKey = "{tg}:rl:" + limitedAccount

// errNoRedis tells what to do when redis-server is not installed.
var errNoRedis = errors.New("redis-server not found in PATH: run `make deps` to install it, or pass -redis=false to skip the redis mode phase")

// redisServer is the redis-server process of the redis mode phase.
type redisServer struct {
	addr    string
	version string
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	exited  chan struct{} // closed when the process has exited
	waitErr error         // valid once exited is closed
	stopped bool
	logPath string
	// client reads the server's INFO and the limited account's key.
	client *goredis.Client
}

// startRedis starts redis-server on a free loopback port with its files in
// dir, and waits until it answers. It is stopped (SIGTERM, then killed)
// when ctx ends or stop is called.
func startRedis(ctx context.Context, dir string, extra ...string) (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedis
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, fmt.Errorf("choosing the redis port: %w", err)
	}
	r := &redisServer{
		addr:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		exited:  make(chan struct{}),
		logPath: filepath.Join(dir, "redis.log"),
	}
	srvCtx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.cmd = exec.CommandContext(srvCtx, path,
		"--port", strconv.Itoa(ports[0]),
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--dir", dir,
		"--logfile", r.logPath,
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", redisFsync,
		// No rewrite of the append-only file, which forks, in the middle
		// of a round.
		"--auto-aof-rewrite-percentage", "0",
		"--maxmemory-policy", "noeviction",
		// As docs/redis.md advises: task hashes, whose JSON is longer
		// than the default 64 bytes, stay compact.
		"--hash-max-listpack-value", "1024",
	)
	r.cmd.Args = append(r.cmd.Args, extra...)
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(syscall.SIGTERM) }
	r.cmd.WaitDelay = 5 * time.Second
	if err := r.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	r.client = goredis.NewClient(&goredis.Options{Addr: r.addr, MaxRetries: -1})
	if err := r.waitReady(ctx); err != nil {
		return nil, errors.Join(err, r.stop())
	}
	return r, nil
}

// url is the storage URL the nodes use.
func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

// waitReady pings the server until it answers, it exits, or the startup
// deadline passes; then reads its version.
func (r *redisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := r.client.Ping(ctx).Err()
		if err == nil {
			break
		}
		select {
		case <-tick.C:
		case <-r.exited:
			return fmt.Errorf("redis-server exited during startup: %v\n%s", r.waitErr, r.logTail())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("redis-server on %s did not answer within %s (last error: %v)\n%s", r.addr, startupTimeout, err, r.logTail())
			}
			return ctx.Err()
		}
	}
	info, err := r.client.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis INFO server: %w", err)
	}
	r.version = infoFields(info)["redis_version"]
	return nil
}

// stop ends the server (SIGTERM) and waits for it to exit. It reports an
// exit that came before it asked for one. Calls after the first do
// nothing.
func (r *redisServer) stop() error {
	if r.stopped {
		return nil
	}
	r.stopped = true
	_ = r.client.Close()
	select {
	case <-r.exited:
		return fmt.Errorf("redis-server exited before the end of the run: %v\n%s", r.waitErr, r.logTail())
	default:
	}
	r.cancel()
	<-r.exited
	return nil
}

// logTail returns the end of the server's log.
func (r *redisServer) logTail() string {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "redis-server log (tail):\n" + string(b)
}

// redisStats are the redis-server's counters the phase reads: its CPU
// time, all threads, and what EVALSHA (every taskgate script, the rate
// limit's among them) has cost so far.
type redisStats struct {
	// cpu is used_cpu_user + used_cpu_sys of INFO cpu.
	cpu time.Duration
	// evalshaCalls and evalshaTime are the calls and usec of
	// cmdstat_evalsha in INFO commandstats: the scripts' own run time.
	evalshaCalls int64
	evalshaTime  time.Duration
	// calls are the calls of every command in INFO commandstats, those
	// of scripts included (a script's commands count as Redis runs them).
	calls map[string]int64
}

func (s redisStats) sub(t redisStats) redisStats {
	return redisStats{cpu: s.cpu - t.cpu, evalshaCalls: s.evalshaCalls - t.evalshaCalls, evalshaTime: s.evalshaTime - t.evalshaTime,
		calls: mergeCalls(s.calls, t.calls, -1)}
}

func (s redisStats) add(t redisStats) redisStats {
	return redisStats{cpu: s.cpu + t.cpu, evalshaCalls: s.evalshaCalls + t.evalshaCalls, evalshaTime: s.evalshaTime + t.evalshaTime,
		calls: mergeCalls(s.calls, t.calls, 1)}
}

// mergeCalls returns a + sign × b, command by command.
func mergeCalls(a, b map[string]int64, sign int64) map[string]int64 {
	m := make(map[string]int64, len(a))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] += sign * v
	}
	return m
}

// perOp writes the commands Redis ran per operation (n of them), the most
// frequent first, those under 0.005 left out: "evalsha 0.130, hset 1.000".
func (s redisStats) perOp(n int64) string {
	if n <= 0 {
		return ""
	}
	names := make([]string, 0, len(s.calls))
	for k, v := range s.calls {
		if float64(v)/float64(n) >= 0.005 {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if s.calls[names[i]] != s.calls[names[j]] {
			return s.calls[names[i]] > s.calls[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %.3f", k, float64(s.calls[k])/float64(n))
	}
	return strings.Join(parts, ", ")
}

// perDecision returns the CPU time and EVALSHA's own time per decision,
// for the given number of decisions (a call decides a batch of them).
func (s redisStats) perDecision(decisions uint64) (cpu, script time.Duration, ok bool) {
	if s.evalshaCalls <= 0 || decisions == 0 {
		return 0, 0, false
	}
	n := time.Duration(decisions)
	return s.cpu / n, s.evalshaTime / n, true
}

// stats reads INFO cpu and INFO commandstats.
func (r *redisServer) stats(ctx context.Context) (redisStats, error) {
	info, err := r.client.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		return redisStats{}, fmt.Errorf("redis INFO cpu commandstats: %w", err)
	}
	f := infoFields(info)
	var s redisStats
	for _, name := range []string{"used_cpu_user", "used_cpu_sys"} {
		secs, err := strconv.ParseFloat(f[name], 64)
		if err != nil {
			return redisStats{}, fmt.Errorf("redis INFO cpu: %s: %q", name, f[name])
		}
		s.cpu += time.Duration(math.Round(secs*1e6)) * time.Microsecond
	}
	s.calls = map[string]int64{}
	for k, line := range f {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for kv := range strings.SplitSeq(line, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				if s.calls[name], err = strconv.ParseInt(v, 10, 64); err != nil {
					return redisStats{}, fmt.Errorf("redis INFO commandstats: %s: %q", k, line)
				}
			}
		}
	}
	// Absent until the first call.
	if line, ok := f["cmdstat_evalsha"]; ok {
		for kv := range strings.SplitSeq(line, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				s.evalshaCalls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				var usec int64
				usec, err = strconv.ParseInt(v, 10, 64)
				s.evalshaTime = time.Duration(usec) * time.Microsecond
			}
			if err != nil {
				return redisStats{}, fmt.Errorf("redis INFO commandstats: cmdstat_evalsha: %q", line)
			}
		}
	}
	return s, nil
}

// infoFields splits an INFO answer into its fields.
func infoFields(info string) map[string]string {
	f := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = v
		}
	}
	return f
}

// redisUsage sums the redis-server's counters over the rounds it
// observes (as a target's observe).
type redisUsage struct {
	r      *redisServer
	sum    redisStats
	rounds int
	err    error
}

func (u *redisUsage) observe(ctx context.Context) (after func()) {
	before, err := u.r.stats(ctx)
	return func() {
		now, err1 := u.r.stats(ctx)
		if err := errors.Join(err, err1); err != nil {
			u.err = errors.Join(u.err, err)
			return
		}
		u.sum = u.sum.add(now.sub(before))
		u.rounds++
	}
}

// waitKeyGone waits until key is no longer in Redis: a rate-limit key
// expires when its account's burst is whole again.
func (r *redisServer) waitKeyGone(ctx context.Context, key string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := r.client.Exists(ctx, key).Result()
		if err == nil && n == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("redis key %s still there after %s (last error: %v)", key, limit, err)
			}
			return ctx.Err()
		}
	}
}

// redisResult is what the redis mode phase measured.
type redisResult struct {
	// version is the redis-server's.
	version string
	// edge is the chain (a) against bare (b) on a node with storage
	// redis; decisions is Redis over its chain rounds, idle over its
	// bare rounds.
	edge            *pairResult
	decisions, idle redisUsage
	// create is task creations (a) against bare answering the same POST
	// (b) on that node; creations is Redis over the creation rounds.
	create    *pairResult
	creations redisUsage
	// createMany and creationsMany are the same with createMany clients
	// (createMany nil when skipped).
	createMany    *pairResult
	creationsMany redisUsage
	// limitMemory is the rate-limit accuracy on the memory server,
	// limitOne on the redis node alone, limitNodes round robin over
	// redisNodes nodes on the same Redis.
	limitMemory, limitOne, limitNodes *accuracyResult
	// edgeLeases and limitLeases are the rate-limit tokens the first node
	// leased and lost unused over its edge rounds (warm-up included), and
	// over its accuracy load alone.
	edgeLeases, limitLeases leaseCounts
}

// leaseCounts are a node's rate-limit lease counters, or their growth.
type leaseCounts struct{ leased, lost float64 }

// leases reads s's rate-limit lease counters.
func (s *server) leases(ctx context.Context) (leaseCounts, error) {
	v, err := s.metrics(ctx, "taskgate_rate_limit_leased_tokens_total", "taskgate_rate_limit_lease_tokens_lost_total")
	if err != nil {
		return leaseCounts{}, err
	}
	return leaseCounts{v[0], v[1]}, nil
}

func (r *redisResult) check() error {
	errs := []error{
		r.edge.a.check("redis chain"), r.edge.b.check("redis bare"),
		r.create.a.check("redis creation"), r.create.b.check("redis bare POST"),
		r.decisions.err, r.idle.err, r.creations.err, r.createMany.check("redis creation"), r.creationsMany.err,
	}
	for _, a := range []*accuracyResult{r.limitMemory, r.limitOne, r.limitNodes} {
		errs = append(errs, a.check())
	}
	return errors.Join(errs...)
}

// measureRedis runs the redis mode phase into res: a redis-server in
// dir/redis, a node on it in dir/redis-1 (chain against bare, creations
// against bare, the rate-limit accuracy alone), then redisNodes-1 more
// (the accuracy round robin over all), each stopped at the end, the
// redis-server last.
func measureRedis(ctx context.Context, o options, bin, dir string, src *source, res *redisResult) (err error) {
	rds, err := startRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rds.stop()) }()
	res.version = rds.version
	fmt.Fprintf(os.Stderr, "bench: redis-server %s up on %s (appendfsync %s)\n", rds.version, rds.addr, redisFsync)
	res.decisions.r, res.idle.r, res.creations.r, res.creationsMany.r = rds, rds, rds, rds

	node := func(i int) (string, serverConfig) {
		name := fmt.Sprintf("redis-%d", i)
		return filepath.Join(dir, name), serverConfig{name: name, storage: "redis " + rds.url(), sourceURL: src.url + "/hold",
			sourceTimeout: holdTimeout, concurrency: o.concurrency, limited: &limitConfig{rate: o.limitRate, burst: o.limitBurst}}
	}
	firstDir, first := node(1)
	return withServer(ctx, bin, firstDir, first, func(s *server) error {
		chain, bare := s.edgeTargets(o)
		defer chain.close()
		defer bare.close()
		chain.name, bare.name = "chain-redis", "bare-redis"
		chain.observe, bare.observe = res.decisions.observe, res.idle.observe
		var err error
		if res.edge, err = measurePair(ctx, s.cmd.Process.Pid, o.rounds, o.duration, o.warmup, chain, bare); err != nil {
			return err
		}
		if res.edgeLeases, err = s.leases(ctx); err != nil {
			return err
		}
		if cpu, script, ok := res.decisions.sum.perDecision(res.edge.a.requests); ok {
			fmt.Fprintf(os.Stderr, "bench: redis over the chain rounds: %d EVALSHA for %d chain requests, %s CPU and %s of script per decision\n",
				res.decisions.sum.evalshaCalls, res.edge.a.requests, micros(cpu), micros(script))
		}

		create, barePost := s.createTargets(o)
		defer create.close()
		defer barePost.close()
		create.observe = res.creations.observe
		if res.create, err = measurePair(ctx, s.cmd.Process.Pid, o.createRounds, o.duration, o.warmup, create, barePost); err != nil {
			return err
		}
		if res.createMany, err = s.measureCreateMany(ctx, o, res.creationsMany.observe); err != nil {
			return err
		}
		if o.profileDir != "" {
			create.observe, chain.observe = nil, nil
			if err := s.profile(ctx, o, chain, create); err != nil {
				return err
			}
		}

		// Nothing has used the limited account yet: its burst is whole.
		before, err := s.leases(ctx)
		if err != nil {
			return err
		}
		if res.limitOne, err = measureAccuracy(ctx, o, "redis", []*server{s}); err != nil {
			return err
		}
		after, err := s.leases(ctx)
		if err != nil {
			return err
		}
		res.limitLeases = leaseCounts{after.leased - before.leased, after.lost - before.lost}
		// The key must be there right after the load, or the wait below
		// would not wait for anything.
		if n, err := rds.client.Exists(ctx, redisLimitKey).Result(); err != nil || n != 1 {
			return fmt.Errorf("the limited account's rate-limit key %s is not in Redis after its load (%d, %v): has taskgate's key layout changed?", redisLimitKey, n, err)
		}

		// More nodes on the same Redis, each with its own ports.
		nodes := []*server{s}
		var more func(i int) error
		more = func(i int) error {
			if i > redisNodes {
				if err := rds.waitKeyGone(ctx, redisLimitKey, 10*time.Second); err != nil {
					return err
				}
				var err error
				res.limitNodes, err = measureAccuracy(ctx, o, "redis", nodes)
				return err
			}
			d, cfg := node(i)
			return withServer(ctx, bin, d, cfg, func(s *server) error {
				nodes = append(nodes, s)
				return more(i + 1)
			})
		}
		return more(2)
	})
}
