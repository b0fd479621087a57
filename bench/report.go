package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

// commitRow adds the row of a bolt server's group commits, labelled
// label, or why they could not be read.
func commitRow(row func(cells ...string), label string, c commitUsage) {
	switch {
	case c.err != nil:
		row(label, "not read: "+c.err.Error(), "", "")
	case c.commits > 0:
		row(fmt.Sprintf("%s (%.0f changes in %.0f commits, `taskgate_store_changes_total` ÷ `taskgate_store_commits_total`)", label, c.changes, c.commits),
			fmt.Sprintf("%.1f", c.changes/c.commits), "", "")
	}
	if c.err == nil && c.logSyncs > 0 {
		row(fmt.Sprintf("bolt creation log over the same rounds: creations per sync, each answered after its sync (%.0f creations in %.0f syncs, `taskgate_store_logged_total` ÷ `taskgate_store_log_syncs_total`)", c.logged, c.logSyncs),
			fmt.Sprintf("%.1f", c.logged/c.logSyncs), "", "")
	}
}

// results are the figures of a whole run.
type results struct {
	createWorkers, concurrency int
	// createMany is the clients of the second creation measure.
	createMany int
	// limitWorkers and limitDuration are the accuracy measure's load.
	limitWorkers  int
	limitDuration time.Duration
	// edge is the chain (a) against bare (b).
	edge *pairResult
	// accounts is the chain with many dynamic accounts against the static
	// one, and revocations.
	accounts *accountsResult
	// console is the console's accounts page against the admin API's
	// listing, after the accounts phase.
	console *consoleResult
	// limiterMemory is the rate limiter's heap per tracked account, in the
	// harness's process, against a plain map of the same keys.
	limiterMemory *limiterMemoryResult
	// createMemory and createBolt are task creations (a) against bare
	// answering the same POST (b), on a server with each storage.
	createMemory, createBolt *pairResult
	// createMemoryMany and createBoltMany are the same with createMany
	// clients (nil when skipped).
	createMemoryMany, createBoltMany *pairResult
	// headToHead and headToHeadMany are bolt creations (a) against memory
	// creations (b), two fresh servers up together, with createWorkers
	// and createMany clients (nil when skipped).
	headToHead, headToHeadMany *pairResult
	// boltCommits is the bolt server's commits over its creation rounds.
	boltCommits commitUsage
	// boltCommitsMany is the same over its createMany rounds.
	boltCommitsMany commitUsage
	// fsyncs is the disk's raw rate of append + fsync, in the bolt file's
	// directory, which is on fsType.
	fsyncs     float64
	fsType     string
	completion *completionResult
	latency    *latencyResult
	// webhooks and webhookLatency are deliveries to a receiver answering
	// 204; retries are deliveries it refused first.
	webhooks       *deliveryResult
	webhookLatency *deliveryLatencyResult
	retries        *retryResult
	// retriesSpread is the same over retryURLs URLs (as many accounts).
	retriesSpread *retryResult
	// fair is the fair-queue phases.
	fair *fairResult
	// redis is the redis mode phase; nil when -redis=false.
	redis *redisResult
	// cluster is the cluster phase; nil when -redis=false or
	// -cluster=false.
	cluster *clusterResult
}

// redisCheck checks the redis mode phase, when it ran.
func (r *results) redisCheck() error {
	if r.redis == nil {
		return nil
	}
	if r.cluster != nil {
		return errors.Join(r.redis.check(), r.cluster.check())
	}
	return r.redis.check()
}

