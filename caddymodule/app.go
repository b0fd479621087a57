// Package caddymodule adapts taskgate's engine (package backend) to Caddy:
// the taskgate app, the HTTP handlers and their Caddyfile syntax.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/authfail"
	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/source"
	"github.com/taskgate/taskgate/backend/storage/bolt"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/buildinfo"
	"github.com/taskgate/taskgate/internal/retry"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the taskgate app: the accounts, the storage and the defaults that
// the taskgate handlers share. Configured in the Caddyfile by the global
// `taskgate` option.
type App struct {
	// Storage selects where state lives. Default: memory.
	Storage *StorageConfig `json:"storage,omitempty"`

	// RateLimit is the rate of accounts that set none, as "N/s", "N/m",
	// "N/h", "N/d" or "N/<duration>". Default: 30/s.
	RateLimit string `json:"rate_limit,omitempty"`

	// OnStoreError is what the rate limit does when a shared store
	// (redis) does not answer within 100ms: "local" (the default) limits
	// on this node alone until the store is back, "allow" lets requests
	// through, "deny" refuses them.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Burst is the burst of accounts that set no rate limit. Default: one
	// second's worth of RateLimit, at least 1.
	Burst int64 `json:"burst,omitempty"`

	// SyncTimeout is how long a synchronous task call waits for the task to
	// finish before answering 504. Default: 50s.
	SyncTimeout caddy.Duration `json:"sync_timeout,omitempty"`

	// Retention is how long finished tasks are kept. Default: 7 days.
	Retention caddy.Duration `json:"retention,omitempty"`

	// MaxBody is the largest request body accepted, in bytes. Default: 4 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// BodyTimeout bounds the time a task request's body takes to arrive
	// once the task API starts reading it; a client slower than that gets
	// 408 REQUEST_TIMEOUT, and its connection is closed. Default: 30s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`
	// AuthFailures is the rate at which a client address (an IPv4
	// address, or an IPv6 /64) may fail authentication, as "N/s", "N/m",
	// "N/h", "N/d" or "N/<duration>", or "off". Each request that
	// api_key_auth refuses with 401 MISSING_CREDENTIALS or 403
	// INVALID_CREDENTIALS spends one of the address's allowance; while it
	// has none left, api_key_auth answers every request from the address
	// 429 TOO_MANY_FAILED_AUTHENTICATIONS with Retry-After before looking
	// at its credentials, so that a right key waits too. Successful
	// authentications never spend. Counted per node, in memory, across
	// reloads. Default: 20/m.
	AuthFailures string `json:"auth_failures,omitempty"`

	// AuthFailuresBurst is how many failures an address may make at once
	// before AuthFailures' rate applies. Default: the rate's count (20
	// for 20/m).
	AuthFailuresBurst int64 `json:"auth_failures_burst,omitempty"`

	// ClientIP is which address ip_allowlist and the AuthFailures throttle
	// take as the client's.
	// "rightmost_untrusted" (the default): behind trusted_proxies, the
	// right-most address of the client IP headers that is not a trusted
	// proxy, with or without the server's trusted_proxies_strict.
	// "caddy": Caddy's client IP as it is, which without
	// trusted_proxies_strict is the left-most forwarded address; unsafe,
	// since a client can write any address there.
	ClientIP string `json:"client_ip,omitempty"`

	// Accounts are the static accounts.
	Accounts []AccountConfig `json:"accounts,omitempty"`

	// TaskTypes are the task types and their sources.
	TaskTypes []TaskTypeConfig `json:"task_types,omitempty"`

	// Webhooks configures webhook delivery.
	Webhooks *WebhooksConfig `json:"webhooks,omitempty"`

	defaultLimit ratelimit.Limit
	registry     *account.Registry
	limiter      ratelimit.Store
	limiterKey   string
	// policyHeaders caches the RateLimit-Policy value of each limit in
	// use (ratelimit.Limit → string), static and dynamic accounts alike.
	policyHeaders *sync.Map
	engine        *engine
	engineKey     string
	// storage is Storage with its placeholders replaced.
	storage    *StorageConfig
	runner     *task.Runner
	sources    *source.Client
	queues     *queues
	dispatcher *webhook.Dispatcher
	sender     *webhook.Sender
	api        *api.API
	admin      *admin.Handler
	// meter counts usage; kept apart from engine, which Cleanup clears
	// while the last requests may still be ending.
	meter       *usage.Meter
	stopWorkers context.CancelFunc
	workersDone *sync.WaitGroup
	logger      *zap.Logger

	// authFailures is the throttle of failed authentications, nil when
	// off; authFailureLimit its limit.
	authFailures     *authfail.Throttle
	authFailureLimit ratelimit.Limit
}

