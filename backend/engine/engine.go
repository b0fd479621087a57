// Package engine assembles taskgate: from a Config and an open Core it
// builds the parts — accounts, rate limit, task service, runner, sources,
// webhook sender and dispatcher, the client API and the admin API — joins
// them, and starts and stops them in order. It is plain Go: the Caddy
// adapter (package caddymodule) turns Caddy's config and lifecycle into
// calls here, and tests drive it directly.
//
// Start-up: OpenCore (the store, dynamic accounts, usage meter, notices),
// then New (every part, no goroutine yet), then Start (the runner and the
// dispatcher). Shutdown is the other way: Stop (workers end; tasks and
// deliveries cut short run again, at least once), then, when no engine
// uses it any more, Core.Close (the last usage counts are written, the
// store closes).
package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/source"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/buildinfo"
)

// Config is one configuration of the engine, defaults applied by the
// caller (the adapter) or by the parts themselves.
type Config struct {
	// Accounts are the static accounts (built with account.Build).
	Accounts []*account.Account
	// DefaultLimit is the rate limit of accounts that set none.
	DefaultLimit ratelimit.Limit
	// TaskTypes are the configured task types and their sources.
	TaskTypes []*task.Type
	// SyncTimeout bounds a synchronous call's wait for its task.
	SyncTimeout time.Duration
	// Retention is how long finished tasks are kept.
	Retention time.Duration
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64
	// BodyTimeout bounds the arrival of a task request's body.
	BodyTimeout time.Duration
	// Webhooks is the webhook delivery policy.
	Webhooks WebhooksConfig
	// Logger receives the engine's logs (named parts below it).
	Logger *zap.Logger
}

// WebhooksConfig is how webhooks are delivered.
type WebhooksConfig struct {
	// Policy is the retry policy and the attempt timeout.
	Policy webhook.Policy
	// Sender carries the egress settings (proxy, source address); the
	// engine sets its timeout, User-Agent, egress policy and logger.
	Sender webhook.SenderConfig
	// Egress decides which destinations webhooks may reach.
	Egress *egress.Policy
	// PerURL bounds the attempts in flight to one URL (0: the default).
	PerURL int
	// NoSelfService stops accounts from changing their webhook endpoints
	// through the client API.
	NoSelfService bool
	// DisableAfter is how long every attempt at an endpoint may fail
	// before it is disabled; 0: never (a 410 Gone still disables it).
	DisableAfter time.Duration
}

// Engine is one configuration of taskgate, running on a Core. Its parts
// are named so that the adapter's handlers can each hold the one they
// need.
type Engine struct {
	// Core is the state that outlives the configuration.
	Core *Core
	// Accounts authenticates requests and looks accounts up: the static
	// ones, then the dynamic ones.
	Accounts *account.Registry
	// DefaultLimit is the rate limit of accounts that set none.
	DefaultLimit ratelimit.Limit
	// Limiter decides each request of an account under its limit.
	Limiter ratelimit.Store
	// Tasks creates tasks and waits for them.
	Tasks *task.Service
	// Quotas spends the units of the accounts' quotas, and lists those a
	// task gives back.
	Quotas *quota.Book
	// Runner runs queued tasks against their sources.
	Runner *task.Runner
	// Sources calls the sources.
	Sources *source.Client
	// Sender makes webhook delivery attempts.
	Sender *webhook.Sender
	// Dispatcher attempts due deliveries and records the outcomes.
	Dispatcher *webhook.Dispatcher
	// API serves the client API (/v3/…) for an authenticated account.
	API *api.API
	// Admin serves the admin API (/taskgate/…).
	Admin *admin.Handler
	// Endpoints manages the accounts' webhook endpoints, for both APIs.
	Endpoints *endpoints.Service

	logger *zap.Logger
	queues *queues
	// typeNames are the names of its task types, which the node tells in
	// its beats while this engine is the latest running.
	typeNames   []string
	stopWorkers context.CancelFunc
	workers     sync.WaitGroup
}

// Validate checks the configuration without opening anything: the static
// accounts (ids once each, their task types configured), the task types
// (each valid, once each) and the webhook policy.
func (c *Config) Validate() error {
	if _, err := account.NewRegistry(account.RegistryConfig{Static: c.Accounts}); err != nil {
		return err
	}
	names := make(map[string]bool, len(c.TaskTypes))
	for _, t := range c.TaskTypes {
		if err := t.Validate(); err != nil {
			return err
		}
		if names[t.Name()] {
			return fmt.Errorf("task_type %s: defined more than once", t.Name())
		}
		names[t.Name()] = true
	}
	for _, acct := range c.Accounts {
		for _, name := range acct.TaskTypes {
			if !names[name] {
				return fmt.Errorf("account %s: task type %s is not defined by a task_type", acct.ID, name)
			}
		}
		for _, q := range acct.Quotas {
			for _, name := range q.TaskTypes {
				if !names[name] {
					return fmt.Errorf("account %s: quota %s: task type %s is not defined by a task_type", acct.ID, q, name)
				}
			}
		}
		for _, w := range acct.Webhooks {
			for _, name := range w.Types {
				if !names[name] {
					return fmt.Errorf("account %s: webhook %s: task type %s is not defined by a task_type", acct.ID, w.URL, name)
				}
			}
		}
	}
	return c.Webhooks.Policy.WithDefaults().Validate()
}

