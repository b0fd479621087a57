package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Collectors returns the engine's metrics, to be registered where the
// process exports metrics. They are process-wide, so counts go on across
// config reloads; label sets are bounded (task types from the config,
// never an account id or a key).
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{tasksCreated, tasksFinished, taskLatency, queueDepth, storeCommits,
		webhookAttempts, webhookDestinationsRefused, rateLimitDegraded, leasedTokens, leaseTokensLost, panicsRecovered, sourceRateLimitWaits, sourceStates, quotaRefusals}
}

// Task metrics. task_type takes the configured types only.
var (
	tasksCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "taskgate",
		Subsystem: "tasks",
		Name:      "created_total",
		Help:      "Tasks created, by task type.",
	}, []string{"task_type"})
	tasksFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "taskgate",
		Subsystem: "tasks",
		Name:      "finished_total",
		Help:      "Tasks that reached a terminal status, by task type and outcome (completed, rejected, source_down, internal_error).",
	}, []string{"task_type", "outcome"})
	taskLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "taskgate",
		Subsystem: "tasks",
		Name:      "latency_seconds",
		Help:      "Time from a task's creation to its end, by task type.",
		Buckets:   prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"task_type"})
	queueDepth = &queueCollector{desc: prometheus.NewDesc(
		"taskgate_tasks_queue_depth",
		"Tasks waiting for a worker, by task type.",
		[]string{"task_type"}, nil,
	)}
)

// rateLimitDegraded is 1 while the shared rate-limit store (redis) does
// not answer and on_store_error decides instead.
var rateLimitDegraded = prometheus.NewGauge(prometheus.GaugeOpts{
	Namespace: "taskgate",
	Subsystem: "rate_limit",
	Name:      "store_degraded",
	Help:      "1 while the shared rate-limit store does not answer and on_store_error decides instead, else 0.",
})

// leasedTokens and leaseTokensLost count the rate-limit tokens this
// process leased from Redis, and those lost unused
// (ratelimit.WithLeases).
var (
	leasedTokens = leaseCounter("leased_tokens_total",
		"Rate-limit tokens this node leased from Redis for a busy account's next requests (storage redis).",
		func(leased, _ uint64) uint64 { return leased })
	leaseTokensLost = leaseCounter("lease_tokens_lost_total",
		"Leased rate-limit tokens that expired unused: lost to the other nodes (storage redis).",
		func(_, lost uint64) uint64 { return lost })
)

// leaseCounter is a counter of ratelimit.LeaseTokens, which pick reads.
func leaseCounter(name, help string, pick func(leased, lost uint64) uint64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "taskgate", Subsystem: "rate_limit", Name: name, Help: help},
		func() float64 { return float64(pick(ratelimit.LeaseTokens())) })
}

// webhookAttempts counts delivery attempts by what became of the delivery.
var webhookAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "webhooks",
	Name:      "attempts_total",
	Help:      "Webhook delivery attempts, by event and result (delivered, retry, failed).",
}, []string{"event", "result"})

// webhookDestinationsRefused counts attempts refused by the egress policy.
var webhookDestinationsRefused = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "webhooks",
	Name:      "destinations_refused_total",
	Help:      "Webhook delivery attempts refused because their destination is loopback, private, another special-purpose address or the admin endpoint (DESTINATION_NOT_ALLOWED).",
})

// queueCollector reads the queue depth of each task type from the store of
// the running engine when scraped.
type queueCollector struct {
	desc    *prometheus.Desc
	current atomic.Pointer[queues]
}

// queues is what the collector reads: set whole at Start, cleared at Stop.
type queues struct {
	store task.Store
	types []string
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q := c.current.Load()
	if q == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range q.types {
		n, err := q.store.QueueDepth(ctx, name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), name)
	}
}

// storeCommits reads, from the store of the running engine when it has
// a writer that groups changes (bolt), its commits and the changes they
// held.
var storeCommits = &commitCollector{
	commits: prometheus.NewDesc("taskgate_store_commits_total",
		"Transactions the embedded store's writer committed (each synced to disk).", nil, nil),
	changes: prometheus.NewDesc("taskgate_store_changes_total",
		"Changes (creations, claims, records of attempts…) those transactions held: changes ÷ commits is how well group commit groups.", nil, nil),
	logSyncs: prometheus.NewDesc("taskgate_store_log_syncs_total",
		"Groups of creations the embedded store made durable in its creation log, each with one sync.", nil, nil),
	logged: prometheus.NewDesc("taskgate_store_logged_total",
		"Creations those groups held: logged ÷ log syncs is how many creations share one sync.", nil, nil),
}

type commitCollector struct{ commits, changes, logSyncs, logged *prometheus.Desc }

// committer is a store that counts its commits and its creation log's
// syncs.
type committer interface {
	Commits() (commits, changes uint64)
	LogSyncs() (syncs, logged uint64)
}

