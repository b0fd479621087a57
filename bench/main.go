// Command bench is the load harness behind `make bench`. It builds
// taskgate and, with vegeta, over loopback only, measures in one run:
//
//   - the edge chain (api_key_auth, ip_allowlist, account_rate_limit, then
//     respond) against a bare respond: maximum throughput and latency,
//     alternating the two in short rounds so that a noisy machine weighs on
//     both alike;
//   - accounts at run time: the chain with requests cycling over many
//     dynamic accounts, created through the admin API, against the chain
//     with the one static account; how soon a revoked key is refused; and,
//     in the harness's own process, the rate limiter's heap per tracked
//     account with 1,000,000 accounts, against a plain map of the same keys;
//   - task creations through the chain and the task API, with storage bolt
//     (each 202 means the task is fsynced) and storage memory, against the
//     same POST answered by a bare respond, and this disk's raw fsync rate
//     measured in the same directory as the bolt file;
//   - tasks completed per second, against a source served by the harness
//     itself, and the create-to-complete latency at a fixed rate, measured
//     with the task API's long poll;
//   - webhook deliveries to a receiver served by the harness, which checks
//     every signature: deliveries per second, and the latency from a
//     task's completion, and from its creation sent, to its delivery at a
//     fixed rate; then deliveries
//     the receiver refuses (503) under a short retry policy: the server's
//     memory with all of them pending, attempts per second, how late
//     retries come against their policy, and how long all take to get
//     through once the receiver accepts them;
//   - redis mode, on a redis-server the harness starts: the edge chain of a
//     node with storage redis against its bare respond, next to the memory
//     server's, and Redis's CPU per rate-limit decision; task creations with
//     Redis as the store against bare; and how exactly an account's rate
//     limit holds under overload, on one node and round robin over three
//     nodes sharing the Redis (and on the memory server, one node);
//   - cluster phase, on a Redis Cluster of 3 masters the harness starts: a
//     node whose store is in 3 shards, its chain and creations against
//     its bare respond and against the single redis-server's, and how the
//     masters share Redis's CPU.
//
// Each storage runs in its own server process, so that no phase inherits
// another's tasks. Run it from the module root:
//
//	go run ./bench [-rounds 5] [-duration 2s] [-warmup 1s] [-workers 64] [-accounts 10000] [-create-rounds 3] [-tasks 20000] [-latency-rate 500]
//		[-webhook-tasks 10000] [-webhook-rate 200] [-retry-tasks 10000] [-retry-window 10s] [-profile dir]
//		[-redis=false] [-cluster=false] [-limit-rate 200] [-limit-burst 200] [-limit-duration 3s]
//
// The table goes to stdout and, as Markdown, to -out (bench/results/edge.md),
// next to a bar chart of the run's ratios against their baselines (edge.svg).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

