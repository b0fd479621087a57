package caddymodule

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

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
	// RateLimit caps the calls to the source, as "N/s", "N/m", … (across
	// every node on a shared store); tasks wait in their queue for their
	// turn rather than fail. Default: none.
	RateLimit string `json:"rate_limit,omitempty"`
	// Burst is how many calls may go at once before RateLimit applies.
	// Default: one second's worth of RateLimit, at least 1.
	Burst int64 `json:"burst,omitempty"`
}

// StorageConfig selects a store.
type StorageConfig struct {
	// Type is "memory" (for tests: nothing survives a restart), "bolt"
	// (an embedded, durable database file, for one node) or "redis"
	// (shared by any number of nodes).
	Type string `json:"type"`
	// Path is the database file of "bolt". Placeholders such as
	// {env.STATE_DIRECTORY} are replaced.
	Path string `json:"path,omitempty"`
	// URL is the server of "redis": redis://[user:password@]host:port/db,
	// or rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// replaced at load.
	URL string `json:"url,omitempty"`
	// Replicas, with "redis", makes a task's creation wait until that
	// many replicas acknowledged it (WAIT), so that a failover loses no
	// accepted task; fewer within ReplicasTimeout (default 1s) answer 503.
	Replicas        int            `json:"replicas,omitempty"`
	ReplicasTimeout caddy.Duration `json:"replicas_timeout,omitempty"`
	// Shards, with "redis", spreads the accounts' data over that many
	// hash tags, so that a Redis Cluster spreads it over its masters: a
	// multiple of the masters. Fixed for a deployment at its first start.
	Shards int `json:"shards,omitempty"`
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
	// Quotas bound the tasks the account may create in a UTC day or
	// month; an accepted task spends a unit of each quota that covers its
	// type, and one that ends SOURCE_DOWN gives it back.
	Quotas []QuotaConfig `json:"quotas,omitempty"`
}

// QuotaConfig is one quota of an account.
type QuotaConfig struct {
	// Limit is the most tasks the account may create in a period; at
	// least 1.
	Limit int64 `json:"limit"`
	// Period is "day" or "month", UTC calendar periods.
	Period string `json:"period"`
	// TaskTypes limits the quota to these "action/type" task types;
	// empty counts every task type.
	TaskTypes []string `json:"task_types,omitempty"`
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
	// SelfService "off" stops accounts from changing their webhook
	// endpoints through the client API (GET /v3/webhooks still lists
	// them); the operator still can, through the admin API. Default: on.
	SelfService string `json:"self_service,omitempty"`
	// DisableAfter is how long every attempt at an endpoint of a dynamic
	// account may fail before taskgate disables it and tells the
	// account's failure webhook ("webhook.disabled"): a duration, or
	// "off". Default: 5 days. A 410 Gone disables it at once.
	DisableAfter string `json:"disable_after,omitempty"`
}

// The App's defaults.
const (
	defaultSyncTimeout = 50 * time.Second
	defaultRetention   = 7 * 24 * time.Hour
	defaultMaxBody     = 4 << 20
)