func (c *commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.commits
	ch <- c.changes
	ch <- c.logSyncs
	ch <- c.logged
}

func (c *commitCollector) Collect(ch chan<- prometheus.Metric) {
	q := queueDepth.current.Load()
	if q == nil {
		return
	}
	s, ok := q.store.(committer)
	if !ok {
		return
	}
	commits, changes := s.Commits()
	syncs, logged := s.LogSyncs()
	ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(commits))
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(changes))
	ch <- prometheus.MustNewConstMetric(c.logSyncs, prometheus.CounterValue, float64(syncs))
	ch <- prometheus.MustNewConstMetric(c.logged, prometheus.CounterValue, float64(logged))
}

// observeAttempt records a delivery attempt.
func observeAttempt(d *webhook.Delivery, a webhook.Attempt) {
	if a.Error == webhook.ErrorDestinationNotAllowed {
		webhookDestinationsRefused.Inc()
	}
	result := "retry"
	switch d.Status {
	case webhook.Delivered:
		result = "delivered"
	case webhook.Failed:
		result = "failed"
	}
	webhookAttempts.WithLabelValues(d.Event, result).Inc()
}

// observeFinish records a task's end.
func observeFinish(t *task.Task) {
	outcome := string(t.Status)
	if t.Status == task.Failed {
		outcome = "rejected"
		if t.Error != nil {
			switch *t.Error {
			case task.SourceDown:
				outcome = "source_down"
			case task.InternalError:
				outcome = "internal_error"
			}
		}
	}
	tasksFinished.WithLabelValues(t.TypeName(), outcome).Inc()
	if t.CompletedAt != nil {
		taskLatency.WithLabelValues(t.TypeName()).Observe(t.CompletedAt.Sub(t.CreatedAt).Seconds())
	}
}

// panicsRecovered counts the panics recovered while running a task
// (component "runner") or making a webhook attempt ("webhooks"): each is a
// bug, logged with its stack, that the node lived through. Both series
// exist from the start, so that an alert on their increase sees the first.
var panicsRecovered = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "taskgate",
		Name:      "panics_recovered_total",
		Help:      "Panics recovered while running a task (runner) or making a webhook attempt (webhooks).",
	}, []string{"component"})
	c.WithLabelValues("runner")
	c.WithLabelValues("webhooks")
	return c
}()

// observeTaskPanic counts a panic recovered while running a task.
func observeTaskPanic(*task.Task) { panicsRecovered.WithLabelValues("runner").Inc() }

// observeAttemptPanic counts a panic recovered during a webhook attempt.
func observeAttemptPanic(*webhook.Delivery) { panicsRecovered.WithLabelValues("webhooks").Inc() }

// sourceRateLimitWaits counts the times a task waited for its source's
// rate limit (task_type rate_limit).
var sourceRateLimitWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "sources",
	Name:      "rate_limit_waits_total",
	Help:      "Times a task waited for its source's rate limit (task_type rate_limit), by task type.",
}, []string{"task_type"})

// observeSourceWait counts a task waiting for its source's rate limit.
func observeSourceWait(t *task.Type) { sourceRateLimitWaits.WithLabelValues(t.Name()).Inc() }

// sourceStates reports each configured task type's source when scraped:
// its circuit breaker on this node and whether it is in a maintenance
// window.
var sourceStates = &sourceCollector{
	breaker: prometheus.NewDesc("taskgate_sources_breaker_state",
		"State of each task type's source's circuit breaker on this node: 0 closed, 1 half open (probing), 2 open (tasks fail SOURCE_DOWN at once).",
		[]string{"task_type"}, nil),
	maintenance: prometheus.NewDesc("taskgate_sources_maintenance",
		"1 while a task type's source is in a maintenance window (its tasks fail SOURCE_DOWN with the window's message), else 0.",
		[]string{"task_type"}, nil),
}

// sourceCollector reads the sources of the running engine.
type sourceCollector struct {
	breaker, maintenance *prometheus.Desc
	current              atomic.Pointer[Engine]
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.breaker
	ch <- c.maintenance
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.current.Load()
	if e == nil {
		return
	}
	now := time.Now()
	for name, t := range e.API.Types {
		state := 0.0
		switch e.Sources.BreakerState(t.Source) {
		case "half_open":
			state = 1
		case "open":
			state = 2
		}
		ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, state, name)
		_, down := e.Core.Maintenance.Active(name, now)
		ch <- prometheus.MustNewConstMetric(c.maintenance, prometheus.GaugeValue, map[bool]float64{false: 0, true: 1}[down], name)
	}
}

// quotaRefusals counts the creates refused because a quota of the account
// is spent, by task type and period (day, month): never an account id.
var quotaRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "quotas",
	Name:      "refusals_total",
	Help:      "Task creations refused with 429 QUOTA_EXCEEDED, by task type and quota period (day, month).",
}, []string{"task_type", "period"})
