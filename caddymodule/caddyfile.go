package caddymodule

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/webhook"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("taskgate", parseGlobalOption)

	// The edge chain runs after Caddy's own authentication handlers, in
	// the order auth → allowlist → limit, so no `order` lines are needed.
	httpcaddyfile.RegisterHandlerDirective("api_key_auth", parseHandler(new(APIKeyAuth)))
	httpcaddyfile.RegisterDirectiveOrder("api_key_auth", httpcaddyfile.After, "forward_auth")
	httpcaddyfile.RegisterHandlerDirective("ip_allowlist", parseHandler(new(IPAllowlist)))
	httpcaddyfile.RegisterDirectiveOrder("ip_allowlist", httpcaddyfile.Before, "request_header")
	httpcaddyfile.RegisterHandlerDirective("account_rate_limit", parseHandler(new(AccountRateLimit)))
	httpcaddyfile.RegisterDirectiveOrder("account_rate_limit", httpcaddyfile.Before, "request_header")
	httpcaddyfile.RegisterHandlerDirective("task_api", parseHandler(new(TaskAPI)))
	httpcaddyfile.RegisterDirectiveOrder("task_api", httpcaddyfile.Before, "abort")
}

// parseHandler returns the parser of a directive that takes no arguments.
func parseHandler(h caddyhttp.MiddlewareHandler) httpcaddyfile.UnmarshalHandlerFunc {
	return func(helper httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		d := helper.Dispenser
		d.Next() // directive name
		name := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		if d.NextBlock(0) {
			return nil, d.Errf("%s takes no block: accounts are configured in the global taskgate option", name)
		}
		return h, nil
	}
}

// parseGlobalOption parses the global `taskgate { … }` option:
//
//	taskgate {
//		storage memory | bolt <file> | redis <url>
//		on_store_error local | allow | deny
//		rate_limit <rate> [burst <n>]
//		sync_timeout <duration>
//		retention <duration>
//		max_body <size>
//		body_timeout <duration>
//		auth_failures <rate> [burst <n>] | off
//		client_ip rightmost_untrusted | caddy
//		account <id> {
//			key_sha256 <hex>
//			key <key or {env.VAR}>
//			rate_limit <rate> [burst <n>]
//			allow <cidr...>
//			task_types <action/type...>
//			webhook <url> {
//				secret <whsec_…>
//				authorization <value>
//				types <action/type...>
//			}
//			failure_webhook <url>
//		}
//		task_type <action/type> {
//			source <url>
//			timeout <duration>
//			concurrency <n>
//			output_key <key>
//		}
//		webhooks {
//			timeout <duration>
//			retry <first> <max> <give up after>
//			proxy <url>
//			source_address <ip>
//			per_url <n>
//			allow_private <cidr...>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("taskgate: option given more than once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "taskgate", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Values are
// checked here too, so that an error names its line.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	// Webhook destinations are checked once allow_private, which may come
	// after them, is known.
	var dests []destination
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage":
			if a.Storage != nil {
				return d.Err("storage given more than once")
			}
			st, err := parseStorage(d)
			if err != nil {
				return err
			}
			a.Storage = st
		case "rate_limit":
			if a.RateLimit != "" {
				return d.Err("rate_limit given more than once")
			}
			var err error
			if a.RateLimit, a.Burst, err = parseRateLimit(d); err != nil {
				return err
			}
		case "on_store_error":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.OnStoreError = d.Val()
			if err := validateOnStoreError(a.OnStoreError); err != nil {
				return d.Err(err.Error())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "auth_failures":
			if a.AuthFailures != "" {
				return d.Err("auth_failures given more than once")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == authFailuresOff {
				a.AuthFailures = authFailuresOff
				if d.NextArg() {
					return d.ArgErr()
				}
				break
			}
			d.Prev()
			var err error
			if a.AuthFailures, a.AuthFailuresBurst, err = parseRateLimit(d); err != nil {
				return err
			}
			if _, err := parseAuthFailures(a.AuthFailures, a.AuthFailuresBurst); err != nil {
				return d.Err(err.Error())
			}
		case "client_ip":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.ClientIP = d.Val()
			if err := validateClientIP(a.ClientIP); err != nil {
				return d.Err(err.Error())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "sync_timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			a.SyncTimeout = dur
		case "retention":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			a.Retention = dur
		case "max_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size == 0 || size > 1<<40 {
				return d.Errf("max_body %q: want a size such as 4MiB", d.Val())
			}
			a.MaxBody = int64(size)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "body_timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			a.BodyTimeout = dur
		case "account":
			at := d.Token()
			acct, err := parseAccount(d, &dests)
			if err != nil {
				return err
			}
			if seen[acct.ID] {
				return errAt(at, "account %s: defined more than once", acct.ID)
			}
			seen[acct.ID] = true
			a.Accounts = append(a.Accounts, acct)
		case "task_type":
			tt, err := parseTaskType(d)
			if err != nil {
				return err
			}
			for _, other := range a.TaskTypes {
				if other.Name == tt.Name {
					return d.Errf("task_type %s: defined more than once", tt.Name)
				}
			}
			a.TaskTypes = append(a.TaskTypes, tt)
		case "webhooks":
			if a.Webhooks != nil {
				return d.Err("webhooks given more than once")
			}
			wh, err := parseWebhooks(d)
			if err != nil {
				return err
			}
			a.Webhooks = wh
		default:
			return d.Errf("taskgate: unknown option %q", d.Val())
		}
	}
	for _, acct := range a.Accounts {
		for _, name := range acct.TaskTypes {
			if !slices.ContainsFunc(a.TaskTypes, func(t TaskTypeConfig) bool { return t.Name == name }) {
				return d.Errf("account %s: task type %s is not defined by a task_type", acct.ID, name)
			}
		}
	}
	// The admin endpoint's port is checked at load (Provision), which
	// knows the admin address; the ranges are checked here, for the line.
	policy, err := a.Webhooks.egressPolicy(nil)
	if err != nil {
		return err
	}
	for _, dest := range dests {
		if err := policy.CheckURL(dest.tok.Text); err != nil {
			return errAt(dest.tok, "account %s: %s: %v", dest.accountID, dest.what, err)
		}
	}
	return nil
}

