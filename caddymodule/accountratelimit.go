package caddymodule

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

func init() {
	caddy.RegisterModule(AccountRateLimit{})
}

// AccountRateLimit limits the requests of the authenticated account to its
// rate (the app's default rate for accounts that set none, including users
// authenticated by other handlers than api_key_auth). Every answer carries
// RateLimit-Policy and RateLimit headers; a refused request gets 429
// TOO_MANY_REQUESTS with Retry-After.
type AccountRateLimit struct {
	accounts     *account.Registry
	limiter      ratelimit.Store
	defaultLimit ratelimit.Limit
	// policyHeaders caches the RateLimit-Policy value of each limit in
	// use (ratelimit.Limit → string), shared by the app's handlers.
	policyHeaders *sync.Map
	logger        *zap.Logger

	allowed, missing, limited, storeError prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (AccountRateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.account_rate_limit",
		New: func() caddy.Module { return new(AccountRateLimit) },
	}
}

// Provision connects the handler to the taskgate app.
func (h *AccountRateLimit) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx)
	if err != nil {
		return err
	}
	h.bind(app, ctx.Logger())
	return nil
}

// bind takes from the app what the handler uses.
func (h *AccountRateLimit) bind(app *App, logger *zap.Logger) {
	h.accounts, h.limiter, h.defaultLimit = app.engine.Accounts, app.engine.Limiter, app.engine.DefaultLimit
	h.policyHeaders, h.logger = app.policyHeaders, logger
	h.allowed = decisionsTotal.WithLabelValues("account_rate_limit", "allowed")
	h.missing = decisionsTotal.WithLabelValues("account_rate_limit", "missing_credentials")
	h.limited = decisionsTotal.WithLabelValues("account_rate_limit", "too_many_requests")
	h.storeError = decisionsTotal.WithLabelValues("account_rate_limit", "store_error")
}

// ServeHTTP takes one request from the account's allowance.
func (h *AccountRateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, ok := authenticatedUser(w, r, h.missing)
	if !ok {
		return nil
	}
	limit := h.defaultLimit
	if acct, ok := h.accounts.Lookup(id); ok {
		if acct.Limit != (ratelimit.Limit{}) {
			limit = acct.Limit
		}
		id = acct.ID
	}
	res, err := h.limiter.Take(r.Context(), id, limit)
	if err != nil && r.Context().Err() != nil {
		// The client went away: nobody to answer, no store trouble.
		return nil
	}
	if err != nil {
		h.storeError.Inc()
		h.logger.Error("rate limit store failed; request let through", zap.Error(err))
		return next.ServeHTTP(w, r)
	}
	hdr := w.Header()
	policy := h.policyHeader(limit)
	// One backing array for both headers; the keys are in canonical form
	// so that no per-request canonicalization allocates.
	vals := []string{policy, res.StateHeader()}
	hdr[rateLimitPolicyHeader] = vals[0:1:1]
	hdr[rateLimitHeader] = vals[1:2:2]
	if !res.Allowed {
		h.limited.Inc()
		hdr.Set("Retry-After", strconv.FormatInt(ratelimit.CeilSeconds(res.RetryAfter), 10))
		apierr.Write(w, apierr.TooManyRequests)
		return nil
	}
	h.allowed.Inc()
	return next.ServeHTTP(w, r)
}

// policyHeader returns the RateLimit-Policy value of a limit, formatted
// once per limit.
func (h *AccountRateLimit) policyHeader(l ratelimit.Limit) string {
	if v, ok := h.policyHeaders.Load(l); ok {
		return v.(string)
	}
	v, _ := h.policyHeaders.LoadOrStore(l, l.PolicyHeader())
	return v.(string)
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*AccountRateLimit)(nil)
	_ caddy.Provisioner           = (*AccountRateLimit)(nil)
)
