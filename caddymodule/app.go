// Package caddymodule adapts taskgate's engine (package backend) to Caddy:
// the taskgate app, the HTTP handlers and their Caddyfile syntax.
package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/ipallow"
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

	// Accounts are the static accounts.
	Accounts []AccountConfig `json:"accounts,omitempty"`

	// Webhooks configures webhook delivery.
	Webhooks *WebhooksConfig `json:"webhooks,omitempty"`

	defaultLimit ratelimit.Limit
	registry     *account.Registry
	limiter      ratelimit.Store
	limiterKey   string
	// policyHeaders holds the RateLimit-Policy value of every configured limit.
	policyHeaders map[ratelimit.Limit]string
	logger        *zap.Logger
}

// StorageConfig selects a store.
type StorageConfig struct {
	// Type is "memory" (the only type so far; "bolt" and "redis" are
	// reserved).
	Type string `json:"type"`
	// Path is the database file of "bolt".
	Path string `json:"path,omitempty"`
	// URL is the server URL of "redis".
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
}

// WebhooksConfig configures webhook delivery.
type WebhooksConfig struct {
	// Timeout bounds one delivery attempt. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// RetryFirst is the delay before the first retry. Default: 2s.
	RetryFirst caddy.Duration `json:"retry_first,omitempty"`
	// RetryMax caps the delay between retries. Default: 1h.
	RetryMax caddy.Duration `json:"retry_max,omitempty"`
	// GiveUpAfter ends retrying this long after the first attempt.
	// Default: 24h.
	GiveUpAfter caddy.Duration `json:"give_up_after,omitempty"`
	// Proxy, when set, is the HTTP proxy every delivery goes through.
	Proxy string `json:"proxy,omitempty"`
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
	if a.RateLimit == "" {
		a.RateLimit = "30/s"
	}
	var err error
	a.defaultLimit, err = ratelimit.ParseLimit(a.RateLimit, a.Burst)
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
	a.policyHeaders = map[ratelimit.Limit]string{a.defaultLimit: policyHeader(a.defaultLimit.Burst, a.defaultLimit.Window())}
	for _, acct := range accounts {
		a.policyHeaders[acct.Limit] = policyHeader(acct.Limit.Burst, acct.Limit.Window())
	}
	a.registry, err = account.NewRegistry(accounts, nil)
	if err != nil {
		return err
	}

	switch a.Storage.Type {
	case "memory":
	case "bolt", "redis":
		return fmt.Errorf("storage %s: not available in this version; use memory", a.Storage.Type)
	default:
		return fmt.Errorf("storage %q: want memory, bolt or redis", a.Storage.Type)
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
		acct.Webhooks = append(acct.Webhooks, account.Webhook{
			URL:           w.URL,
			Secret:        repl.ReplaceKnown(w.Secret, ""),
			Authorization: repl.ReplaceKnown(w.Authorization, ""),
			Types:         w.Types,
		})
	}
	if err := acct.Validate(); err != nil {
		return nil, err
	}
	return acct, nil
}

// Start does nothing yet: the edge chain has no background work of its own.
func (a *App) Start() error { return nil }

// Stop does nothing yet.
func (a *App) Stop() error { return nil }

// Cleanup releases the shared stores. It is safe after a failed Provision.
func (a *App) Cleanup() error {
	if a.limiter != nil {
		a.limiter = nil
		_, err := limiterPool.Delete(a.limiterKey)
		return err
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