// sharedRecheck is how often, with a shared store, a long poll or sync
// call reads its task again in case the notice of its end was lost.
const sharedRecheck = 2 * time.Second

// New builds the engine of cfg on core, deciding rate limits with limiter.
// Nothing runs until Start.
func New(core *Core, limiter ratelimit.Store, cfg Config) (*Engine, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	e := &Engine{Core: core, DefaultLimit: cfg.DefaultLimit, Limiter: limiter, logger: logger}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	if e.Accounts, err = account.NewRegistry(account.RegistryConfig{Static: cfg.Accounts, Dynamic: core.Dynamic}); err != nil {
		return nil, err
	}
	for _, acct := range cfg.Accounts {
		if _, ok := core.Dynamic.Lookup(acct.ID); ok {
			logger.Warn("a static account hides the dynamic account of the same id: its keys do not work here, and the admin API cannot change it; give the static account another id, or disable the dynamic one from a node without it",
				zap.String("account_id", acct.ID))
		}
	}
	byName := make(map[string]*task.Type, len(cfg.TaskTypes))
	typeNames := make(map[string]bool, len(cfg.TaskTypes))
	for _, t := range cfg.TaskTypes {
		byName[t.Name()], typeNames[t.Name()] = t, true
	}

	userAgent := buildinfo.UserAgent()
	e.Sources = source.NewClient(source.ClientConfig{UserAgent: userAgent})
	e.Runner = task.NewRunner(task.RunnerConfig{
		Store:   core.Store,
		Hub:     core.Hub,
		Caller:  e.Sources,
		Types:   cfg.TaskTypes,
		Logger:  logger.Named("runner"),
		Limiter: limiter,
		Maintenance: func(taskType string, at time.Time) (string, bool) {
			w, ok := core.Maintenance.Active(taskType, at)
			if !ok {
				return "", false
			}
			return w.Message, true
		},
	})
	e.Runner.Retention = cfg.Retention
	e.typeNames = slices.Collect(maps.Keys(typeNames))
	e.Runner.Elsewhere = e.runElsewhere
	e.Runner.Deliveries = e.deliveries
	e.Runner.Refund = e.refund
	e.Runner.OnFinish = e.taskFinished
	e.Runner.OnPanic = observeTaskPanic
	e.Runner.OnSourceWait = observeSourceWait

	sender := cfg.Webhooks.Sender
	sender.UserAgent, sender.Timeout = userAgent, cfg.Webhooks.Policy.Timeout
	sender.Egress, sender.Logger = cfg.Webhooks.Egress, logger.Named("webhooks")
	e.Sender = webhook.NewSender(sender)
	e.Dispatcher = webhook.NewDispatcher(webhook.DispatcherConfig{
		Store:     core.Store,
		Sender:    e.Sender,
		Resolve:   e.resolveWebhook,
		Policy:    cfg.Webhooks.Policy,
		Logger:    logger.Named("webhooks"),
		OnAttempt: observeAttempt,
		OnPanic:   observeAttemptPanic,
		PerURL:    cfg.Webhooks.PerURL,
		Health: func(d *webhook.Delivery, a webhook.Attempt, now time.Time) *webhook.Disabled {
			return e.Endpoints.Health(d, a, now)
		},
	})

	e.Quotas = quota.NewBook(quota.BookConfig{Store: core.Store})
	e.Tasks = task.NewService(task.ServiceConfig{Store: core.Store, Hub: core.Hub, Created: e.taskCreated, Quotas: e.Quotas})
	if core.Shared() {
		// Task end notices from other nodes may be lost (Pub/Sub).
		e.Tasks.Recheck = sharedRecheck
	}
	e.API = &api.API{
		Service:        e.Tasks,
		Types:          byName,
		MaxBody:        cfg.MaxBody,
		BodyTimeout:    cfg.BodyTimeout,
		SyncTimeout:    cfg.SyncTimeout,
		Deliveries:     core.Store,
		WakeDeliveries: e.Dispatcher.Wake,
		DefaultLimit:   cfg.DefaultLimit,
		SourceState:    e.sourceState,
		Quotas:         e.Quotas,
		OnQuotaExceeded: func(t *task.Type, q quota.Quota) {
			quotaRefusals.WithLabelValues(t.Name(), string(q.Period)).Inc()
		},
	}
	adminService := &admin.Service{
		Accounts:     core.Store,
		UsageStore:   core.Store,
		Dynamic:      core.Dynamic,
		Static:       e.Accounts,
		DefaultLimit: cfg.DefaultLimit,
		TaskTypes:    typeNames,
		Egress:       cfg.Webhooks.Egress,
		Maintenance:  core.Maintenance,
		Changed:      core.AccountChanged,
		Quotas:       e.Quotas,
	}
	e.Endpoints = &endpoints.Service{
		Lookup:        e.Accounts.Lookup,
		Update:        adminService.UpdateRecord,
		Egress:        cfg.Webhooks.Egress,
		TaskTypes:     typeNames,
		Sender:        e.Sender,
		NoSelfService: cfg.Webhooks.NoSelfService,
		DisableAfter:  cfg.Webhooks.DisableAfter,
	}
	e.API.Endpoints = e.Endpoints
	e.Admin = &admin.Handler{Service: adminService, Client: e.API, Endpoints: e.Endpoints,
		Sources: func(ctx context.Context) []admin.SourceView { return e.sourceViews(ctx, cfg.TaskTypes) },
		Nodes:   core.Presence.List,
	}
	return e, nil
}

