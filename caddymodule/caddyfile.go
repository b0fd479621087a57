package caddymodule

import (
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
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
	httpcaddyfile.RegisterHandlerDirective("taskgate_console", parseConsole)
	httpcaddyfile.RegisterDirectiveOrder("taskgate_console", httpcaddyfile.Before, "abort")
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
//		storage memory | bolt <file> | redis <url> [{
//			replicas <n>
//			shards <n>
//			replicas_timeout <duration>
//		}]
//		on_store_error local | allow | deny [after <duration>]
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
	once := onceEach("account", "task_type")
	for d.NextBlock(0) {
		if err := once(d, "taskgate"); err != nil {
			return err
		}
		switch d.Val() {
		case "storage":
			st, err := parseStorage(d)
			if err != nil {
				return err
			}
			a.Storage = st
		case "rate_limit":
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
				if d.Val() != "after" || !d.NextArg() {
					return d.ArgErr()
				}
				after, err := caddy.ParseDuration(d.Val())
				if err != nil {
					return d.Errf("on_store_error after %q: %v", d.Val(), err)
				}
				// Given, 0 is out of bounds too (in JSON, the default).
				if after == 0 || validateOnStoreErrorAfter(after) != nil {
					return d.Errf("on_store_error after %s: want from %v to %v", d.Val(), minOnStoreErrorAfter, maxOnStoreErrorAfter)
				}
				a.OnStoreErrorAfter = caddy.Duration(after)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "auth_failures":
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
	once := onceEach()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, "storage "+st.Type); err != nil {
			return nil, err
		}
		if st.Type != "redis" {
			return nil, d.Errf("storage %s takes no block", st.Type)
		}
		switch d.Val() {
		case "replicas":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return nil, d.Errf("replicas %q: want a number of replicas, 0 or more", d.Val())
			}
			st.Replicas = n
		case "replicas_timeout":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return nil, d.Errf("replicas_timeout %q: want a positive duration", d.Val())
			}
			st.ReplicasTimeout = caddy.Duration(dur)
		case "shards":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 || n > storage.MaxShards {
				return nil, d.Errf("shards %q: want a number of shards, 1 to %d", d.Val(), storage.MaxShards)
			}
			st.Shards = n
		default:
			return nil, d.Errf("storage redis: unknown option %q (want replicas, replicas_timeout or shards)", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	if st.ReplicasTimeout > 0 && st.Replicas == 0 {
		return nil, d.Err("storage redis: replicas_timeout without replicas")
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

// errAt returns an error that names the file and line of tok, for problems
// seen only once the block that tok opens has been read: the dispenser is
// then at the block's end, a line that says nothing.
func errAt(tok caddyfile.Token, format string, args ...any) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.Errf(format, args...)
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)

// parseConsole parses the taskgate_console directive:
//
//	taskgate_console [<matcher>] {
//		base <path>
//		forward_auth_header <header>
//	}
func parseConsole(helper httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Console)
	return h, h.UnmarshalCaddyfile(helper.Dispenser)
}

// UnmarshalCaddyfile sets up the console from Caddyfile tokens.
func (h *Console) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	once := onceEach()
	for d.NextBlock(0) {
		if err := once(d, "taskgate_console"); err != nil {
			return err
		}
		option := d.Val()
		var dst *string
		switch option {
		case "base":
			dst = &h.Base
		case "forward_auth_header":
			dst = &h.ForwardAuthHeader
		default:
			return d.Errf("taskgate_console: unknown option %q (want base or forward_auth_header)", option)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		*dst = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if err := h.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// onceEach returns a check that refuses an option given twice in one
// block, but for the options named, which add to a list: a repeated option
// would otherwise silently be the last one's.
func onceEach(lists ...string) func(d *caddyfile.Dispenser, block string) error {
	seen := map[string]bool{}
	return func(d *caddyfile.Dispenser, block string) error {
		opt := d.Val()
		if slices.Contains(lists, opt) {
			return nil
		}
		if seen[opt] {
			return d.Errf("%s: %s given more than once", block, opt)
		}
		seen[opt] = true
		return nil
	}
}