// table renders the results as a Markdown table; the ratio column is
// chain/bare (below 1 for throughput and above 1 for latency means the chain
// costs something). Rows without a bare figure have their value in the
// chain column.
func (r *results) table() string {
	var b strings.Builder
	row := func(cells ...string) { fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | ")) }
	row("measure", "chain", "bare", "ratio chain/bare")
	row("---", "---:", "---:", "---:")
	e := r.edge
	ct, bt := e.a.medianThroughput(), e.b.medianThroughput()
	row(fmt.Sprintf("throughput req/s (median of %d)", e.rounds), fmt.Sprintf("%.0f", ct), fmt.Sprintf("%.0f", bt), ratio(ct, bt))
	row("throughput, median of the rounds' own ratios", "", "", fmt.Sprintf("%.2f", e.pairedRatio()))
	c50, b50 := e.a.p50(), e.b.p50()
	row("p50 latency", latency(c50), latency(b50), ratio(float64(c50), float64(b50)))
	c99, b99 := e.a.p99(), e.b.p99()
	row("p99 latency", latency(c99), latency(b99), ratio(float64(c99), float64(b99)))
	cpuRows(row, e, "request", true)
	row("responses (not 200)", fmt.Sprintf("%d (%d)", e.a.requests, e.a.failures()),
		fmt.Sprintf("%d (%d)", e.b.requests, e.b.failures()), "")

	a := r.accounts
	row(fmt.Sprintf("**accounts at run time**, %s created through the admin API in %s (%.0f/s); chain column: dynamic accounts, bare column: the static one",
		thousands(a.created), a.createSpan.Round(time.Millisecond), a.createRate()), "", "", "")
	dt, st := a.edge.a.medianThroughput(), a.edge.b.medianThroughput()
	row(fmt.Sprintf("edge chain, %s dynamic accounts vs 1 static: req/s, median of %d (ratio: of the medians / median of the rounds' own)", thousands(a.created), a.edge.rounds),
		fmt.Sprintf("%.0f", dt), fmt.Sprintf("%.0f", st), ratio(dt, st)+" / "+fmt.Sprintf("%.2f", a.edge.pairedRatio()))
	row(fmt.Sprintf("revocation → first rejection (403), p50 / max of %d: from the DELETE sent; from its answer", len(a.fromSent)),
		latency(quantile(a.fromSent, 0.5))+" / "+latency(quantile(a.fromSent, 1))+"; "+
			latency(quantile(a.fromAnswer, 0.5))+" / "+latency(quantile(a.fromAnswer, 1)), "", "")
	if c := r.console; c != nil {
		row(fmt.Sprintf("**console**, %s accounts: time to the last byte, p50 of %d loads one after the other; chain column: the console's first page of accounts (`taskgate_console`), bare column: the admin API's listing of them all (`GET /taskgate/accounts`), which the page is made from",
			thousands(c.accounts), len(c.page)),
			latency(quantile(c.page, 0.5)), latency(quantile(c.list, 0.5)), fmt.Sprintf("%.2f", c.ratio()))
		row("console: bytes of one answer (page; listing); a search by name, p50",
			fmt.Sprintf("%.1f KB", float64(c.pageBytes)/1000), fmt.Sprintf("%.1f KB", float64(c.listBytes)/1000), latency(quantile(c.search, 0.5))+" (search)")
		if len(c.paints) > 0 {
			row(fmt.Sprintf("console in headless chromium: first contentful paint from the navigation's start, p50 / best of %d loads in one tab, taking turns; chain column: the accounts page (budget: 100ms), bare column: the bare site's \"ok\", the browser's own floor (ratio: of the p50s)", len(c.paints)),
				latency(quantile(c.paints, 0.5))+" / "+latency(c.paints[0]), latency(quantile(c.barePaints, 0.5))+" / "+latency(c.barePaints[0]),
				fmt.Sprintf("%.2f", quantile(c.paints, 0.5).Seconds()/quantile(c.barePaints, 0.5).Seconds()))
		}
	}
	if lm := r.limiterMemory; lm != nil {
		row(fmt.Sprintf("rate limiter heap per tracked account, %s accounts each after one request (`ratelimit.NewMemory`, in the harness's process; heap growth ÷ accounts); bare column: a plain `map[string]int64` of the same keys, per entry",
			thousands(lm.accounts)), fmt.Sprintf("%.1f B", lm.limiter), fmt.Sprintf("%.1f B", lm.baseline), fmt.Sprintf("%.2f", lm.ratio()))
	}

	// creations gives the rows of one creation comparison of each
	// storage, bolt and memory.
	creations := func(bolt, memory *pairResult, clients int) {
		for _, c := range []struct {
			storage string
			p       *pairResult
		}{{"bolt", bolt}, {"memory", memory}} {
			at, bt := c.p.a.medianThroughput(), c.p.b.medianThroughput()
			row(fmt.Sprintf("creations/s, storage %s, %d clients (median of %d)", c.storage, clients, c.p.rounds), fmt.Sprintf("%.0f", at), fmt.Sprintf("%.0f", bt), ratio(at, bt))
			row(fmt.Sprintf("creations/s, storage %s, %d clients, median of the rounds' own ratios", c.storage, clients), "", "", fmt.Sprintf("%.2f", c.p.pairedRatio()))
			a50, b50 := c.p.a.p50(), c.p.b.p50()
			a99, b99 := c.p.a.p99(), c.p.b.p99()
			row(fmt.Sprintf("creation p50 / p99 latency, storage %s, %d clients", c.storage, clients), latency(a50)+" / "+latency(a99),
				latency(b50)+" / "+latency(b99), ratio(float64(a50), float64(b50))+" / "+ratio(float64(a99), float64(b99)))
			cpuRows(row, c.p, fmt.Sprintf("creation, storage %s, %d clients", c.storage, clients), false)
		}
		row(fmt.Sprintf("creations, storage bolt ÷ storage memory, %d clients: each server's creations/bare (median of the rounds' own ratios), the two divided", clients),
			fmt.Sprintf("%.2f ÷ %.2f", bolt.pairedRatio(), memory.pairedRatio()), "", ratio(bolt.pairedRatio(), memory.pairedRatio()))
		ba, ma := bolt.a.medianThroughput(), memory.a.medianThroughput()
		row(fmt.Sprintf("creations/s, storage bolt ÷ storage memory, %d clients, as measured (each server's median; the machine's load when each ran does not cancel out)", clients),
			fmt.Sprintf("%.0f ÷ %.0f", ba, ma), "", ratio(ba, ma))
	}
	row(fmt.Sprintf("**task creation**, %d clients, POST %s; bare answers the same POST", r.createWorkers, createPath), "", "", "")
	creations(r.createBolt, r.createMemory, r.createWorkers)
	row("disk fsyncs/s (128 B append + fsync in a loop, same directory)", fmt.Sprintf("%.0f", r.fsyncs), "", "")
	row("bolt creations/s ÷ the disk's fsyncs/s", ratio(r.createBolt.a.medianThroughput(), r.fsyncs), "", "")
	commitRow(row, "bolt group commit over the creation rounds: changes per commit", r.boltCommits)
	row("creations bolt, memory (not 202); bare (not 200)",
		fmt.Sprintf("%d (%d), %d (%d)", r.createBolt.a.requests, r.createBolt.a.failures(), r.createMemory.a.requests, r.createMemory.a.failures()),
		fmt.Sprintf("%d (%d)", r.createBolt.b.requests+r.createMemory.b.requests, r.createBolt.b.failures()+r.createMemory.b.failures()), "")
	if bolt, memory := r.createBoltMany, r.createMemoryMany; bolt != nil && memory != nil {
		row(fmt.Sprintf("**task creation, %d clients**, as above: as many clients as a busy API has, whose creations fill each group commit", r.createMany), "", "", "")
		creations(bolt, memory, r.createMany)
		commitRow(row, fmt.Sprintf("bolt group commit, %d clients: changes per commit", r.createMany), r.boltCommitsMany)
	}

	if r.headToHead != nil {
		row("**task creation head to head**: a fresh bolt server (chain column) and a fresh memory server (bare column) up together, their creation rounds alternating, so that the machine's load and the servers' age fall on both alike", "", "", "")
		headToHead := func(p *pairResult, clients int) {
			if p == nil {
				return
			}
			at, bt := p.a.medianThroughput(), p.b.medianThroughput()
			row(fmt.Sprintf("creations/s, bolt vs memory, %d clients (median of %d)", clients, p.rounds), fmt.Sprintf("%.0f", at), fmt.Sprintf("%.0f", bt), ratio(at, bt))
			row(fmt.Sprintf("creations/s, bolt ÷ memory, %d clients, median of the rounds' own ratios (each bolt round next to a memory round)", clients), "", "", fmt.Sprintf("%.2f", p.pairedRatio()))
			a50, b50 := p.a.p50(), p.b.p50()
			a99, b99 := p.a.p99(), p.b.p99()
			row(fmt.Sprintf("creation p50 / p99 latency, bolt vs memory, %d clients", clients), latency(a50)+" / "+latency(a99),
				latency(b50)+" / "+latency(b99), ratio(float64(a50), float64(b50))+" / "+ratio(float64(a99), float64(b99)))
			cpuRows(row, p, fmt.Sprintf("creation, bolt vs memory, %d clients (each its own process)", clients), false)
			row(fmt.Sprintf("creations bolt, memory, %d clients (not 202); the rounds' creations/s", clients),
				fmt.Sprintf("%d (%d); %s", p.a.requests, p.a.failures(), formatRounds(p.a.throughputs)),
				fmt.Sprintf("%d (%d); %s", p.b.requests, p.b.failures(), formatRounds(p.b.throughputs)), "")
		}
		headToHead(r.headToHead, r.createWorkers)
		headToHead(r.headToHeadMany, r.createMany)
	}

	c := r.completion
	row(fmt.Sprintf("**tasks run**, storage bolt, concurrency %d, source in the harness", r.concurrency), "", "", "")
	row(fmt.Sprintf("tasks completed/s (%d created by %d clients; first creation to all ended)", c.created, r.createWorkers),
		fmt.Sprintf("%.0f", c.completedRate()), "", "")
	row("creations/s meanwhile (workers running)", fmt.Sprintf("%.0f", c.createRate()), "", "")
	row(fmt.Sprintf("tasks completed/s after the last creation (%d left)", c.backlog), fmt.Sprintf("%.0f", c.drainRate()), "", "")
	l := r.latency
	row(fmt.Sprintf("create-to-complete p50 / p99 at %.0f creations/s (%d long-polled)", l.rate(), len(l.complete)),
		latency(quantile(l.complete, 0.5))+" / "+latency(quantile(l.complete, 0.99)), "", "")
	row("creation (202) p50 / p99 at that rate", latency(quantile(l.accept, 0.5))+" / "+latency(quantile(l.accept, 0.99)), "", "")
	row("tasks read back (not completed)", fmt.Sprintf("%d (%d)", c.checked+len(l.complete)+l.notCompleted, c.notCompleted+l.notCompleted), "", "")

	w := r.webhooks
	wo := w.outcome
	row("**webhooks**, storage bolt, one signed webhook to a receiver in the harness (answers 204, checks every signature)", "", "", "")
	row(fmt.Sprintf("deliveries/s (%d tasks created by %d clients; first completion to last delivery)", w.creation.created, r.createWorkers),
		fmt.Sprintf("%.0f", wo.rate()), "", "")
	row("tasks completed/s meanwhile (first to last completion)", fmt.Sprintf("%.0f", wo.completedRate()), "", "")
	row("last delivery after the last completion", latency(wo.lastDelivered.Sub(wo.lastCompleted)), "", "")
	row("completion-to-delivery p50 / p99 under that load", latency(quantile(wo.latencies, 0.5))+" / "+latency(quantile(wo.latencies, 0.99)), "", "")
	if cpu, ok := w.cpuPerTask(); ok {
		row("server CPU per task run and delivered", micros(cpu), "", "")
	}
	row("deliveries (duplicate ids, tasks twice, missing, bad signatures)", wo.summary(), "", "")
	wl := r.webhookLatency
	row(fmt.Sprintf("completion-to-delivery p50 / p99 at %.0f creations/s (%d delivered)", wl.rate(), wl.outcome.delivered),
		latency(quantile(wl.outcome.latencies, 0.5))+" / "+latency(quantile(wl.outcome.latencies, 0.99)), "", "")
	row(fmt.Sprintf("create-to-webhook p50 / p99 at %.0f creations/s (%d matched by request_id; from the creation sent to the delivery's arrival)", wl.rate(), len(wl.createToWebhook)),
		latency(quantile(wl.createToWebhook, 0.5))+" / "+latency(quantile(wl.createToWebhook, 0.99)), "", "")
	row("deliveries at that rate (duplicate ids, tasks twice, missing, bad signatures)", wl.outcome.summary(), "", "")

	r.retryRows(row, r.retries, "one URL")
	r.retryRows(row, r.retriesSpread, fmt.Sprintf("%d URLs (as many accounts, a webhook each, the tasks round robin over them)", retryURLs))

	if f := r.fair; f != nil && len(f.oneAccount) > 0 {
		one, many := median(f.oneAccount), median(f.manyAccounts)
		row(fmt.Sprintf("**fair queues**, storage bolt: accounts take turns within a task type; %d tasks a round, %d rounds each, alternating", fairTasks, fairRounds), "", "", "")
		row(fmt.Sprintf("tasks completed/s: %s accounts in turn (chain column) vs 1 account, whose queue is first-in first-out (bare column)", thousands(fairAccounts)),
			fmt.Sprintf("%.0f", many), fmt.Sprintf("%.0f", one), ratio(many, one))
		if len(f.idle) > 0 {
			row(fmt.Sprintf("a light account's task, create-to-complete p50 / p99 (%d, one at a time; source call %s, %d workers): behind %s queued tasks of a heavy account (chain column) vs an idle queue (bare column)",
				lightTasks, slowCall, fairConcurrency, thousands(f.backlogAhead)),
				latency(quantile(f.behind, 0.5))+" / "+latency(quantile(f.behind, 0.99)),
				latency(quantile(f.idle, 0.5))+" / "+latency(quantile(f.idle, 0.99)),
				ratio(float64(quantile(f.behind, 0.5)), float64(quantile(f.idle, 0.5))))
			row(fmt.Sprintf("the same task behind one first-in first-out queue for all accounts (backlog ÷ %.0f tasks/s drained)", f.drainRate), "≈ "+latency(f.fifoWait()), "", "")
		}
	}

	if r.redis != nil {
		r.redisRows(row)
	}
	if r.cluster != nil && r.redis != nil {
		r.clusterRows(row)
	}
	return b.String()
}

// clusterRows adds the cluster phase's section, each figure against the
// single redis-server's of the same run.
func (r *results) clusterRows(row func(...string)) {
	cl, rd := r.cluster, r.redis
	row(fmt.Sprintf("**cluster phase**, a Redis Cluster of %d masters started by the harness (as the redis mode's server, no replica); chain column: a node with `storage redis <cluster> { shards %d }` loaded round robin over %d accounts, bare column: its bare site",
		clusterMasters, clusterMasters, clusterTenants), "", "", "")
	e := cl.edge
	row(fmt.Sprintf("edge chain, cluster: req/s, median of %d", e.rounds),
		fmt.Sprintf("%.0f", e.a.medianThroughput()), fmt.Sprintf("%.0f", e.b.medianThroughput()), ratio(e.a.medianThroughput(), e.b.medianThroughput()))
	row("edge chain throughput, cluster ÷ one redis-server: each node's chain/bare (median of the rounds' own ratios), the two divided",
		fmt.Sprintf("%.2f ÷ %.2f", e.pairedRatio(), rd.edge.pairedRatio()), "", ratio(e.pairedRatio(), rd.edge.pairedRatio()))
	c := cl.create
	row(fmt.Sprintf("creations/s, cluster (median of %d)", c.rounds),
		fmt.Sprintf("%.0f", c.a.medianThroughput()), fmt.Sprintf("%.0f", c.b.medianThroughput()), ratio(c.a.medianThroughput(), c.b.medianThroughput()))
	row("creations, cluster ÷ one redis-server: each node's creations/bare (median of the rounds' own ratios), the two divided",
		fmt.Sprintf("%.2f ÷ %.2f", c.pairedRatio(), rd.create.pairedRatio()), "", ratio(c.pairedRatio(), rd.create.pairedRatio()))
	cpu, busiest := cl.creations.total()
	if c.a.requests > 0 && rd.create.a.requests > 0 && busiest > 0 {
		per := cpu / time.Duration(c.a.requests)
		one := rd.creations.sum.cpu / time.Duration(rd.create.a.requests)
		row("Redis CPU per creation, all masters together (chain column) and one redis-server (bare column)", micros(per), micros(one), ratio(float64(per), float64(one)))
		row(fmt.Sprintf("the busiest master's share of the masters' CPU over the creation rounds (an even spread over %d: %.2f; a store in one hash tag: 1)", clusterMasters, 1/float64(clusterMasters)),
			fmt.Sprintf("%.2f", busiest), "", "")
		// What one core per Redis process sustains: one redis-server
		// saturates at 1/one creations/s; the cluster when its busiest
		// master does.
		ceilCluster := 1 / (busiest * per.Seconds())
		ceilOne := 1 / one.Seconds()
		row("creations/s at one busy core per Redis process (1 ÷ CPU per creation; for the cluster, of its busiest master): cluster, one redis-server",
			fmt.Sprintf("%.0f", ceilCluster), fmt.Sprintf("%.0f", ceilOne), ratio(ceilCluster, ceilOne))
	}
	if _, dBusiest := cl.decisions.total(); dBusiest > 0 {
		row("the busiest master's share of the masters' CPU over the chain rounds (rate-limit decisions of the bench's accounts)", fmt.Sprintf("%.2f", dBusiest), "", "")
	}
}

// retryRows adds the section of a retry phase, its deliveries to where.
func (r *results) retryRows(row func(...string), rt *retryResult, where string) {
	if rt == nil {
		return
	}
	ro := rt.outcome
	row(fmt.Sprintf("**webhook retries**, %d deliveries to %s refused (503), `%s` (±%.0f %% jitter), `per_url %d`, dispatcher polls every %s",
		rt.created, where, retrySpec(rt.policy), webhook.Jitter*100, webhook.DefaultPerURL, webhook.DefaultPoll), "", "", "")
	firstAttempts := latency(rt.firstAttempts)
	if !rt.firstAttemptsDone {
		firstAttempts = "not within the wait"
	}
	row("every delivery's first attempt done (from the first completion)", firstAttempts, "", "")
	row("server memory: RSS (anonymous) / Go heap in use, idle → all pending → after the window",
		memoryCell(rt.idle, rt.pending, rt.windowEnd), "", "")
	row(fmt.Sprintf("attempts/s over %s after every first attempt (on schedule: ≈%.0f/s)", rt.window.Round(time.Millisecond), rt.scheduled),
		fmt.Sprintf("%.0f", rt.attemptRate()), "", "")
	if cores, ok := rt.cores(); ok {
		row("server CPU over that window (cores busy)", fmt.Sprintf("%.2f", cores), "", "")
	}
	row(fmt.Sprintf("retry lateness past its delay range, p50 / p99 / max (%d retries; %d early)", len(rt.lateness), rt.early),
		latency(quantile(rt.lateness, 0.5))+" / "+latency(quantile(rt.lateness, 0.99))+" / "+latency(quantile(rt.lateness, 1)), "", "")
	drain := "not within the wait"
	if rt.drained {
		drain = fmt.Sprintf("%s (%.0f/s)", latency(rt.drain), rt.drainRate())
	}
	row("all delivered after the receiver turned to 204", drain, "", "")
	row(fmt.Sprintf("deliveries (duplicate ids, tasks twice, missing, bad signatures; %d POSTs in all)", ro.attempts), ro.summary(), "", "")

}

// redisRows adds the redis mode section.
func (r *results) redisRows(row func(...string)) {
	rd := r.redis
	row(fmt.Sprintf("**redis mode**, storage redis on a redis-server %s started by the harness (appendonly yes, appendfsync %s); chain column: a node with storage redis, bare column: the same node's bare site",
		rd.version, redisFsync), "", "", "")
	e := rd.edge
	ct, bt := e.a.medianThroughput(), e.b.medianThroughput()
	row(fmt.Sprintf("edge chain, storage redis: req/s, median of %d (ratio: of the medians / median of the rounds' own)", e.rounds),
		fmt.Sprintf("%.0f", ct), fmt.Sprintf("%.0f", bt), ratio(ct, bt)+" / "+fmt.Sprintf("%.2f", e.pairedRatio()))
	row("edge chain p50 / p99 latency, storage redis", latency(e.a.p50())+" / "+latency(e.a.p99()), latency(e.b.p50())+" / "+latency(e.b.p99()),
		ratio(float64(e.a.p50()), float64(e.b.p50()))+" / "+ratio(float64(e.a.p99()), float64(e.b.p99())))
	cpuRows(row, e, "request, storage redis (taskgate process)", false)
	redisRatio, memoryRatio := e.pairedRatio(), r.edge.pairedRatio()
	row("edge chain throughput, storage redis ÷ storage memory: each server's chain/bare (median of the rounds' own ratios), the two divided; "+
		"each server is measured against the bare site of its own process in alternating rounds, so the machine's load when either ran cancels out",
		fmt.Sprintf("%.2f ÷ %.2f", redisRatio, memoryRatio), "", ratio(redisRatio, memoryRatio))
	if rs, _, ok := e.a.cpuPerRequest(); ok {
		if ms, _, ok := r.edge.a.cpuPerRequest(); ok {
			row("taskgate CPU per chain request, storage redis vs storage memory (chain column: redis, bare column: memory)",
				micros(rs), micros(ms), ratio(float64(rs), float64(ms)))
		}
	}
	d := rd.decisions.sum
	if cpu, script, ok := d.perDecision(e.a.requests); ok {
		row(fmt.Sprintf("Redis CPU per rate-limit decision: INFO cpu (user + sys) over the chain rounds ÷ chain requests (%s decisions in %s EVALSHA, %.1f a call; over the bare rounds, no decision, Redis used %s CPU)",
			thousands(int(e.a.requests)), thousands(int(d.evalshaCalls)), float64(e.a.requests)/float64(max(d.evalshaCalls, 1)), latency(rd.idle.sum.cpu)), micros(cpu), "", "")
		row("EVALSHA run time per decision over the chain rounds (INFO commandstats: the script's own time, shared by the decisions of a call)", micros(script), "", "")
		row("Redis commands per chain request (INFO commandstats over the chain rounds, a script's own commands included; under 0.005 left out)", d.perOp(int64(e.a.requests)), "", "")
		row("rate-limit tokens the node leased from Redis over its edge rounds and warm-up, and those lost unused (`taskgate_rate_limit_leased_tokens_total`, `taskgate_rate_limit_lease_tokens_lost_total`)",
			fmt.Sprintf("%.0f leased, %.0f lost", rd.edgeLeases.leased, rd.edgeLeases.lost), "", "")
	}

	// creations gives the rows of one creation comparison on the node.
	creations := func(c *pairResult, u redisUsage, clients int) {
		at, cbt := c.a.medianThroughput(), c.b.medianThroughput()
		row(fmt.Sprintf("creations/s, storage redis (median of %d; %d clients, workers parked; a 202 is acknowledged by Redis, fsynced within a second)", c.rounds, clients),
			fmt.Sprintf("%.0f", at), fmt.Sprintf("%.0f", cbt), ratio(at, cbt))
		row(fmt.Sprintf("creations/s, storage redis, %d clients, median of the rounds' own ratios", clients), "", "", fmt.Sprintf("%.2f", c.pairedRatio()))
		row(fmt.Sprintf("creation p50 / p99 latency, storage redis, %d clients", clients), latency(c.a.p50())+" / "+latency(c.a.p99()),
			latency(c.b.p50())+" / "+latency(c.b.p99()), ratio(float64(c.a.p50()), float64(c.b.p50()))+" / "+ratio(float64(c.a.p99()), float64(c.b.p99())))
		cpuRows(row, c, fmt.Sprintf("creation, storage redis, %d clients (taskgate process)", clients), false)
		if c.a.requests > 0 && u.err == nil {
			row(fmt.Sprintf("Redis CPU per creation, %d clients (INFO cpu over the creation rounds ÷ creations sent)", clients), micros(u.sum.cpu/time.Duration(c.a.requests)), "", "")
			if cs := u.sum; cs.evalshaCalls > 0 {
				row(fmt.Sprintf("EVALSHA run time per creation, %d clients, over the creation rounds (INFO commandstats: the scripts' own time, elapsed, so with any time Redis waited for a core; %.1f creations a call)",
					clients, float64(c.a.requests)/float64(cs.evalshaCalls)), micros(cs.evalshaTime/time.Duration(c.a.requests)), "", "")
			}
			row(fmt.Sprintf("Redis commands per creation, %d clients (INFO commandstats over the creation rounds, a script's own commands included; under 0.005 left out)", clients), u.sum.perOp(int64(c.a.requests)), "", "")
		}
		row(fmt.Sprintf("creations storage redis, %d clients (not 202); bare (not 200)", clients), fmt.Sprintf("%d (%d)", c.a.requests, c.a.failures()), fmt.Sprintf("%d (%d)", c.b.requests, c.b.failures()), "")
	}
	creations(rd.create, rd.creations, r.createWorkers)
	if rd.createMany != nil {
		creations(rd.createMany, rd.creationsMany, r.createMany)
	}

	l := rd.limitOne.limit
	row(fmt.Sprintf("rate-limit accuracy, account `%s` (`rate_limit %d/s burst %d`) from a whole burst, %d clients for %s round robin over the nodes: "+
		"admitted (2xx) / expected (burst + rate × elapsed, first request sent to last answered)", limitedAccount, l.rate, l.burst, r.limitWorkers, r.limitDuration), "", "", "")
	row("accuracy, storage memory, 1 node", rd.limitMemory.cell(), "", "")
	row("accuracy, storage redis, 1 node", rd.limitOne.cell(), "", "")
	row("rate-limit tokens that node leased over its accuracy load, and those lost unused", fmt.Sprintf("%.0f leased, %.0f lost", rd.limitLeases.leased, rd.limitLeases.lost), "", "")
	n := rd.limitNodes
	row(fmt.Sprintf("accuracy, storage redis, %d nodes", n.nodes), n.cell(), "", "")
	row(fmt.Sprintf("%d nodes each limiting on its own (as with storage memory) would have admitted over that elapsed time, computed: %d × expected", n.nodes, n.nodes),
		fmt.Sprintf("≈ %.0f (%d × %.1f)", float64(n.nodes)*n.expected(), n.nodes, n.expected()), "", "")
}

// memoryCell renders memory samples as "RSS (anon) / heap → …".
func memoryCell(samples ...memorySample) string {
	cells := make([]string, len(samples))
	for i, m := range samples {
		if m.err != nil {
			cells[i] = "n/a"
			continue
		}
		cells[i] = fmt.Sprintf("%s (%s) / %s", mib(m.rss), mib(m.anon), mib(m.heapInUse))
	}
	return strings.Join(cells, " → ")
}

// thousands writes n with a comma between groups of three digits: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	start := 0
	if n < 0 {
		start = 1
	}
	for i := len(s) - 3; i > start; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func mib(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// cpuRows adds the server's CPU per request of p, and the client's when
// client is set.
func cpuRows(row func(...string), p *pairResult, per string, client bool) {
	as, ac, ok := p.a.cpuPerRequest()
	if !ok {
		return
	}
	bs, bc, ok := p.b.cpuPerRequest()
	if !ok {
		return
	}
	row("server CPU per "+per, micros(as), micros(bs), ratio(float64(as), float64(bs)))
	if client {
		row("client CPU per "+per, micros(ac), micros(bc), ratio(float64(ac), float64(bc)))
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// latency writes d to the microsecond, or to the millisecond from a second
// up.
func latency(d time.Duration) string {
	if d >= time.Second || d <= -time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// writeReport writes the table, with the run's conditions (the run having
// finished at finished), a link to the chart (a path relative to path's
// directory) and each round's throughput, to path.
func writeReport(path string, o options, r *results, table string, finished time.Time, chart string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Edge chain, task creation, task runs and webhooks\n\n")
	bareHeaders := "bare requests carry no credentials"
	if o.bareHeaders {
		bareHeaders = "bare requests carry the same credential headers"
	}
	fmt.Fprintf(&b, "%s, %s %s/%s, %d CPUs shared by client, server and source; temporary directory on %s.\n\n",
		finished.Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.fsType)
	fmt.Fprintf(&b, "- Edge: %d rounds × %s per site after %s warm-up, %d workers, keep-alive, rate unbounded; %s.\n",
		o.rounds, o.duration, o.warmup, o.workers, bareHeaders)
	fmt.Fprintf(&b, "- Accounts at run time: on the edge's server, after its task creations, %d accounts created through the admin API (`POST /taskgate/accounts`) by %d clients over keep-alive connections, "+
		"each `{\"name\":\"bench-N\",\"rate_limit\":\"1000000000/s\",\"allow\":[\"127.0.0.1/32\"]}`; then the chain site loaded as for the edge, the requests cycling over every account's credentials, "+
		"in rounds alternating with the static bench account's. Then %d revocations, each of a fresh account's first key: one client sends requests with it back to back, one at a time, over one keep-alive connection; "+
		"once one is accepted the harness adds a second key, revokes the first (`DELETE …/keys/{id}`), and times the arrival of the first 403 from the DELETE sent and from its answer "+
		"(negative: the 403 came first), to within one request's round trip; it checks that no request sent after that answer was accepted, and that the second key works.\n",
		o.accounts, accountCreators, revocations)
	if lm := r.limiterMemory; lm != nil {
		fmt.Fprintf(&b, "- Rate limiter memory: in the harness's own process, before any server starts, as `BenchmarkMemoryPerAccount` (backend/ratelimit) does: %s account ids (`acct-N`) allocated first, "+
			"then `runtime.GC` and `HeapAlloc` before a `ratelimit.NewMemory(nil)` takes one request of each (`1/h burst 1`, so each stores its TAT) and after, the store kept alive; "+
			"the baseline, measured the same way over the same ids, is a plain `map[string]int64` filled without a size hint. Both took %s.\n",
			thousands(lm.accounts), lm.took.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "- Task creation: one server per storage; %d rounds × %s per site after %s warm-up, %d workers, rate unbounded; body `%s`. "+
		"The task type's workers are parked on a source that holds their calls, so the store serves creations alone. "+
		"With storage bolt every 202 means the task is fsynced; the fsync probe ran %s in the bolt file's directory just before.\n",
		o.createRounds, o.duration, o.warmup, o.createWorkers, createBody, o.fsyncDuration)
	if o.createMany > 0 {
		fmt.Fprintf(&b, "- Task creation, many clients: on the same servers right after (and on the redis node), the same rounds with %d clients, against bare with as many. "+
			"With few clients a store that groups its writes (bolt's commits, redis's script calls) waits on its disk or its calls with groups half empty; with many its groups fill.\n",
			o.createMany)
	}
	if o.headToHead {
		clients := fmt.Sprintf("%d clients", o.createWorkers)
		if o.createMany > 0 {
			clients += fmt.Sprintf(", then %d", o.createMany)
		}
		fmt.Fprintf(&b, "- Task creation head to head: after those, a fresh memory server and a fresh bolt server, both up, the same creations sent to one then the other in alternating rounds "+
			"(%d rounds × %s per server after %s warm-up, %s): each bolt round's creations/s divided by the memory round next to it, and the median of those ratios taken. "+
			"Each round's CPU time is its own server's, read once the server has had %s to finish what the round left (bolt stores the creations it logged within 50 ms). "+
			"The servers above each ran its creations at its own time, and the memory server after its edge rounds, its heap growing with every task it holds; here both face the same load and age alike.\n",
			o.h2hRounds, o.duration, o.warmup, clients, headToHeadSettle)
	}
	fmt.Fprintf(&b, "- Tasks run: a fresh server with storage bolt; the source, served by the harness on loopback, answers at once with a small JSON object and counts its calls. "+
		"Up to %d tasks created as fast as %d clients can (for at most %s); they have all ended when the source has been called for each and the long polls of the last %d created have answered. "+
		"Then %d creations/s for %s, %s long-polled (`wait=%d`) right after its 202: its latency runs from the creation sent to the long poll's answer.\n",
		o.tasks, o.createWorkers, o.tasksTimeout, lastPolled, o.latencyRate, o.latencyDuration, everyNth(o.latencySample), longPollSeconds)
	fmt.Fprintf(&b, "- Webhooks: a fresh server with storage bolt whose bench account has one webhook with a secret, to a receiver served by the harness on loopback that checks every "+
		"delivery's signature and timestamp as Standard Webhooks has it, and notes when each attempt arrived and the task's `completed_at` (same machine's clock). "+
		"Up to %d tasks created as fast as %d clients can; deliveries/s run from the earliest `completed_at` to the last delivery. Then %d creations/s for %s: "+
		"each delivery's latency runs from its task's `completed_at` to its arrival, and from its creation request sent (the `request_id` of the 202 matched to the delivered payload's) to its arrival. Each wait for the receiver is bounded by %s, and the receiver listens %s more for duplicates.\n",
		o.webhookTasks, o.createWorkers, o.webhookRate, o.webhookDuration, o.webhookWait, duplicateSettle)
	fmt.Fprintf(&b, "- Webhook retries: another fresh server with storage bolt, `webhooks { %s }`; the receiver answers 503 while up to %d tasks are created and run, "+
		"until every delivery has had its first attempt, then for %s more: memory is sampled (VmRSS and RssAnon from /proc, `go_memstats_heap_inuse_bytes` from the admin endpoint) "+
		"and each retry in that window is timed against the policy's delay range for its number (lateness: past the range's end, from the previous attempt's arrival). "+
		"Then the receiver answers 204 until every delivery has arrived.\n",
		retrySpec(r.retries.policy), o.retryTasks, o.retryWindow)
	if rd := r.redis; rd != nil {
		fmt.Fprintf(&b, "- Redis mode: a redis-server %s started by the harness on a free loopback port, its files in the temporary directory, with `--save \"\" --appendonly yes --appendfsync %s` "+
			"(each write reaches the append-only file before Redis answers, and is fsynced within a second: a crash of the machine, not of Redis alone, can lose the last second's tasks), `--auto-aof-rewrite-percentage 0` "+
			"(no rewrite, which forks, during a round), `--maxmemory-policy noeviction` and `--hash-max-listpack-value 1024` (as docs/redis.md advises); stopped at the end. "+
			"A node with `storage redis`, its workers parked on the holding source: its chain site against its bare site as for the edge (%d rounds × %s after %s warm-up, %d workers), "+
			"with `INFO cpu` and `INFO commandstats` read before and after each round (the chain's rounds count the decisions, the bare rounds what Redis does without any); "+
			"the derived redis ÷ memory divides its chain/bare by the memory server's, each a median of the rounds' own ratios. "+
			"Then task creations against bare as for bolt and memory (%d rounds). "+
			"Then the rate-limit accuracy: a second static account `%s` (`rate_limit %d/s burst %d`, its own key), idle before each load, loaded by %d clients as fast as they go for %s, "+
			"round robin over the nodes; 2xx are counted against burst + rate × elapsed, elapsed running from the first request sent to the last answered: an exact limit never passes it, and falls a request or two short (that span also holds the connections' set-up and the last answers' way back). "+
			"Loads: on the memory server, after its accounts phase; on the redis node alone; then, once the limit's key has expired in Redis, round robin over that node and %d more started on the same Redis, "+
			"each with its own ports and admin endpoint. A node falling back to its own limit (`on_store_error local`) logs it; the cell says so when one did.\n",
			rd.version, redisFsync, o.rounds, o.duration, o.warmup, o.workers, o.createRounds,
			limitedAccount, o.limitRate, o.limitBurst, o.workers, o.limitDuration, redisNodes-1)
	}
	fmt.Fprintf(&b, "\n![ratios](%s)\n\n", chart)
	b.WriteString(table)
	fmt.Fprintf(&b, "\nThroughput of each round (req/s): chain %s; bare %s. Chain with dynamic accounts %s; with the static one %s.\n",
		formatRounds(r.edge.a.throughputs), formatRounds(r.edge.b.throughputs),
		formatRounds(r.accounts.edge.a.throughputs), formatRounds(r.accounts.edge.b.throughputs))
	fmt.Fprintf(&b, "Creations/s of each round: bolt %s (bare %s); memory %s (bare %s).\n",
		formatRounds(r.createBolt.a.throughputs), formatRounds(r.createBolt.b.throughputs),
		formatRounds(r.createMemory.a.throughputs), formatRounds(r.createMemory.b.throughputs))
	if rd := r.redis; rd != nil {
		fmt.Fprintf(&b, "Redis mode, req/s of each round: chain %s; bare %s. Creations/s: %s (bare %s).\n",
			formatRounds(rd.edge.a.throughputs), formatRounds(rd.edge.b.throughputs),
			formatRounds(rd.create.a.throughputs), formatRounds(rd.create.b.throughputs))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// everyNth says "every task", "every 2nd task", "every 3rd task"…
func everyNth(n int) string {
	suffix := "th"
	switch {
	case n == 1:
		return "every task"
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("every %d%s task", n, suffix)
}

func formatRounds(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}