// options are the harness's flags.
type options struct {
	rounds          int
	duration        time.Duration
	warmup          time.Duration
	workers         int
	timeout         time.Duration
	out             string
	profileDir      string
	profileSeconds  int
	bareHeaders     bool
	accounts        int
	createWorkers   int
	createMany      int
	headToHead      bool
	headToHeadOnly  bool
	createRounds    int
	h2hRounds       int
	concurrency     int
	fsyncDuration   time.Duration
	tasks           int
	tasksTimeout    time.Duration
	drainTimeout    time.Duration
	latencyRate     int
	latencyDuration time.Duration
	latencySample   int
	webhookTasks    int
	webhookRate     int
	webhookDuration time.Duration
	webhookWait     time.Duration
	retryTasks      int
	retryFirst      time.Duration
	retryMax        time.Duration
	retryGiveUp     time.Duration
	retryWindow     time.Duration
	redis           bool
	cluster         bool
	limitRate       int
	limitBurst      int
	limitDuration   time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "measured rounds per site; the sites alternate within each round")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "length of one measured round of one site")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load on each site before the first round")
	flag.IntVar(&o.workers, "workers", 64, "concurrent requests (vegeta workers, one keep-alive connection each)")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of one request")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results", "edge.md"), "Markdown file the table is written to, relative to the module root")
	flag.BoolVar(&o.bareHeaders, "bare-headers", true, "send bare the same requests as the chain, credential headers included (false: bare requests carry none, so the ratio also counts the cost of carrying the headers)")
	flag.IntVar(&o.accounts, "accounts", 10000, "dynamic accounts created through the admin API, whose requests the chain's comparison with the static account cycles over")
	flag.IntVar(&o.createWorkers, "create-workers", 32, "concurrent clients creating tasks")
	flag.BoolVar(&o.headToHead, "head-to-head", true, "measure bolt creations against memory creations head to head: two fresh servers up together, their rounds alternating")
	flag.BoolVar(&o.headToHeadOnly, "head-to-head-only", false, "measure bolt creations against memory creations head to head and nothing else; print the figures, write no report")
	flag.IntVar(&o.createMany, "create-workers-many", 128, "clients of a second measure of task creation per storage, where groups fill (0 skips it)")
	flag.IntVar(&o.createRounds, "create-rounds", 3, "measured rounds of task creation per storage, alternating with bare")
	flag.IntVar(&o.h2hRounds, "head-to-head-rounds", 5, "measured rounds per server of the head-to-head creations: its figure is the median of the rounds' ratios, steadier with more")
	flag.IntVar(&o.concurrency, "concurrency", 32, "workers of the task type (task_type concurrency)")
	flag.DurationVar(&o.fsyncDuration, "fsync-duration", time.Second, "length of the disk's raw fsync probe")
	flag.IntVar(&o.tasks, "tasks", 20000, "tasks created for the completion measure")
	flag.DurationVar(&o.tasksTimeout, "tasks-timeout", 20*time.Second, "most time spent creating the completion measure's tasks")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", time.Minute, "most time the completion measure waits, after its last creation, for every task to end")
	flag.IntVar(&o.latencyRate, "latency-rate", 500, "creations per second of the create-to-complete latency measure")
	flag.DurationVar(&o.latencyDuration, "latency-duration", 5*time.Second, "length of the create-to-complete latency measure")
	flag.IntVar(&o.latencySample, "latency-sample", 2, "long-poll every n-th task created in the latency measure")
	flag.IntVar(&o.webhookTasks, "webhook-tasks", 10000, "tasks created for the webhook delivery-rate measure")
	flag.IntVar(&o.webhookRate, "webhook-rate", 200, "creations per second of the completion-to-delivery latency measure")
	flag.DurationVar(&o.webhookDuration, "webhook-duration", 5*time.Second, "length of the completion-to-delivery latency measure")
	flag.DurationVar(&o.webhookWait, "webhook-wait", 90*time.Second, "most time each webhook measure waits for the receiver to get what it expects")
	flag.IntVar(&o.retryTasks, "retry-tasks", 10000, "tasks created for the webhook retry measure, each a delivery the receiver refuses")
	flag.DurationVar(&o.retryFirst, "retry-first", time.Second, "first retry delay of the retry measure's server (webhooks retry <first> <max> <give up>)")
	flag.DurationVar(&o.retryMax, "retry-max", 2*time.Second, "largest retry delay of the retry measure's server")
	flag.DurationVar(&o.retryGiveUp, "retry-give-up", 10*time.Minute, "give-up time of the retry measure's server: longer than the measure, so that every delivery gets through in the end")
	flag.DurationVar(&o.retryWindow, "retry-window", 10*time.Second, "how long the receiver goes on refusing after every delivery's first attempt, while attempts and their lateness are measured")
	flag.BoolVar(&o.cluster, "cluster", true, "with -redis, run the cluster phase too: a Redis Cluster of 3 masters the harness starts, and a node whose store is in 3 shards on it")
	flag.BoolVar(&o.redis, "redis", true, "run the redis mode phase, on a redis-server the harness starts (make deps installs it); false skips it")
	flag.IntVar(&o.limitRate, "limit-rate", 200, "requests per second of the limited account, whose rate limit the accuracy measure exceeds")
	flag.IntVar(&o.limitBurst, "limit-burst", 200, "burst of the limited account")
	flag.DurationVar(&o.limitDuration, "limit-duration", 3*time.Second, "length of each load of the limited account, as fast as -workers clients go")
	flag.StringVar(&o.profileDir, "profile", "", "if set, fetch the server's CPU and allocation profiles into this directory: after the rounds, under each load once more (chain, bare, create-memory, create-bolt, chain-redis, create-redis-1, and head to head create-h2h-bolt-N and create-h2h-memory-N .pprof and .allocs.pprof), and CPU profiles during the completion measure (tasks-bolt.pprof), the webhook delivery-rate measure (webhooks-bolt.pprof) and the retry window (webhook-retries.pprof)")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 5, "length of each profile, in seconds")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "bench: interrupted; server stopped")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	switch {
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case o.duration < 100*time.Millisecond:
		return errors.New("-duration must be at least 100ms")
	case o.warmup < 0:
		return errors.New("-warmup must not be negative")
	case o.workers < 1:
		return errors.New("-workers must be at least 1")
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	case o.profileSeconds < 1:
		return errors.New("-profile-seconds must be at least 1")
	case o.accounts < 1:
		return errors.New("-accounts must be at least 1")
	case o.createWorkers < 1:
		return errors.New("-create-workers must be at least 1")
	case o.createMany < 0:
		return errors.New("-create-workers-many must be 0 (skip) or more")
	case o.createRounds < 1 || o.h2hRounds < 1:
		return errors.New("-create-rounds and -head-to-head-rounds must be at least 1")
	case o.concurrency < 1 || o.concurrency > 10000:
		return errors.New("-concurrency must be 1 to 10000")
	case o.fsyncDuration < 100*time.Millisecond:
		return errors.New("-fsync-duration must be at least 100ms")
	case o.tasks < 1:
		return errors.New("-tasks must be at least 1")
	case o.tasksTimeout < time.Second || o.drainTimeout < time.Second:
		return errors.New("-tasks-timeout and -drain-timeout must be at least 1s")
	case o.latencyRate < 1:
		return errors.New("-latency-rate must be at least 1")
	case o.latencyDuration < time.Second:
		return errors.New("-latency-duration must be at least 1s")
	case o.latencySample < 1:
		return errors.New("-latency-sample must be at least 1")
	case o.webhookTasks < 1 || o.retryTasks < 1:
		return errors.New("-webhook-tasks and -retry-tasks must be at least 1")
	case o.webhookRate < 1:
		return errors.New("-webhook-rate must be at least 1")
	case o.webhookDuration < time.Second:
		return errors.New("-webhook-duration must be at least 1s")
	case o.webhookWait < time.Second:
		return errors.New("-webhook-wait must be at least 1s")
	case o.retryFirst <= 0 || o.retryMax < o.retryFirst || o.retryGiveUp <= 0:
		return errors.New("-retry-first, -retry-max and -retry-give-up must be positive, and -retry-max at least -retry-first")
	case o.retryWindow < time.Second:
		return errors.New("-retry-window must be at least 1s")
	case o.limitRate < 1 || o.limitBurst < 1:
		return errors.New("-limit-rate and -limit-burst must be at least 1")
	case o.limitDuration < time.Second:
		return errors.New("-limit-duration must be at least 1s")
	}
	return nil
}