// TaskTypeConfig is a task type and its source.
type TaskTypeConfig struct {
	// Name is the type's "action/type", as in /v3/tasks/async/{action}/{type}.
	Name string `json:"name"`
	// Source is the URL workers POST tasks to.
	Source string `json:"source"`
	// Timeout bounds one call to the source. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Concurrency is the most calls to the source at once. Default: 32.
	Concurrency int `json:"concurrency,omitempty"`
	// OutputKey names the result's key when the source is down. Default:
	// source_output.
	OutputKey string `json:"output_key,omitempty"`
}

// build returns the task type the config describes (defaults unset).
func (c TaskTypeConfig) build() *task.Type {
	action, typ, _ := strings.Cut(c.Name, "/")
	return &task.Type{
		Action:      action,
		Type:        typ,
		Source:      c.Source,
		Timeout:     time.Duration(c.Timeout),
		Concurrency: c.Concurrency,
		OutputKey:   c.OutputKey,
	}
}

// StorageConfig selects a store.
type StorageConfig struct {
	// Type is "memory" (for tests: nothing survives a restart), "bolt"
	// (an embedded, durable database file, for one node) or "redis"
	// (shared by any number of nodes).
	Type string `json:"type"`
	// Path is the database file of "bolt".
	Path string `json:"path,omitempty"`
	// URL is the server of "redis": redis://[user:password@]host:port/db,
	// or rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// replaced at load.
	URL string `json:"url,omitempty"`
}

// AccountConfig is a static account.
type AccountConfig struct {
	// ID is what clients send in the account-id header.
	ID string `json:"id"`
	// KeySHA256 lists the hex SHA-256 of each of the account's keys.
	KeySHA256 []string `json:"key_sha256,omitempty"`
	// Keys lists keys in plain text, typically as environment placeholders
	// such as "{env.DEMO_KEY}"; they are hashed at load and never kept.
	// Prefer KeySHA256: a literal key here is visible in the config API.
	Keys []string `json:"keys,omitempty"`
	// RateLimit is the account's rate; default: the app's RateLimit.
	RateLimit string `json:"rate_limit,omitempty"`
	// Burst is the account's burst; default: one second's worth of its rate.
	Burst int64 `json:"burst,omitempty"`
	// Allow lists the CIDRs (or single addresses) requests may come from;
	// empty allows any address.
	Allow []string `json:"allow,omitempty"`
	// TaskTypes lists the "action/type" task types the account may call;
	// empty allows all.
	TaskTypes []string `json:"task_types,omitempty"`
	// Webhooks receive the account's finished asynchronous tasks.
	Webhooks []WebhookConfig `json:"webhooks,omitempty"`
	// FailureWebhook is told of deliveries that failed for good.
	FailureWebhook string `json:"failure_webhook,omitempty"`
}

// WebhookConfig is one webhook of an account.
type WebhookConfig struct {
	// URL receives the POSTs.
	URL string `json:"url"`
	// Secret signs deliveries per Standard Webhooks ("whsec_<base64>").
	// Placeholders such as {env.HOOK_SECRET} are replaced at load.
	Secret string `json:"secret,omitempty"`
	// Authorization is sent as the Authorization header. Placeholders are
	// replaced at load.
	Authorization string `json:"authorization,omitempty"`
	// Types limits the webhook to these task types; empty means all.
	Types []string `json:"types,omitempty"`

	// tok is where the URL stands in a Caddyfile, for errors found once
	// the whole option is read.
	tok caddyfile.Token
}

