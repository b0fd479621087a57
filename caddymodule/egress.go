package caddymodule

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/caddyserver/caddy/v2"

	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/ipallow"
)

// egressPolicy returns the policy webhook URLs are held to: the ranges
// that AllowPrivate opens, and the protected ports (the admin endpoint's)
// closed on every address of this machine. A nil config opens nothing.
func (c *WebhooksConfig) egressPolicy(protectedPorts []uint16) (*egress.Policy, error) {
	cfg := egress.Config{ProtectedPorts: protectedPorts}
	if c != nil {
		allow, err := ipallow.Parse(c.AllowPrivate)
		if err != nil {
			return nil, fmt.Errorf("webhooks: allow_private: %w", err)
		}
		cfg.AllowPrivate = allow
	}
	return egress.New(cfg), nil
}

// checkDestinations refuses the config when a static account's webhook or
// failure webhook is a destination the policy refuses.
func (a *App) checkDestinations(policy *egress.Policy) error {
	for _, acct := range a.Accounts {
		for _, w := range acct.Webhooks {
			if err := policy.CheckURL(w.URL); err != nil {
				return fmt.Errorf("account %s: webhook: %w (webhooks { allow_private <cidr> } opens a range)", acct.ID, err)
			}
		}
		if acct.FailureWebhook != "" {
			if err := policy.CheckURL(acct.FailureWebhook); err != nil {
				return fmt.Errorf("account %s: failure_webhook: %w (webhooks { allow_private <cidr> } opens a range)", acct.ID, err)
			}
		}
	}
	return nil
}

// adminPorts returns the TCP ports of the admin endpoint (and of the remote
// admin endpoint) of the config being provisioned: a webhook must never
// reach them, whatever range allow_private opens. Caddy keeps a context's
// config to itself, so it is read through reflection; should that ever
// fail, the ports of the default address (or CADDY_ADMIN) stand in.
func adminPorts(ctx caddy.Context) []uint16 {
	listens := []string{caddy.DefaultAdminListen}
	if cfg := contextConfig(ctx); cfg != nil && cfg.Admin != nil {
		if cfg.Admin.Disabled {
			listens = nil
		} else if cfg.Admin.Listen != "" {
			listens = []string{cfg.Admin.Listen}
		}
		if cfg.Admin.Remote != nil {
			remote := cfg.Admin.Remote.Listen
			if remote == "" {
				remote = caddy.DefaultRemoteAdminListen
			}
			listens = append(listens, remote)
		}
	}
	var ports []uint16
	for _, l := range listens {
		na, err := caddy.ParseNetworkAddress(l)
		if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() {
			continue
		}
		for p := na.StartPort; p <= na.EndPort && p <= 65535; p++ {
			ports = append(ports, uint16(p))
			if p-na.StartPort >= 64 {
				break // a range that long is not an admin endpoint
			}
		}
	}
	return ports
}

// contextConfig returns the config a context provisions, or nil.
func contextConfig(ctx caddy.Context) *caddy.Config {
	v := reflect.ValueOf(&ctx).Elem().FieldByName("cfg")
	if !v.IsValid() || v.Type() != reflect.TypeFor[*caddy.Config]() || v.IsNil() {
		return nil
	}
	return (*caddy.Config)(unsafe.Pointer(v.Pointer()))
}