// Summary describes the engine in the fields of the one line a node logs
// when a configuration starts: its version, its store, its accounts and
// its task types.
func (e *Engine) Summary(st storage.Config) []zap.Field {
	types := slices.Sorted(maps.Keys(e.API.Types))
	return []zap.Field{
		zap.String("version", buildinfo.Version()),
		zap.String("caddy", buildinfo.CaddyVersion()),
		zap.Stringer("storage", st),
		zap.Bool("shared_store", e.Core.Shared()),
		zap.Int("static_accounts", len(e.Accounts.Static())),
		zap.Int("dynamic_accounts", e.Core.Dynamic.Len()),
		zap.Strings("task_types", types),
	}
}

// sourceState says how a task type's source is doing: in a maintenance
// window, or as its circuit breaker on this node says.
func (e *Engine) sourceState(t *task.Type) api.TypeStatus {
	if w, ok := e.Core.Maintenance.Active(t.Name(), time.Now()); ok {
		until := w.Until
		return api.TypeStatus{State: "maintenance", Message: w.Message, Until: &until}
	}
	return api.TypeStatus{State: e.Sources.Health(t.Source)}
}

// sourceViews says how each task type's source is doing on this node, by
// task type.
func (e *Engine) sourceViews(ctx context.Context, types []*task.Type) []admin.SourceView {
	views := make([]admin.SourceView, 0, len(types))
	for _, t := range types {
		st := e.Sources.Stats(t.Source)
		state := e.sourceState(t)
		v := admin.SourceView{
			TaskType:     t.Name(),
			Source:       t.Source,
			State:        state.State,
			Breaker:      e.Sources.BreakerState(t.Source),
			Calls:        st.Calls,
			SourceDown:   st.Down,
			LatencyP50MS: float64(st.LatencyP50.Microseconds()) / 1000,
			LatencyP95MS: float64(st.LatencyP95.Microseconds()) / 1000,
			RecentErrors: make([]admin.SourceError, len(st.Errors)),
		}
		if st.Calls > 0 {
			v.SourceDownRate = float64(st.Down) / float64(st.Calls)
		}
		for i, err := range st.Errors {
			v.RecentErrors[i] = admin.SourceError{At: err.At.UTC(), Message: err.Message}
		}
		if state.Until != nil {
			v.Maintenance = &admin.MaintenanceNow{Message: state.Message, Until: *state.Until}
		}
		if n, err := e.Core.Store.QueueDepth(ctx, t.Name()); err == nil {
			v.Queued = n
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b admin.SourceView) int { return strings.Compare(a.TaskType, b.TaskType) })
	return views
}

// taskCreated is what happens when a task is accepted: it is counted, and
// its type's workers are woken.
func (e *Engine) taskCreated(t *task.Task) {
	name := t.TypeName()
	tasksCreated.WithLabelValues(name).Inc()
	e.Core.Meter.TaskCreated(t.AccountID, name)
	e.Runner.Wake(name)
}

// taskFinished is what happens when a task ends, its end and its
// deliveries stored: the waiters on other nodes are told, the end is
// counted, and the dispatcher is woken for the deliveries.
func (e *Engine) taskFinished(t *task.Task, _ time.Duration) {
	e.Core.taskEnded(t.RequestID)
	observeFinish(t)
	e.Core.Meter.TaskEnded(t.AccountID, t.TypeName(), t.Status == task.Failed)
	e.Dispatcher.Wake()
}