// holdTimeout is the source timeout of the servers whose workers are
// parked on the holding source: longer than any phase.
const holdTimeout = 10 * time.Minute

// fastTimeout is the source timeout of the servers that run tasks.
const fastTimeout = 10 * time.Second

// retryAttemptTimeout bounds one webhook attempt of the retry measure: the
// receiver answers at once, so only a stuck server would reach it.
const retryAttemptTimeout = 5 * time.Second

// retryURLs is how many receiver URLs the second retry phase spreads its
// deliveries over.
const retryURLs = 10

// run builds taskgate, measures each phase against its own server,
// reports, and stops every server whatever happens.
func run(ctx context.Context, o options) (err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	// Before minutes of other phases.
	if o.redis && !o.headToHeadOnly {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return errNoRedis
		}
	}
	tmp, err := os.MkdirTemp("", "taskgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "taskgate")
	fmt.Fprintln(os.Stderr, "bench: building ./cmd/taskgate")
	if err := build(ctx, root, bin); err != nil {
		return err
	}

	if o.headToHeadOnly {
		return headToHeadOnly(ctx, o, bin, tmp)
	}

	res := &results{createWorkers: o.createWorkers, createMany: o.createMany, concurrency: o.concurrency, limitWorkers: o.workers, limitDuration: o.limitDuration}
	// The limiter's memory, in this process, before anything else runs in
	// it: no load's garbage or goroutines move its heap.
	if res.limiterMemory, err = measureLimiterMemory(); err != nil {
		return err
	}
	lm := res.limiterMemory
	fmt.Fprintf(os.Stderr, "bench: limiter memory, %s accounts: %.1f B/account (map[string]int64: %.1f B/entry) in %s\n",
		thousands(lm.accounts), lm.limiter, lm.baseline, lm.took.Round(time.Millisecond))

	src, err := startSource()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, src.stop()) }()

	var limited *limitConfig
	if o.redis {
		res.redis = &redisResult{}
		limited = &limitConfig{rate: o.limitRate, burst: o.limitBurst}
	}

	// The edge chain, then creations with storage memory, then dynamic
	// accounts: late, so that the figures before do not carry them. The
	// workers are parked on the holding source: creations alone use the
	// store.
	memory := serverConfig{name: "memory", storage: "memory", sourceURL: src.url + "/hold", sourceTimeout: holdTimeout, concurrency: o.concurrency, limited: limited}
	err = withServer(ctx, bin, filepath.Join(tmp, memory.name), memory, func(s *server) error {
		chain, bare := s.edgeTargets(o)
		defer chain.close()
		defer bare.close()
		var err error
		if res.edge, err = measurePair(ctx, s.cmd.Process.Pid, o.rounds, o.duration, o.warmup, chain, bare); err != nil {
			return err
		}
		create, barePost := s.createTargets(o)
		defer create.close()
		defer barePost.close()
		if res.createMemory, err = measurePair(ctx, s.cmd.Process.Pid, o.createRounds, o.duration, o.warmup, create, barePost); err != nil {
			return err
		}
		if res.createMemoryMany, err = s.measureCreateMany(ctx, o, nil); err != nil {
			return err
		}
		if o.profileDir != "" {
			if err := s.profile(ctx, o, chain, bare, create); err != nil {
				return err
			}
		}
		if res.accounts, err = measureAccounts(ctx, o, s, chain); err != nil {
			return err
		}
		if res.console, err = measureConsole(ctx, o, s, res.accounts.created+1); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		// The rate-limit accuracy of one node alone, the redis mode's
		// reference, once the rest is measured.
		if res.redis != nil {
			res.redis.limitMemory, err = measureAccuracy(ctx, o, "memory", []*server{s})
		}
		return err
	})
	if err != nil {
		return err
	}

	// This disk's raw fsync rate, in the directory of the bolt file,
	// before any server writes there.
	boltDir := filepath.Join(tmp, "bolt")
	if err := os.MkdirAll(boltDir, 0o700); err != nil {
		return err
	}
	res.fsType = fsType(boltDir)
	if res.fsyncs, err = fsyncRate(ctx, boltDir, o.fsyncDuration); err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: %.0f fsyncs/s in %s (%s)\n", res.fsyncs, boltDir, res.fsType)

	// Creations with storage bolt, the workers parked as above.
	bolt := serverConfig{name: "bolt", storage: boltStorage(boltDir), sourceURL: src.url + "/hold", sourceTimeout: holdTimeout, concurrency: o.concurrency}
	err = withServer(ctx, bin, boltDir, bolt, func(s *server) error {
		create, barePost := s.createTargets(o)
		defer create.close()
		defer barePost.close()
		create.observe = res.boltCommits.observe(s)
		var err error
		if res.createBolt, err = measurePair(ctx, s.cmd.Process.Pid, o.createRounds, o.duration, o.warmup, create, barePost); err != nil {
			return err
		}
		if res.createBoltMany, err = s.measureCreateMany(ctx, o, res.boltCommitsMany.observe(s)); err != nil {
			return err
		}
		if o.profileDir != "" {
			return s.profile(ctx, o, create)
		}
		return nil
	})
	if err != nil {
		return err
	}

	if o.headToHead {
		if err := measureHeadToHeads(ctx, o, bin, tmp, src, res); err != nil {
			return err
		}
	}

	// Tasks run: a fresh bolt file, the workers calling the fast source.
	tasksDir := filepath.Join(tmp, "bolt-tasks")
	tasks := serverConfig{name: "bolt-tasks", storage: boltStorage(tasksDir), sourceURL: src.url + "/fast", sourceTimeout: fastTimeout, concurrency: o.concurrency}
	err = withServer(ctx, bin, tasksDir, tasks, func(s *server) error {
		poll := newPoller(s, latencyMaxWorkers)
		defer poll.client.CloseIdleConnections()
		profiled := func() error { return nil }
		if o.profileDir != "" {
			profiled = s.profileCPU(ctx, o, "tasks-bolt")
		}
		var err error
		res.completion, err = measureCompletion(ctx, o, s, src, poll)
		if err = errors.Join(err, profiled()); err != nil {
			return err
		}
		c := res.completion
		fmt.Fprintf(os.Stderr, "bench: %d tasks created in %s, all ended after %s: %.0f completed/s\n",
			c.created, c.createSpan.Round(time.Millisecond), c.total.Round(time.Millisecond), c.completedRate())
		if res.latency, err = measureLatency(ctx, o, s, poll); err != nil {
			return err
		}
		l := res.latency
		fmt.Fprintf(os.Stderr, "bench: %d tasks created at %.0f/s, %d long-polled: create-to-complete p50 %s, p99 %s\n",
			l.created, l.rate(), len(l.complete), latency(quantile(l.complete, 0.5)), latency(quantile(l.complete, 0.99)))
		return nil
	})
	if err != nil {
		return err
	}

	// Webhooks: a fresh bolt file whose bench account has one signed
	// webhook to the receiver, the workers calling the fast source.
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rcv.stop()) }()
	hooksDir := filepath.Join(tmp, "bolt-webhooks")
	hooks := serverConfig{name: "bolt-webhooks", storage: boltStorage(hooksDir), sourceURL: src.url + "/fast", sourceTimeout: fastTimeout, concurrency: o.concurrency,
		webhook: &webhookConfig{url: rcv.url, secret: rcv.secret}}
	err = withServer(ctx, bin, hooksDir, hooks, func(s *server) error {
		var err error
		if res.webhooks, err = measureDeliveries(ctx, o, s, rcv); err != nil {
			return err
		}
		w := res.webhooks.outcome
		fmt.Fprintf(os.Stderr, "bench: %d tasks created, %d delivered (%d missing): %.0f deliveries/s, last %s after the last completion\n",
			res.webhooks.creation.created, w.delivered, w.missing, w.rate(), w.lastDelivered.Sub(w.lastCompleted).Round(time.Millisecond))
		if res.webhookLatency, err = measureDeliveryLatency(ctx, o, s, rcv); err != nil {
			return err
		}
		l := res.webhookLatency
		fmt.Fprintf(os.Stderr, "bench: %d tasks created at %.0f/s, %d delivered: completion-to-delivery p50 %s, p99 %s; create-to-webhook p50 %s, p99 %s\n",
			l.created, l.rate(), l.outcome.delivered, latency(quantile(l.outcome.latencies, 0.5)), latency(quantile(l.outcome.latencies, 0.99)),
			latency(quantile(l.createToWebhook, 0.5)), latency(quantile(l.createToWebhook, 0.99)))
		return nil
	})
	if err != nil {
		return err
	}

	// Retries: another fresh bolt file, the same webhook, a short retry
	// policy, and a receiver that refuses until told otherwise.
	policy := webhook.Policy{First: o.retryFirst, Max: o.retryMax, GiveUp: o.retryGiveUp, Timeout: retryAttemptTimeout}
	retriesDir := filepath.Join(tmp, "bolt-retries")
	retries := serverConfig{name: "bolt-retries", storage: boltStorage(retriesDir), sourceURL: src.url + "/fast", sourceTimeout: fastTimeout, concurrency: o.concurrency,
		webhook: &webhookConfig{url: rcv.url, secret: rcv.secret, retry: policy}}
	err = withServer(ctx, bin, retriesDir, retries, func(s *server) error {
		var err error
		if res.retries, err = measureRetries(ctx, o, s, rcv, policy, nil); err != nil {
			return err
		}
		r := res.retries
		fmt.Fprintf(os.Stderr, "bench: %d deliveries refused: all first attempts after %s; %.0f attempts/s over %s (on schedule: %.0f/s), retry lateness p50 %s, p99 %s; all delivered %s after the receiver turned to 204\n",
			r.created, r.firstAttempts.Round(time.Millisecond), r.attemptRate(), r.window.Round(time.Millisecond), r.scheduled,
			latency(quantile(r.lateness, 0.5)), latency(quantile(r.lateness, 0.99)), r.drain.Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return err
	}

	// The same over retryURLs URLs: as many accounts, a webhook each, the
	// tasks round robin over them.
	spreadDir := filepath.Join(tmp, "bolt-retries-spread")
	spread := retries
	spread.name, spread.storage, spread.tenants, spread.tenantHooks = "bolt-retries-spread", boltStorage(spreadDir), retryURLs, true
	err = withServer(ctx, bin, spreadDir, spread, func(s *server) error {
		_, create := s.tenantTargets(o, retryURLs)
		var err error
		if res.retriesSpread, err = measureRetries(ctx, o, s, rcv, policy, create); err != nil {
			return err
		}
		r := res.retriesSpread
		fmt.Fprintf(os.Stderr, "bench: %d deliveries to %d URLs refused: %.0f attempts/s over %s (on schedule: %.0f/s), retry lateness p50 %s, p99 %s; all delivered %s after the receiver turned to 204\n",
			r.created, retryURLs, r.attemptRate(), r.window.Round(time.Millisecond), r.scheduled,
			latency(quantile(r.lateness, 0.5)), latency(quantile(r.lateness, 0.99)), r.drain.Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return err
	}

	// Fair queues: the cost of accounts taking turns, then a light
	// account's wait behind a heavy one's backlog, each on a fresh bolt
	// file.
	res.fair = &fairResult{}
	fairDir := filepath.Join(tmp, "bolt-fair")
	fairCfg := serverConfig{name: "bolt-fair", storage: boltStorage(fairDir), sourceURL: src.url + "/fast", sourceTimeout: fastTimeout, concurrency: o.concurrency}
	err = withServer(ctx, bin, fairDir, fairCfg, func(s *server) error {
		if err := measureFairThroughput(ctx, o, s, src, res.fair); err != nil {
			return err
		}
		f := res.fair
		fmt.Fprintf(os.Stderr, "bench: fair queues: %.0f tasks completed/s with 1 account, %.0f with %d accounts (medians of %d)\n",
			median(f.oneAccount), median(f.manyAccounts), fairAccounts, fairRounds)
		return nil
	})
	if err != nil {
		return err
	}
	waitDir := filepath.Join(tmp, "bolt-fair-wait")
	waitCfg := serverConfig{name: "bolt-fair-wait", storage: boltStorage(waitDir), sourceURL: src.url + "/slow", sourceTimeout: fastTimeout, concurrency: fairConcurrency}
	err = withServer(ctx, bin, waitDir, waitCfg, func(s *server) error {
		if err := measureFairWait(ctx, o, s, src, res.fair); err != nil {
			return err
		}
		f := res.fair
		fmt.Fprintf(os.Stderr, "bench: fair queues: a light account's task, idle p50 %s; behind %d queued tasks of another account p50 %s, p99 %s (one queue for all: about %s)\n",
			latency(quantile(f.idle, 0.5)), f.backlogAhead, latency(quantile(f.behind, 0.5)), latency(quantile(f.behind, 0.99)), latency(f.fifoWait()))
		return nil
	})
	if err != nil {
		return err
	}

	// Redis mode, last: its redis-server writes its append-only file in
	// the temporary directory, where it cannot weigh on the bolt phases.
	if res.redis != nil {
		if err := measureRedis(ctx, o, bin, tmp, src, res.redis); err != nil {
			return fmt.Errorf("redis mode: %w", err)
		}
		if o.cluster {
			res.cluster = &clusterResult{}
			if err := measureCluster(ctx, o, bin, tmp, src, res.cluster); err != nil {
				return fmt.Errorf("cluster phase: %w", err)
			}
		}
	}

	table := res.table()
	fmt.Print(table)
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	finished := time.Now().UTC()
	chart := chartPath(out)
	if err := writeChart(chart, finished, res.ratios()); err != nil {
		return err
	}
	if err := writeReport(out, o, res, table, finished, filepath.Base(chart)); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "bench: wrote", out, "and", chart)
	if o.profileDir != "" {
		fmt.Fprintf(os.Stderr, "bench: compare with: go tool pprof -top -diff_base %s %s\n",
			filepath.Join(o.profileDir, "bare.pprof"), filepath.Join(o.profileDir, "chain.pprof"))
	}

	return errors.Join(
		res.edge.a.check("chain"), res.edge.b.check("bare"), res.accounts.check(),
		res.createMemory.a.check("memory creation"), res.createMemory.b.check("bare POST"),
		res.createBolt.a.check("bolt creation"), res.createBolt.b.check("bare POST"),
		res.createMemoryMany.check("memory creation"), res.createBoltMany.check("bolt creation"),
		res.checkHeadToHead(),
		res.completion.check(), res.latency.check(),
		res.webhooks.check(), res.webhookLatency.check(), res.retries.check(), res.retriesSpread.check(), res.fair.check(),
		res.redisCheck(),
	)
}

// boltStorage is the storage option of a bolt file in dir.
func boltStorage(dir string) string {
	return fmt.Sprintf("bolt %q", filepath.Join(dir, "tasks.db"))
}

// withServer starts a server of cfg in dir, waits until it answers, runs
// fn against it, and stops it whatever happens.
func withServer(ctx context.Context, bin, dir string, cfg serverConfig, fn func(*server) error) (err error) {
	srv, err := startServer(ctx, bin, dir, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	if err := srv.waitReady(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: server %s up (chain %s, bare %s, api %s, admin %s)\n",
		cfg.name, srv.chainURL(), srv.bareURL(), srv.apiURL(), srv.adminURL)
	return fn(srv)
}

// measureHeadToHeads measures creations head to head: a fresh memory
// server and a fresh bolt server up together, their creation rounds
// alternating, so that the machine's load and the servers' age (the
// memory store's heap grows with its tasks) fall on both alike.
func measureHeadToHeads(ctx context.Context, o options, bin, tmp string, src *source, res *results) error {
	h2hMemoryDir, h2hBoltDir := filepath.Join(tmp, "h2h-memory"), filepath.Join(tmp, "h2h-bolt")
	h2hMemory := serverConfig{name: "h2h-memory", storage: "memory", sourceURL: src.url + "/hold", sourceTimeout: holdTimeout, concurrency: o.concurrency}
	h2hBolt := serverConfig{name: "h2h-bolt", storage: boltStorage(h2hBoltDir), sourceURL: src.url + "/hold", sourceTimeout: holdTimeout, concurrency: o.concurrency}
	return withServer(ctx, bin, h2hMemoryDir, h2hMemory, func(memory *server) error {
		return withServer(ctx, bin, h2hBoltDir, h2hBolt, func(bolt *server) error {
			var err error
			if res.headToHead, err = measureHeadToHead(ctx, o, bolt, memory, o.createWorkers); err != nil {
				return err
			}
			printHeadToHead(o.createWorkers, res.headToHead)
			if o.createMany == 0 {
				return nil
			}
			if res.headToHeadMany, err = measureHeadToHead(ctx, o, bolt, memory, o.createMany); err != nil {
				return err
			}
			printHeadToHead(o.createMany, res.headToHeadMany)
			return nil
		})
	})
}

// headToHeadOnly runs the head-to-head measure alone (-head-to-head-only):
// its figures are printed, and its failed requests fail the run.
func headToHeadOnly(ctx context.Context, o options, bin, tmp string) (err error) {
	src, err := startSource()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, src.stop()) }()
	res := &results{}
	if err := measureHeadToHeads(ctx, o, bin, tmp, src, res); err != nil {
		return err
	}
	return res.checkHeadToHead()
}

// checkHeadToHead checks both head-to-head measures; nil passes one
// skipped.
func (r *results) checkHeadToHead() error {
	return errors.Join(
		r.headToHead.checkSites("head-to-head bolt creation", "head-to-head memory creation"),
		r.headToHeadMany.checkSites("head-to-head bolt creation", "head-to-head memory creation"))
}

// printHeadToHead prints a head-to-head measure's figures as it ends.
func printHeadToHead(workers int, p *pairResult) {
	cpu := func(s *siteResult) string {
		if server, client, ok := s.cpuPerRequest(); ok {
			return fmt.Sprintf("%.0fµs, client %.0fµs", float64(server)/float64(time.Microsecond), float64(client)/float64(time.Microsecond))
		}
		return "?"
	}
	fmt.Fprintf(os.Stderr, "bench: head to head, %d clients: bolt %.0f/s (%s CPU each), memory %.0f/s (%s): bolt ÷ memory %.2f\n",
		workers, p.a.medianThroughput(), cpu(&p.a), p.b.medianThroughput(), cpu(&p.b), p.pairedRatio())
}
