// Package caddymodule adapts taskgate's engine (package backend/engine) to
// Caddy: the taskgate app (the Caddyfile or JSON config turned into an
// engine.Config, and Caddy's lifecycle turned into the engine's), the HTTP
// handlers, the admin API route, and their Caddyfile syntax.
package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/authfail"
	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
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
	// (redis) does not answer within OnStoreErrorAfter: "local" (the
	// default) limits on this node alone until the store is back, "allow"
	// lets requests through, "deny" refuses them.
	OnStoreError string `json:"on_store_error,omitempty"`

	// OnStoreErrorAfter is how long a rate-limit decision waits for the
	// shared store before OnStoreError decides, from 1ms to 1s (a call to
	// Redis gives up after 1s of its own). Default: 100ms.
	OnStoreErrorAfter caddy.Duration `json:"on_store_error_after,omitempty"`

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

	// engine is this config's engine, on a Core shared through corePool.
	engine     *engine.Engine
	coreKey    string
	limiterKey string
	// policyHeaders caches the RateLimit-Policy value of each limit in
	// use (ratelimit.Limit → string), static and dynamic accounts alike.
	policyHeaders *sync.Map
	logger        *zap.Logger

	// authFailures is the throttle of failed authentications, nil when
	// off; authFailureLimit its limit.
	authFailures     *authfail.Throttle
	authFailureLimit ratelimit.Limit
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "taskgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the config, then builds the engine on the shared Core
// of its store (opening it if no other config has) and the shared rate
// limit.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := validateOnStoreError(a.OnStoreError); err != nil {
		return err
	}
	if err := validateOnStoreErrorAfter(time.Duration(a.OnStoreErrorAfter)); err != nil {
		return err
	}
	if err := validateClientIP(a.ClientIP); err != nil {
		return err
	}
	authFailureLimit, err := parseAuthFailures(a.AuthFailures, a.AuthFailuresBurst)
	if err != nil {
		return err
	}
	cfg, st, err := a.engineConfig(ctx)
	if err != nil {
		return err
	}
	a.warnLiteralSecrets()
	a.policyHeaders = new(sync.Map)

	// Every check is done: now the shared state.
	if authFailureLimit != (ratelimit.Limit{}) {
		a.authFailures, a.authFailureLimit = acquireAuthFailures(), authFailureLimit
	}
	core, coreKey, err := acquireCore(st, a.logger)
	if err != nil {
		return err
	}
	a.coreKey = coreKey
	limiter, limiterKey, err := acquireLimiter(core, coreKey, ratelimit.OnStoreError(a.OnStoreError), time.Duration(a.OnStoreErrorAfter), a.logger)
	if err != nil {
		return err
	}
	a.limiterKey = limiterKey
	if a.engine, err = engine.New(core, limiter, cfg); err != nil {
		return err
	}
	a.logger.Info("taskgate ready", a.engine.Summary(st)...)
	return nil
}

// Start runs the task workers and the webhook dispatcher, and serves the
// admin API from this config's engine.
func (a *App) Start() error {
	a.engine.Start()
	adminStarted(a.engine.Admin)
	return nil
}

// Stop stops the task workers and the dispatcher. Tasks whose source call
// is cut short are queued again; deliveries cut short are retried.
func (a *App) Stop() error {
	adminStopped(a.engine.Admin)
	a.releaseWaitsOnExit()
	a.engine.Stop()
	return nil
}

// releaseWaitsOnExit ends long polls and sync waits when the process is
// exiting, those of old configs included (the Core's waiters are shared).
// On a reload they go on: the store and its waiters outlive the old
// config, and the new workers end the tasks.
func (a *App) releaseWaitsOnExit() {
	if a.engine != nil && caddy.Exiting() {
		a.engine.ReleaseWaits()
	}
}

// Cleanup releases the shared state. It is safe after a failed Provision.
func (a *App) Cleanup() error {
	var errs []error
	if a.authFailures != nil {
		a.authFailures = nil
		errs = append(errs, releaseAuthFailures())
	}
	if a.limiterKey != "" {
		_, err := limiterPool.Delete(a.limiterKey)
		errs = append(errs, err)
		a.limiterKey = ""
	}
	if a.coreKey != "" {
		_, err := corePool.Delete(a.coreKey)
		errs = append(errs, err)
		a.coreKey = ""
	}
	return errors.Join(errs...)
}

// loadApp returns the taskgate app of the config being provisioned and
// registers the metrics with it.
func loadApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("taskgate")
	if err != nil {
		return nil, fmt.Errorf("loading taskgate app: %w", err)
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