// refund returns the quota counters a task that ends gives a unit back
// to, with its end: a task that ends SOURCE_DOWN gives back the unit it
// spent of each quota of its account that covers its type (the customer
// is not billed for the source's outage), once per task.
func (e *Engine) refund(t *task.Task) []quota.Counter {
	if t.Status != task.Failed || t.Error == nil || *t.Error != task.SourceDown {
		return nil
	}
	acct, ok := e.Accounts.Lookup(t.AccountID)
	if !ok || len(acct.Quotas) == 0 {
		return nil
	}
	return e.Quotas.Counters(t.AccountID, acct.Quotas, t.TypeName(), t.CreatedAt)
}

// deliveries returns the webhook deliveries of a task that ends: one per
// webhook of its account that takes its type.
func (e *Engine) deliveries(t *task.Task) []*webhook.Delivery {
	acct, ok := e.Accounts.Lookup(t.AccountID)
	if !ok {
		return nil
	}
	return task.Deliveries(acct.Webhooks, t, time.Now().UTC())
}

// resolveWebhook tells the dispatcher how to send a delivery under this
// configuration.
func (e *Engine) resolveWebhook(d *webhook.Delivery) (webhook.Target, string, bool) {
	acct, _ := e.Accounts.Lookup(d.AccountID)
	return webhook.Resolve(acct, d)
}

// Start runs the task workers, the webhook dispatcher and the purge of
// ended quota periods.
func (e *Engine) Start() {
	e.queues = &queues{store: e.Core.Store, types: slices.Collect(maps.Keys(e.API.Types))}
	running.started(e)
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWorkers = cancel
	e.workers.Go(func() { e.Runner.Run(ctx) })
	e.workers.Go(func() { e.Dispatcher.Run(ctx) })
	e.workers.Go(func() { e.purgeQuotas(ctx) })
}

// purgeQuotas forgets the quota counters of ended periods every
// quota.PurgeEvery, until ctx ends.
func (e *Engine) purgeQuotas(ctx context.Context) {
	tick := time.NewTicker(quota.PurgeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := e.Quotas.Purge(ctx); err != nil && ctx.Err() == nil {
				e.logger.Warn("the quota counters of ended periods could not be purged", zap.Error(err))
			}
		}
	}
}

// Stop stops the task workers and the dispatcher and waits for them. Tasks
// whose source call is cut short are queued again; deliveries cut short
// are retried. It is safe without Start and more than once.
func (e *Engine) Stop() {
	running.stopped(e)
	if e.stopWorkers == nil {
		return
	}
	e.stopWorkers()
	e.workers.Wait()
	e.stopWorkers = nil
	e.Sender.CloseIdleConnections()
	e.Sources.CloseIdleConnections()
}

// ReleaseWaits ends every long poll and sync wait at once, with the task as
// it stands: for a process that exits. (On a reload they go on: the Core
// and its waiters outlive the configuration.)
func (e *Engine) ReleaseWaits() { e.Core.Hub.Release() }

// runElsewhere tells which task types another runner runs: that of a
// configuration of this node a reload is handing over from or to (both
// run for a moment), or, with a shared store, another node's.
func (e *Engine) runElsewhere(ctx context.Context) func(typeName string) bool {
	var nodes func(string) bool
	if e.Core.Shared() {
		nodes = e.Core.Presence.RunElsewhere(ctx)
	}
	return func(name string) bool {
		return running.runs(e, name) || (nodes != nil && nodes(name))
	}
}

// running is the engines started and not stopped: the metrics read the
// latest, and the node tells its task types in its beats. Should a new
// configuration fail to start after its engine did, the old one's are
// read and told again.
var running engineList

// engineList is the engines started, oldest first.
type engineList struct {
	mu   sync.Mutex
	list []*Engine
}

// started adds e, which the metrics read from now on.
func (l *engineList) started(e *Engine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, e)
	l.publish()
}

// runs tells whether an engine started on e's Core, other than e, runs
// the task type.
func (l *engineList) runs(e *Engine, typeName string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.list {
		if x != e && x.Core == e.Core {
			if _, ok := x.API.Types[typeName]; ok {
				return true
			}
		}
	}
	return false
}

// stopped removes e; the metrics read the latest engine left, if any.
func (l *engineList) stopped(e *Engine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = slices.DeleteFunc(l.list, func(x *Engine) bool { return x == e })
	l.publish()
}

// publish points the collectors at the latest engine, and its node's
// beats at its task types. l.mu is held.
func (l *engineList) publish() {
	if n := len(l.list); n > 0 {
		e := l.list[n-1]
		queueDepth.current.Store(e.queues)
		sourceStates.current.Store(e)
		e.Core.Presence.SetTaskTypes(e.typeNames)
		return
	}
	queueDepth.current.Store(nil)
	sourceStates.current.Store(nil)
}