// engineConfig turns the app's JSON config into the engine's and the
// store's, checking every value: the Caddyfile-or-JSON → engine.Config
// translation, placeholders replaced, defaults applied.
func (a *App) engineConfig(ctx caddy.Context) (engine.Config, storage.Config, error) {
	cfg := engine.Config{
		SyncTimeout: time.Duration(a.SyncTimeout),
		Retention:   time.Duration(a.Retention),
		MaxBody:     a.MaxBody,
		BodyTimeout: time.Duration(a.BodyTimeout),
		Logger:      a.logger,
	}
	// The Caddyfile refuses these; JSON config comes here unchecked.
	if cfg.SyncTimeout < 0 || cfg.Retention < 0 || cfg.MaxBody < 0 || cfg.BodyTimeout < 0 {
		return cfg, storage.Config{}, errors.New("sync_timeout, retention, max_body and body_timeout must be positive")
	}
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = defaultSyncTimeout
	}
	if cfg.Retention == 0 {
		cfg.Retention = defaultRetention
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = defaultMaxBody
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = api.DefaultBodyTimeout
	}
	var err error
	switch {
	case a.RateLimit != "":
		cfg.DefaultLimit, err = ratelimit.ParseLimit(a.RateLimit, a.Burst)
	case a.Burst != 0:
		cfg.DefaultLimit, err = ratelimit.NewLimit(ratelimit.DefaultLimit.Count, ratelimit.DefaultLimit.Period, a.Burst)
	default:
		cfg.DefaultLimit = ratelimit.DefaultLimit
	}
	if err != nil {
		return cfg, storage.Config{}, fmt.Errorf("rate_limit: %w", err)
	}
	repl := caddy.NewReplacer()
	for i := range a.Accounts {
		acct, err := a.Accounts[i].build(repl)
		if err != nil {
			return cfg, storage.Config{}, err
		}
		cfg.Accounts = append(cfg.Accounts, acct)
	}
	for _, c := range a.TaskTypes {
		if err := account.ValidateTaskType(c.Name); err != nil {
			return cfg, storage.Config{}, err
		}
		t, err := c.build()
		if err != nil {
			return cfg, storage.Config{}, err
		}
		cfg.TaskTypes = append(cfg.TaskTypes, t)
	}
	if cfg.Webhooks, err = a.Webhooks.build(adminPorts(ctx)); err != nil {
		return cfg, storage.Config{}, err
	}
	if err := a.checkDestinations(cfg.Webhooks.Egress); err != nil {
		return cfg, storage.Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, storage.Config{}, err
	}
	st := a.storageConfig()
	if err := st.Validate(); err != nil {
		return cfg, st, err
	}
	return cfg, st, nil
}

// storageConfig is the store the app names, placeholders of its file or
// URL replaced (default: memory).
func (a *App) storageConfig() storage.Config {
	if a.Storage == nil {
		return storage.Config{Type: "memory"}
	}
	repl := caddy.NewReplacer()
	return storage.Config{
		Type: a.Storage.Type,
		Path: repl.ReplaceKnown(a.Storage.Path, ""),
		URL:  repl.ReplaceKnown(a.Storage.URL, ""),

		Replicas:        a.Storage.Replicas,
		ReplicasTimeout: time.Duration(a.Storage.ReplicasTimeout),
		Shards:          a.Storage.Shards,
	}
}

// build returns the task type the config describes (defaults unset).
func (c TaskTypeConfig) build() (*task.Type, error) {
	action, typ, _ := strings.Cut(c.Name, "/")
	t := &task.Type{
		Action:      action,
		Type:        typ,
		Source:      c.Source,
		Timeout:     time.Duration(c.Timeout),
		Concurrency: c.Concurrency,
		OutputKey:   c.OutputKey,
	}
	if c.RateLimit != "" || c.Burst != 0 {
		l, err := account.BuildLimit(c.RateLimit, c.Burst)
		if err != nil {
			return nil, fmt.Errorf("task_type %s: %w", c.Name, err)
		}
		t.RateLimit = l
	}
	return t, nil
}

// build turns the config of a static account into an account: keys and
// webhook secrets have their placeholders replaced (and must not come out
// empty), then account.Spec builds it as it builds a dynamic account.
func (c *AccountConfig) build(repl *caddy.Replacer) (*account.Account, error) {
	if err := account.ValidateID(c.ID); err != nil {
		return nil, err
	}
	spec := account.Spec{
		ID:             c.ID,
		RateLimit:      c.RateLimit,
		Burst:          c.Burst,
		Allow:          c.Allow,
		TaskTypes:      c.TaskTypes,
		FailureWebhook: c.FailureWebhook,
		Static:         true,
	}
	for _, q := range c.Quotas {
		spec.Quotas = append(spec.Quotas, quota.Quota{Limit: q.Limit, Period: quota.Period(q.Period), TaskTypes: q.TaskTypes})
	}
	for _, h := range c.KeySHA256 {
		sum, err := account.ParseKeyHash(h)
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", c.ID, err)
		}
		spec.Keys = append(spec.Keys, account.Key{Hash: sum})
	}
	for _, k := range c.Keys {
		plain := repl.ReplaceKnown(k, "")
		if strings.TrimSpace(plain) == "" {
			return nil, fmt.Errorf("account %s: a key is empty (is its environment variable set?)", c.ID)
		}
		spec.Keys = append(spec.Keys, account.Key{Hash: account.HashKey(plain)})
	}
	if len(spec.Keys) == 0 {
		return nil, fmt.Errorf("account %s: no key; set key_sha256 or key", c.ID)
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
		spec.Webhooks = append(spec.Webhooks, hook)
	}
	acct, err := spec.Build()
	if err != nil && !strings.HasPrefix(err.Error(), "account ") {
		return nil, fmt.Errorf("account %s: %w", c.ID, err)
	}
	return acct, err
}

