package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
)

func init() {
	caddy.RegisterModule(IPAllowlist{})
}

// IPAllowlist lets a request pass only when its client address is in the
// authenticated account's allow list (any address when the list is empty).
// The client address is the peer, or behind trusted_proxies the right-most
// forwarded address that is not a trusted proxy (the taskgate app's
// client_ip says otherwise only when set to "caddy"); never a header from
// an untrusted peer, never an address the client wrote to the left of its
// proxy's. A request that no handler authenticated gets 401
// MISSING_CREDENTIALS; one from an address not allowed gets 403
// IP_NOT_ALLOWED.
type IPAllowlist struct {
	accounts *account.Registry
	clientIP clientIPMode

	allowed, missing, refused prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (IPAllowlist) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ip_allowlist",
		New: func() caddy.Module { return new(IPAllowlist) },
	}
}

// Provision connects the handler to the taskgate app.
func (h *IPAllowlist) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx)
	if err != nil {
		return err
	}
	h.bind(app)
	return nil
}

// bind takes from the app what the handler uses.
func (h *IPAllowlist) bind(app *App) {
	h.accounts, h.clientIP = app.engine.Accounts, clientIPMode(app.ClientIP)
	h.allowed = decisionsTotal.WithLabelValues("ip_allowlist", "allowed")
	h.missing = decisionsTotal.WithLabelValues("ip_allowlist", "missing_credentials")
	h.refused = decisionsTotal.WithLabelValues("ip_allowlist", "ip_not_allowed")
}

// ServeHTTP checks the client address.
func (h *IPAllowlist) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, ok := authenticatedUser(w, r, h.missing)
	if !ok {
		return nil
	}
	if acct, ok := h.accounts.Lookup(id); ok && len(acct.Allow) > 0 {
		if addr := h.clientIP.addr(r); !addr.IsValid() || !acct.Allow.Allows(addr) {
			h.refused.Inc()
			apierr.Write(w, apierr.IPNotAllowed)
			return nil
		}
	}
	h.allowed.Inc()
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*IPAllowlist)(nil)
	_ caddy.Provisioner           = (*IPAllowlist)(nil)
)
