package caddymodule

// The blocks of the taskgate option: account (with its webhooks), task_type
// and webhooks.

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/webhook"
)

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
	once := onceEach("key_sha256", "key", "allow", "task_types", "webhook", "quota")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, "account "+c.ID); err != nil {
			return c, err
		}
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
		case "quota":
			q, err := parseQuota(d, c.ID, c.Quotas)
			if err != nil {
				return c, err
			}
			c.Quotas = append(c.Quotas, q)
		default:
			return c, d.Errf("account %s: unknown option %q", c.ID, d.Val())
		}
	}
	if len(c.KeySHA256) == 0 && len(c.Keys) == 0 {
		return c, errAt(at, "account %s: no key; set key_sha256 <hex> or key <value>", c.ID)
	}
	return c, nil
}

// parseQuota reads "quota N/day|N/month [<task type>...]", checked with
// the quotas read before it.
func parseQuota(d *caddyfile.Dispenser, accountID string, before []QuotaConfig) (QuotaConfig, error) {
	if !d.NextArg() {
		return QuotaConfig{}, d.ArgErr()
	}
	q, err := quota.Parse(d.Val())
	if err != nil {
		return QuotaConfig{}, d.Errf("account %s: %v", accountID, err)
	}
	q.TaskTypes = d.RemainingArgs()
	for _, t := range q.TaskTypes {
		if err := account.ValidateTaskType(t); err != nil {
			return QuotaConfig{}, d.Errf("account %s: quota: %v", accountID, err)
		}
	}
	all := []quota.Quota{q}
	for _, b := range before {
		all = append(all, quota.Quota{Limit: b.Limit, Period: quota.Period(b.Period), TaskTypes: b.TaskTypes})
	}
	if err := quota.ValidateSet(all); err != nil {
		return QuotaConfig{}, d.Errf("account %s: %v", accountID, err)
	}
	return QuotaConfig{Limit: q.Limit, Period: string(q.Period), TaskTypes: q.TaskTypes}, nil
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
	once := onceEach("types")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, "account "+accountID+": webhook "+w.URL); err != nil {
			return w, err
		}
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
	once := onceEach()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, "task_type "+c.Name); err != nil {
			return c, err
		}
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
		case "rate_limit":
			var err error
			if c.RateLimit, c.Burst, err = parseRateLimit(d); err != nil {
				return c, err
			}
			continue
		default:
			return c, d.Errf("task_type %s: unknown option %q", c.Name, opt)
		}
		if d.NextArg() {
			return c, d.ArgErr()
		}
	}
	t, err := c.build()
	if err != nil {
		return c, d.Err(err.Error())
	}
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
	once := onceEach("allow_private")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, "webhooks"); err != nil {
			return nil, err
		}
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
		case "disable_after":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if v := d.Val(); v != "off" {
				if dur, err := caddy.ParseDuration(v); err != nil || dur <= 0 {
					return nil, d.Errf("disable_after %q: want a positive duration or off", v)
				}
			}
			wh.DisableAfter = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "self_service":
			if !d.NextArg() || (d.Val() != "on" && d.Val() != "off") {
				return nil, d.Err("self_service: want on or off")
			}
			wh.SelfService = d.Val()
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