// build returns the webhook delivery config, defaults applied (a nil
// config gives the defaults): the retry policy, the egress settings
// (proxy, source address), and the policy of destinations, which never
// opens protectedPorts (the admin endpoint's).
func (c *WebhooksConfig) build(protectedPorts []uint16) (engine.WebhooksConfig, error) {
	var out engine.WebhooksConfig
	var err error
	if out.Egress, err = c.egressPolicy(protectedPorts); err != nil {
		return out, err
	}
	// Endpoints failing this long are disabled unless the config says
	// otherwise, with a webhooks block or without one.
	out.DisableAfter = endpoints.DefaultDisableAfter
	if c != nil {
		out.Policy = webhook.Policy{
			First:   time.Duration(c.RetryFirst),
			Max:     time.Duration(c.RetryMax),
			GiveUp:  time.Duration(c.GiveUpAfter),
			Timeout: time.Duration(c.Timeout),
		}
		if c.Proxy != "" {
			u, err := url.Parse(c.Proxy)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return out, fmt.Errorf("webhooks: proxy %q must be an http:// or https:// URL", c.Proxy)
			}
			out.Sender.Proxy = u
		}
		if c.PerURL < 0 || c.PerURL > 1024 {
			return out, fmt.Errorf("webhooks: per_url %d must be 1 to 1024", c.PerURL)
		}
		out.PerURL = c.PerURL
		switch c.DisableAfter {
		case "":
		case "off":
			out.DisableAfter = 0
		default:
			d, err := caddy.ParseDuration(c.DisableAfter)
			if err != nil || d <= 0 {
				return out, fmt.Errorf("webhooks: disable_after %q must be a positive duration or off", c.DisableAfter)
			}
			out.DisableAfter = d
		}
		switch c.SelfService {
		case "", "on":
		case "off":
			out.NoSelfService = true
		default:
			return out, fmt.Errorf("webhooks: self_service %q must be on or off", c.SelfService)
		}
		if c.SourceAddress != "" {
			ip, err := netip.ParseAddr(c.SourceAddress)
			if err != nil || ip.Zone() != "" {
				return out, fmt.Errorf("webhooks: source_address %q must be an IP address", c.SourceAddress)
			}
			out.Sender.SourceIP = ip.Unmap()
		}
	}
	out.Policy = out.Policy.WithDefaults()
	if err := out.Policy.Validate(); err != nil {
		return out, fmt.Errorf("webhooks: %w", err)
	}
	return out, nil
}

// The bounds of on_store_error's after. A call to Redis gives up after 1s
// of its own (the store's I/O timeout): a longer wait would end there.
const (
	minOnStoreErrorAfter = time.Millisecond
	maxOnStoreErrorAfter = time.Second
)

// validateOnStoreErrorAfter checks on_store_error's wait (0: the default).
func validateOnStoreErrorAfter(d time.Duration) error {
	if d != 0 && (d < minOnStoreErrorAfter || d > maxOnStoreErrorAfter) {
		return fmt.Errorf("on_store_error after %v: want from %v to %v", d, minOnStoreErrorAfter, maxOnStoreErrorAfter)
	}
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