// destination is a webhook URL in the Caddyfile, where it stands.
type destination struct {
	tok       caddyfile.Token
	accountID string
	// what names the setting: "webhook" or "failure_webhook".
	what string
}

func parseStorage(d *caddyfile.Dispenser) (*StorageConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	st := &StorageConfig{Type: d.Val()}
	switch st.Type {
	case "memory":
	case "bolt":
		if !d.NextArg() {
			return nil, d.Err("storage bolt: want a database file")
		}
		st.Path = d.Val()
	case "redis":
		if !d.NextArg() {
			return nil, d.Err("storage redis: want a redis:// or rediss:// URL")
		}
		st.URL = d.Val()
	default:
		return nil, d.Errf("storage %q: want memory, bolt <file> or redis <url>", st.Type)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	return st, nil
}

// parseRateLimit parses `<rate> [burst <n>]` after an option's name and
// checks it.
func parseRateLimit(d *caddyfile.Dispenser) (string, int64, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", 0, d.ArgErr()
	}
	rate := d.Val()
	var burst int64
	if d.NextArg() {
		if d.Val() != "burst" || !d.NextArg() {
			return "", 0, d.Errf("%s: want <rate> [burst <n>]", name)
		}
		n, err := strconv.ParseInt(d.Val(), 10, 64)
		if err != nil || n <= 0 {
			return "", 0, d.Errf("%s: burst %q must be a positive integer", name, d.Val())
		}
		burst = n
	}
	if d.NextArg() {
		return "", 0, d.ArgErr()
	}
	if _, err := ratelimit.ParseLimit(rate, burst); err != nil {
		return "", 0, d.Errf("%s: %v", name, err)
	}
	return rate, burst, nil
}

func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30s or 7d", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

func parseAccount(d *caddyfile.Dispenser, dests *[]destination) (AccountConfig, error) {
	var c AccountConfig
	at := d.Token()
	if !d.NextArg() {
		return c, d.Err("account: want an id")
	}
	c.ID = d.Val()
	if err := account.ValidateID(c.ID); err != nil {
		return c, d.Err(err.Error())
	}
	if d.NextArg() {
		return c, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key_sha256":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			h := strings.ToLower(d.Val())
			if _, err := account.ParseKeyHash(h); err != nil {
				return c, d.Errf("account %s: %v", c.ID, err)
			}
			c.KeySHA256 = append(c.KeySHA256, h)
			if d.NextArg() {
				return c, d.ArgErr()
			}
		case "key":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			if strings.TrimSpace(d.Val()) == "" {
				return c, d.Errf("account %s: key is empty", c.ID)
			}
			c.Keys = append(c.Keys, d.Val())
			if d.NextArg() {
				return c, d.ArgErr()
			}
		case "rate_limit":
			if c.RateLimit != "" {
				return c, d.Errf("account %s: rate_limit given more than once", c.ID)
			}
			var err error
			if c.RateLimit, c.Burst, err = parseRateLimit(d); err != nil {
				return c, err
			}
		case "allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			for _, n := range args {
				if _, err := ipallow.ParsePrefix(n); err != nil {
					return c, d.Errf("account %s: allow: %v", c.ID, err)
				}
			}
			c.Allow = append(c.Allow, args...)
		case "task_types":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			for _, t := range args {
				if err := account.ValidateTaskType(t); err != nil {
					return c, d.Errf("account %s: %v", c.ID, err)
				}
			}
			c.TaskTypes = append(c.TaskTypes, args...)
		case "webhook":
			w, err := parseWebhook(d, c.ID)
			if err != nil {
				return c, err
			}
			*dests = append(*dests, destination{tok: w.tok, accountID: c.ID, what: "webhook"})
			c.Webhooks = append(c.Webhooks, w)
		case "failure_webhook":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			if err := account.ValidateWebhookURL(d.Val()); err != nil {
				return c, d.Errf("account %s: failure_webhook: %v", c.ID, err)
			}
			c.FailureWebhook = d.Val()
			*dests = append(*dests, destination{tok: d.Token(), accountID: c.ID, what: "failure_webhook"})
			if d.NextArg() {
				return c, d.ArgErr()
			}
		default:
			return c, d.Errf("account %s: unknown option %q", c.ID, d.Val())
		}
	}
	if len(c.KeySHA256) == 0 && len(c.Keys) == 0 {
		return c, errAt(at, "account %s: no key; set key_sha256 <hex> or key <value>", c.ID)
	}
	return c, nil
}