// WebhooksConfig configures webhook delivery.
type WebhooksConfig struct {
	// Timeout bounds one delivery attempt. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// RetryFirst is the delay before the first retry. Default: 2s.
	RetryFirst caddy.Duration `json:"retry_first,omitempty"`
	// RetryMax caps the delay between retries. Default: 1h.
	RetryMax caddy.Duration `json:"retry_max,omitempty"`
	// GiveUpAfter ends retrying this long after the delivery was created
	// (its task ended). Default: 24h.
	GiveUpAfter caddy.Duration `json:"give_up_after,omitempty"`
	// Proxy, when set, is the HTTP proxy every delivery goes through.
	Proxy string `json:"proxy,omitempty"`
	// SourceAddress, when set, is the local IP address deliveries leave
	// from, so that receivers can allowlist it.
	SourceAddress string `json:"source_address,omitempty"`
	// PerURL bounds the attempts in flight to one webhook URL, so that a
	// slow receiver cannot take every worker. Default: 4.
	PerURL int `json:"per_url,omitempty"`
	// AllowPrivate lists networks (CIDRs or single addresses) that webhook
	// and failure-webhook URLs may reach although they are loopback,
	// private, link-local or another special-purpose range, which are
	// refused otherwise, when a URL is set and again on the address each
	// connection is made to. The admin endpoint's port stays unreachable
	// on every address of this machine. Default: none.
	AllowPrivate []string `json:"allow_private,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "taskgate",
		New: func() caddy.Module { return new(App) },
	}
}

// limiterPool holds the rate-limit state so that it outlives config
// reloads: old and new app instances share one store.
var limiterPool = caddy.NewUsagePool()

// enginePool holds the task stores, so that a reload keeps the open
// database (bolt allows one opener) and the waiters of long polls.
var enginePool = caddy.NewUsagePool()

// engine is the store (of tasks, webhook deliveries, dynamic accounts and
// usage), the hub of task waiters, the dynamic accounts as requests see
// them, the usage meter, and, with a shared store, the shared rate limit
// and the account change notices. Its goroutines stop in Destruct.
type engine struct {
	store      task.Store
	deliveries webhook.Store
	accounts   account.Store
	usage      usage.Store
	hub        *task.Hub
	dynamic    *account.Dynamic
	meter      *usage.Meter
	// sharedStore is the store when other nodes use it too (nil
	// otherwise): the shared rate limit runs on its connection.
	sharedStore *redis.Store
	// publish tells the other nodes that an account changed (nil when the
	// store is not shared).
	publish func(ctx context.Context, id string)
	// ended tells the other nodes that a task ended, so that their
	// waiters answer (nil when the store is not shared).
	ended func(requestID string)
	// shared tells whether other nodes use the store.
	shared bool
	logger *zap.Logger
	stop   context.CancelFunc
	done   sync.WaitGroup
}

// Destruct stops the engine's goroutines, writing the last usage counts,
// and closes the store.
func (e *engine) Destruct() error {
	e.stop()
	e.done.Wait()
	return e.store.Close()
}

// store is everything an engine keeps in one store.
type store interface {
	task.Store
	webhook.Store
	account.Store
	usage.Store
}

// currentApp is the running app, for the admin API (Caddy builds admin
// routes apart from apps). During a reload it is the new app as soon as
// it starts.
var currentApp atomic.Pointer[App]

// openTimeout bounds connecting to a shared store at start.
const openTimeout = 10 * time.Second

// openEngine opens the configured store and loads the dynamic accounts.
// With a store of its own (memory, bolt), tasks and deliveries leased
// when it was last closed belonged to a process that is gone: they are
// queued again. A shared store (redis) leaves that to the leases: other
// nodes may hold them.
func openEngine(st *StorageConfig, logger *zap.Logger) (*engine, error) {
	var store store
	var shared *redis.Store
	switch st.Type {
	case "memory":
		store = memory.New()
	case "bolt":
		if err := os.MkdirAll(filepath.Dir(st.Path), 0o700); err != nil {
			return nil, fmt.Errorf("storage bolt: %w", err)
		}
		db, err := bolt.Open(st.Path)
		if err != nil {
			return nil, err
		}
		store = db
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		rs, err := redis.Open(ctx, st.URL)
		if err != nil {
			return nil, fmt.Errorf("storage redis: %w", err)
		}
		store, shared = rs, rs
	}
	if shared == nil {
		everything := time.Now().Add(100 * 365 * 24 * time.Hour)
		if _, err := store.Rescue(context.Background(), everything); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("queueing interrupted tasks again: %w", err)
		}
		if _, err := store.RescueDeliveries(context.Background(), everything); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("queueing interrupted deliveries again: %w", err)
		}
	}
	e := &engine{
		store:       store,
		deliveries:  store,
		accounts:    store,
		usage:       store,
		hub:         task.NewHub(),
		dynamic:     account.NewDynamic(),
		meter:       usage.NewMeter(store, nil),
		shared:      shared != nil,
		sharedStore: shared,
		logger:      logger,
	}
	accounts := &account.Sync{Store: store, Dynamic: e.dynamic, Reconcile: accountsReconcile, Logger: logger}
	if err := accounts.LoadAll(context.Background()); err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("loading accounts: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	if shared != nil {
		e.publish = func(_ context.Context, id string) {
			// The change is stored: telling the others must not depend on
			// the admin caller staying to the end.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err := retry.Default.Do(pctx, func() error { return shared.PublishAccountChange(pctx, id) }, func(error) bool { return false })
			if err != nil {
				logger.Error("telling other nodes of an account change; they reload every account within a minute", zap.String("account_id", id), zap.Error(err))
			}
		}
		e.ended = func(requestID string) {
			if err := shared.PublishTaskEnd(ctx, requestID); err != nil && ctx.Err() == nil {
				logger.Warn("telling other nodes of a task end; their waiters find it on their next look", zap.String("request_id", requestID), zap.Error(err))
			}
		}
		e.done.Go(func() {
			err := shared.SubscribeTaskEnds(ctx, e.hub.Notify, e.hub.NotifyAll)
			if err != nil && ctx.Err() == nil {
				logger.Error("task end notices stopped", zap.Error(err))
			}
		})
		accounts.Subscribe = shared.SubscribeAccountChanges
		e.done.Go(func() { accounts.Run(ctx) })
	}
	e.meter.Retention = usageRetention
	e.done.Go(func() {
		e.meter.Run(ctx, usageFlushInterval, 5*time.Second, func(err error) {
			logger.Error("writing usage counts", zap.Error(err))
		})
	})
	return e, nil
}

// accountsReconcile is how often, with a shared store, every account is
// read again, in case a change notice was lost.
const accountsReconcile = time.Minute

// sharedRecheck is how often, with a shared store, a long poll or sync
// call reads its task again in case the notice of its end was lost.
const sharedRecheck = 2 * time.Second

// usageFlushInterval is how often usage counts are written: what the
// usage API reports is about this much behind.
const usageFlushInterval = time.Second

// usageRetention is how long usage counts are kept: a year and a month,
// for a year-on-year comparison.
const usageRetention = 400 * 24 * time.Hour

// sharedLimiter is the rate limit of nodes sharing a store: exact, in
// Redis, and per node (a sweeper's memory) while Redis does not answer.
type sharedLimiter struct {
	*ratelimit.Fallback
	stop context.CancelFunc
	done chan struct{}
}

func newSharedLimiter(shared *redis.Store, mode string, logger *zap.Logger) (*sharedLimiter, error) {
	local := ratelimit.NewMemory(nil)
	limiter, err := ratelimit.NewFallback(ratelimit.NewRedis(shared.Client(), shared.Prefix()+"rl:"), local, ratelimit.FallbackConfig{
		OnStoreError: ratelimit.OnStoreError(mode),
		// The store's client heeds contexts (ContextTimeoutEnabled).
		PrimaryHeedsContext: true,
		OnStateChange: func(degraded bool, err error) {
			rateLimitDegraded.Set(map[bool]float64{false: 0, true: 1}[degraded])
			if degraded {
				logger.Error("rate limit store unreachable; limiting per the on_store_error mode until it is back", zap.String("on_store_error", mode), zap.Error(err))
			} else {
				logger.Info("rate limit store reachable again")
			}
		},
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &sharedLimiter{Fallback: limiter, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		local.SweepEvery(ctx, time.Minute)
	}()
	return l, nil
}

// Destruct stops the local store's sweeper.
func (l *sharedLimiter) Destruct() error {
	l.stop()
	<-l.done
	return nil
}

type pooledMemory struct {
	*ratelimit.Memory
	stop context.CancelFunc
}

func (p pooledMemory) Destruct() error {
	p.stop()
	return nil
}

// Provision builds the accounts and connects the stores.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.Storage == nil {
		a.Storage = &StorageConfig{Type: "memory"}
	}
	if a.SyncTimeout == 0 {
		a.SyncTimeout = caddy.Duration(50 * time.Second)
	}
	if a.Retention == 0 {
		a.Retention = caddy.Duration(7 * 24 * time.Hour)
	}
	if a.MaxBody == 0 {
		a.MaxBody = 4 << 20
	}
	if a.BodyTimeout == 0 {
		a.BodyTimeout = caddy.Duration(api.DefaultBodyTimeout)
	}
	if err := validateOnStoreError(a.OnStoreError); err != nil {
		return err
	}
	if err := validateClientIP(a.ClientIP); err != nil {
		return err
	}
	authFailureLimit, err := parseAuthFailures(a.AuthFailures, a.AuthFailuresBurst)
	if err != nil {
		return err
	}
	switch {
	case a.RateLimit != "":
		a.defaultLimit, err = ratelimit.ParseLimit(a.RateLimit, a.Burst)
	case a.Burst != 0:
		a.defaultLimit, err = ratelimit.NewLimit(ratelimit.DefaultLimit.Count, ratelimit.DefaultLimit.Period, a.Burst)
	default:
		a.defaultLimit = ratelimit.DefaultLimit
	}
	if err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}

	repl := caddy.NewReplacer()
	accounts := make([]*account.Account, 0, len(a.Accounts))
	for i := range a.Accounts {
		acct, err := a.Accounts[i].build(repl, a.defaultLimit)
		if err != nil {
			return err
		}
		accounts = append(accounts, acct)
	}
	a.warnLiteralSecrets()
	a.policyHeaders = new(sync.Map)
	// Checked here, built with the dynamic accounts once the store is open.
	if _, err := account.NewRegistry(accounts, nil, nil); err != nil {
		return err
	}

	a.storage = a.Storage
	switch a.Storage.Type {
	case "memory":
		a.engineKey = "memory"
	case "bolt":
		if a.Storage.Path == "" {
			return errors.New("storage bolt: no database file")
		}
		path, err := filepath.Abs(a.Storage.Path)
		if err != nil {
			return fmt.Errorf("storage bolt: %w", err)
		}
		a.Storage.Path = path
		a.engineKey = "bolt:" + path
	case "redis":
		url := caddy.NewReplacer().ReplaceKnown(a.Storage.URL, "")
		if !strings.HasPrefix(url, "redis://") && !strings.HasPrefix(url, "rediss://") {
			return errors.New("storage redis: want a redis:// or rediss:// URL")
		}
		a.storage = &StorageConfig{Type: "redis", URL: url}
		a.engineKey = "redis:" + url
	default:
		return fmt.Errorf("storage %q: want memory, bolt or redis", a.Storage.Type)
	}

	types := make([]*task.Type, 0, len(a.TaskTypes))
	byName := make(map[string]*task.Type, len(a.TaskTypes))
	for _, c := range a.TaskTypes {
		if err := account.ValidateTaskType(c.Name); err != nil {
			return err
		}
		t := c.build()
		if err := t.Validate(); err != nil {
			return err
		}
		if byName[c.Name] != nil {
			return fmt.Errorf("task_type %s: defined more than once", c.Name)
		}
		byName[c.Name] = t
		types = append(types, t)
	}
	for _, acct := range a.Accounts {
		for _, name := range acct.TaskTypes {
			if byName[name] == nil {
				return fmt.Errorf("account %s: task type %s is not defined by a task_type", acct.ID, name)
			}
		}
	}

	policy, egress, err := a.Webhooks.build()
	if err != nil {
		return err
	}
	if egress.Egress, err = a.Webhooks.egressPolicy(adminPorts(ctx)); err != nil {
		return err
	}
	if err := a.checkDestinations(egress.Egress); err != nil {
		return err
	}

	// Every check is done: now the shared state.
	if authFailureLimit != (ratelimit.Limit{}) {
		a.authFailures, a.authFailureLimit = acquireAuthFailures(), authFailureLimit
	}
	ev, _, err := enginePool.LoadOrNew(a.engineKey, func() (caddy.Destructor, error) {
		return openEngine(a.storage, a.logger)
	})
	if err != nil {
		return err
	}
	a.engine = ev.(*engine)
	if a.registry, err = account.NewRegistry(accounts, a.engine.dynamic, nil); err != nil {
		return err
	}
	for _, acct := range accounts {
		if _, ok := a.engine.dynamic.Lookup(acct.ID); ok {
			a.logger.Warn("a static account hides the dynamic account of the same id: its keys do not work here, and the admin API cannot change it; give the static account another id, or disable the dynamic one from a node without it",
				zap.String("account_id", acct.ID))
		}
	}
	typeNames := make(map[string]bool, len(byName))
	for name := range byName {
		typeNames[name] = true
	}
	a.admin = &admin.Handler{Service: &admin.Service{
		Accounts:     a.engine.accounts,
		UsageStore:   a.engine.usage,
		Dynamic:      a.engine.dynamic,
		Static:       a.registry,
		DefaultLimit: a.defaultLimit,
		TaskTypes:    typeNames,
		Egress:       egress.Egress,
		Changed:      a.engine.publish,
	}}
	a.sources = source.NewClient(source.Options{UserAgent: userAgent()})
	a.runner = task.NewRunner(a.engine.store, a.engine.hub, a.sources, types, nil, a.logger.Named("runner"))
	a.runner.Retention = time.Duration(a.Retention)
	a.runner.KeepOrphans = a.engine.shared
	a.runner.OnPanic = observeTaskPanic
	egress.UserAgent, egress.Timeout = userAgent(), policy.Timeout
	egress.Logger = a.logger.Named("webhooks")
	a.sender = webhook.NewSender(egress)
	opts := webhook.DispatcherOptions{
		Logger:    a.logger.Named("webhooks"),
		OnAttempt: observeAttempt,
		OnPanic:   observeAttemptPanic,
	}
	if a.Webhooks != nil {
		opts.PerURL = a.Webhooks.PerURL
	}
	a.dispatcher = webhook.NewDispatcher(a.engine.deliveries, a.sender, a.resolveWebhook, policy, opts)
	a.runner.Deliveries = func(t *task.Task) []*webhook.Delivery {
		acct, ok := a.registry.Lookup(t.AccountID)
		if !ok {
			return nil
		}
		return task.Deliveries(acct.Webhooks, t, time.Now().UTC())
	}
	meter := a.engine.meter
	a.meter = meter
	ended := a.engine.ended
	a.runner.OnFinish = func(t *task.Task, _ time.Duration) {
		if ended != nil {
			ended(t.RequestID)
		}
		observeFinish(t)
		meter.TaskEnded(t.AccountID, t.TypeName(), t.Status == task.Failed)
		a.dispatcher.Wake()
	}
	created := func(t *task.Task) {
		name := t.TypeName()
		tasksCreated.WithLabelValues(name).Inc()
		meter.TaskCreated(t.AccountID, name)
		a.runner.Wake(name)
	}
	service := task.NewService(a.engine.store, a.engine.hub, nil, created)
	if a.engine.shared {
		// Task end notices from other nodes may be lost (Pub/Sub).
		service.Recheck = sharedRecheck
	}
	a.api = &api.API{
		Service:        service,
		Types:          byName,
		MaxBody:        a.MaxBody,
		BodyTimeout:    time.Duration(a.BodyTimeout),
		SyncTimeout:    time.Duration(a.SyncTimeout),
		Deliveries:     a.engine.deliveries,
		WakeDeliveries: a.dispatcher.Wake,
	}
	a.admin.Client = a.api
	if shared := a.engine.sharedStore; shared != nil {
		// The mode is the limiter's, not the store's: a reload that
		// changes it (in an outage, say) builds a new limiter without
		// asking Redis anything.
		mode := a.OnStoreError
		if mode == "" {
			mode = string(ratelimit.OnStoreErrorLocal)
		}
		a.limiterKey = a.engineKey + " on_store_error " + mode
		v, _, err := limiterPool.LoadOrNew(a.limiterKey, func() (caddy.Destructor, error) {
			return newSharedLimiter(shared, mode, a.logger)
		})
		if err != nil {
			return err
		}
		a.limiter = v.(*sharedLimiter).Fallback
		return nil
	}
	a.limiterKey = "memory"
	v, _, err := limiterPool.LoadOrNew(a.limiterKey, func() (caddy.Destructor, error) {
		sweepCtx, stop := context.WithCancel(context.Background())
		m := ratelimit.NewMemory(nil)
		go m.SweepEvery(sweepCtx, time.Minute)
		return pooledMemory{Memory: m, stop: stop}, nil
	})
	if err != nil {
		return err
	}
	a.limiter = v.(pooledMemory).Memory
	return nil
}

// validateOnStoreError checks an on_store_error mode.
func validateOnStoreError(mode string) error {
	switch mode {
	case "", "local", "allow", "deny":
		return nil
	}
	return fmt.Errorf("on_store_error %q: want local, allow or deny", mode)
}

// build turns the config of a static account into an account.
func (c *AccountConfig) build(repl *caddy.Replacer, defaultLimit ratelimit.Limit) (*account.Account, error) {
	if err := account.ValidateID(c.ID); err != nil {
		return nil, err
	}
	acct := &account.Account{
		ID:             c.ID,
		Limit:          defaultLimit,
		TaskTypes:      c.TaskTypes,
		FailureWebhook: c.FailureWebhook,
		Static:         true,
	}
	for _, h := range c.KeySHA256 {
		sum, err := account.ParseKeyHash(h)
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", c.ID, err)
		}
		acct.Keys = append(acct.Keys, account.Key{Hash: sum})
	}
	for _, k := range c.Keys {
		plain := repl.ReplaceKnown(k, "")
		if strings.TrimSpace(plain) == "" {
			return nil, fmt.Errorf("account %s: a key is empty (is its environment variable set?)", c.ID)
		}
		acct.Keys = append(acct.Keys, account.Key{Hash: account.HashKey(plain)})
	}
	if len(acct.Keys) == 0 {
		return nil, fmt.Errorf("account %s: no key; set key_sha256 or key", c.ID)
	}
	var err error
	switch {
	case c.RateLimit != "":
		acct.Limit, err = ratelimit.ParseLimit(c.RateLimit, c.Burst)
	case c.Burst != 0:
		acct.Limit, err = ratelimit.NewLimit(defaultLimit.Count, defaultLimit.Period, c.Burst)
	}
	if err != nil {
		return nil, fmt.Errorf("account %s: rate_limit: %w", c.ID, err)
	}
	if acct.Allow, err = ipallow.Parse(c.Allow); err != nil {
		return nil, fmt.Errorf("account %s: allow: %w", c.ID, err)
	}
	for _, w := range c.Webhooks {
		hook := account.Webhook{
			URL:           w.URL,
			Secret:        repl.ReplaceKnown(w.Secret, ""),
			Authorization: repl.ReplaceKnown(w.Authorization, ""),
			Types:         w.Types,
		}
		// A placeholder that resolves to nothing (an unset environment
		// variable) must not quietly send deliveries unsigned or without
		// their Authorization: refuse it, as an empty key is refused.
		if w.Secret != "" && strings.TrimSpace(hook.Secret) == "" {
			return nil, fmt.Errorf("account %s: webhook %s: secret is empty (is its environment variable set?)", c.ID, w.URL)
		}
		if w.Authorization != "" && strings.TrimSpace(hook.Authorization) == "" {
			return nil, fmt.Errorf("account %s: webhook %s: authorization is empty (is its environment variable set?)", c.ID, w.URL)
		}
		if hook.Secret != "" {
			if _, err := webhook.ParseSecret(hook.Secret); err != nil {
				return nil, fmt.Errorf("account %s: webhook %s: %w", c.ID, w.URL, err)
			}
		}
		acct.Webhooks = append(acct.Webhooks, hook)
	}
	if err := acct.Validate(); err != nil {
		return nil, err
	}
	return acct, nil
}

// Start runs the task workers and the webhook dispatcher.
func (a *App) Start() error {
	a.queues = &queues{store: a.engine.store, types: slices.Collect(maps.Keys(a.api.Types))}
	queueDepth.current.Store(a.queues)
	ctx, cancel := context.WithCancel(context.Background())
	a.stopWorkers = cancel
	a.workersDone = new(sync.WaitGroup)
	a.workersDone.Go(func() { a.runner.Run(ctx) })
	a.workersDone.Go(func() { a.dispatcher.Run(ctx) })
	currentApp.Store(a)
	return nil
}

// Stop stops the task workers and the dispatcher. Tasks whose source call
// is cut short are queued again; deliveries cut short are retried.
func (a *App) Stop() error {
	queueDepth.current.CompareAndSwap(a.queues, nil)
	currentApp.CompareAndSwap(a, nil)
	a.releaseWaitsOnExit()
	if a.stopWorkers != nil {
		a.stopWorkers()
		a.workersDone.Wait()
		a.stopWorkers = nil
		a.sender.CloseIdleConnections()
		a.sources.CloseIdleConnections()
	}
	return nil
}

// releaseWaitsOnExit ends long polls and sync waits when the process is
// exiting, those of old configs included (the hub is shared). On a reload
// they go on: the task store and its waiters outlive the old config, and
// the new workers end the tasks.
func (a *App) releaseWaitsOnExit() {
	if e := a.engine; e != nil && caddy.Exiting() {
		e.hub.Release()
	}
}

// resolveWebhook tells the dispatcher how to send a delivery under the
// current configuration.
func (a *App) resolveWebhook(d *webhook.Delivery) (webhook.Target, string, bool) {
	acct, _ := a.registry.Lookup(d.AccountID)
	return webhook.Resolve(acct, d)
}

// build returns the delivery policy and the egress settings (proxy,
// source address), defaults applied. A nil config gives the defaults.
func (c *WebhooksConfig) build() (webhook.Policy, webhook.SenderOptions, error) {
	var p webhook.Policy
	var egress webhook.SenderOptions
	if c != nil {
		p = webhook.Policy{
			First:   time.Duration(c.RetryFirst),
			Max:     time.Duration(c.RetryMax),
			GiveUp:  time.Duration(c.GiveUpAfter),
			Timeout: time.Duration(c.Timeout),
		}
		if c.Proxy != "" {
			u, err := url.Parse(c.Proxy)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return p, egress, fmt.Errorf("webhooks: proxy %q must be an http:// or https:// URL", c.Proxy)
			}
			egress.Proxy = u
		}
		if c.PerURL < 0 || c.PerURL > 1024 {
			return p, egress, fmt.Errorf("webhooks: per_url %d must be 1 to 1024", c.PerURL)
		}
		if c.SourceAddress != "" {
			ip, err := netip.ParseAddr(c.SourceAddress)
			if err != nil || ip.Zone() != "" {
				return p, egress, fmt.Errorf("webhooks: source_address %q must be an IP address", c.SourceAddress)
			}
			egress.SourceIP = ip.Unmap()
		}
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return p, egress, fmt.Errorf("webhooks: %w", err)
	}
	return p, egress, nil
}

// userAgent names taskgate and its version, for sources and webhooks.
func userAgent() string { return buildinfo.UserAgent() }

// Cleanup releases the shared stores. It is safe after a failed Provision.
func (a *App) Cleanup() error {
	var errs []error
	if a.engine != nil {
		a.engine = nil
		_, err := enginePool.Delete(a.engineKey)
		errs = append(errs, err)
	}
	if a.authFailures != nil {
		a.authFailures = nil
		errs = append(errs, releaseAuthFailures())
	}
	if a.limiter != nil && a.limiterKey != "" {
		a.limiter = nil
		_, err := limiterPool.Delete(a.limiterKey)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Destructor   = (*engine)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