// errAt returns an error that names the file and line of tok, for problems
// seen only once the block that tok opens has been read: the dispenser is
// then at the block's end, a line that says nothing.
func errAt(tok caddyfile.Token, format string, args ...any) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.Errf(format, args...)
}

func parseWebhook(d *caddyfile.Dispenser, accountID string) (WebhookConfig, error) {
	var w WebhookConfig
	if !d.NextArg() {
		return w, d.ArgErr()
	}
	w.URL = d.Val()
	w.tok = d.Token()
	if err := account.ValidateWebhookURL(w.URL); err != nil {
		return w, d.Errf("account %s: %v", accountID, err)
	}
	if d.NextArg() {
		return w, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "secret":
			if !d.NextArg() {
				return w, d.ArgErr()
			}
			w.Secret = d.Val()
			if !strings.Contains(w.Secret, "{") {
				if _, err := webhook.ParseSecret(w.Secret); err != nil {
					return w, d.Errf("account %s: webhook %s: %v", accountID, w.URL, err)
				}
			}
		case "authorization":
			if !d.NextArg() {
				return w, d.ArgErr()
			}
			w.Authorization = d.Val()
		case "types":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return w, d.ArgErr()
			}
			for _, t := range args {
				if err := account.ValidateTaskType(t); err != nil {
					return w, d.Errf("account %s: webhook %s: %v", accountID, w.URL, err)
				}
			}
			w.Types = append(w.Types, args...)
			continue
		default:
			return w, d.Errf("account %s: webhook %s: unknown option %q", accountID, w.URL, d.Val())
		}
		if d.NextArg() {
			return w, d.ArgErr()
		}
	}
	return w, nil
}

func parseTaskType(d *caddyfile.Dispenser) (TaskTypeConfig, error) {
	var c TaskTypeConfig
	if !d.NextArg() {
		return c, d.Err("task_type: want action/type")
	}
	c.Name = d.Val()
	if err := account.ValidateTaskType(c.Name); err != nil {
		return c, d.Err(err.Error())
	}
	if d.NextArg() {
		return c, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "source":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			c.Source = d.Val()
		case "timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return c, err
			}
			c.Timeout = dur
			continue
		case "concurrency":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 || n > 10000 {
				return c, d.Errf("task_type %s: concurrency %q must be 1 to 10000", c.Name, d.Val())
			}
			c.Concurrency = n
		case "output_key":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			c.OutputKey = d.Val()
		default:
			return c, d.Errf("task_type %s: unknown option %q", c.Name, opt)
		}
		if d.NextArg() {
			return c, d.ArgErr()
		}
	}
	t := c.build()
	if err := t.Validate(); err != nil {
		return c, d.Err(err.Error())
	}
	return c, nil
}

func parseWebhooks(d *caddyfile.Dispenser) (*WebhooksConfig, error) {
	wh := new(WebhooksConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return nil, err
			}
			wh.Timeout = dur
		case "retry":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return nil, d.Err("retry: want <first delay> <max delay> <give up after>")
			}
			var durs [3]caddy.Duration
			for i, s := range args {
				dur, err := caddy.ParseDuration(s)
				if err != nil || dur <= 0 {
					return nil, d.Errf("retry %q: want a positive duration", s)
				}
				durs[i] = caddy.Duration(dur)
			}
			if durs[0] > durs[1] {
				return nil, d.Err("retry: the first delay must not exceed the max delay")
			}
			wh.RetryFirst, wh.RetryMax, wh.GiveUpAfter = durs[0], durs[1], durs[2]
		case "proxy":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if err := account.ValidateWebhookURL(d.Val()); err != nil {
				return nil, d.Errf("proxy: %v", err)
			}
			wh.Proxy = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "per_url":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 || n > 1024 {
				return nil, d.Errf("per_url %q: want 1 to 1024 attempts in flight per webhook URL", d.Val())
			}
			wh.PerURL = n
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "allow_private":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Err("allow_private: want one or more CIDRs or addresses")
			}
			for _, n := range args {
				if _, err := ipallow.ParsePrefix(n); err != nil {
					return nil, d.Errf("allow_private: %v", err)
				}
			}
			wh.AllowPrivate = append(wh.AllowPrivate, args...)
		case "source_address":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if _, err := netip.ParseAddr(d.Val()); err != nil {
				return nil, d.Errf("source_address %q: want an IP address", d.Val())
			}
			wh.SourceAddress = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("webhooks: unknown option %q", d.Val())
		}
	}
	return wh, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
