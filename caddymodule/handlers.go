package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/authfail"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

func init() {
	caddy.RegisterModule(APIKeyAuth{})
	caddy.RegisterModule(IPAllowlist{})
	caddy.RegisterModule(AccountRateLimit{})
}

// The request headers that carry credentials.
const (
	accountIDHeader = "Account-Id"
	apiKeyHeader    = "Api-Key"
)

// misspeltKeyHeaders are other headers a client may put its key in by
// mistake, in Go's canonical form: api_key_auth reads none of them, and
// removes them all, so that a key sent there does not reach an upstream
// either. (Caddy drops headers with an underscore before any handler
// unless the server's expected_underscore_headers lets them through.)
// Authorization is left alone: it may be meant for the upstream.
var misspeltKeyHeaders = [...]string{"X-Api-Key", "Api_key"}

// userIDPlaceholder is where api_key_auth (or Caddy's basic_auth, or any
// other authentication handler) leaves the authenticated account's id.
const userIDPlaceholder = "http.auth.user.id"

// The rate-limit response headers, in Go's canonical form.
const (
	rateLimitPolicyHeader = "Ratelimit-Policy"
	rateLimitHeader       = "Ratelimit"
)

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

// APIKeyAuth authenticates requests by their account-id and api-key
// headers against the taskgate app's accounts. On success it sets
// {http.auth.user.id} to the account id and removes the api-key header
// (and X-Api-Key and api_key, where a client may send its key by mistake),
// so that the key never reaches an upstream. (Caddy's logs record the request
// as it arrived: a log filter keeps the key out of them, see the README.)
// On failure it answers 401 MISSING_CREDENTIALS or 403 INVALID_CREDENTIALS.
//
// Failures are throttled per client address (the taskgate app's
// auth_failures): each spends one of the address's allowance, and while
// it has none left every request from the address gets 429
// TOO_MANY_FAILED_AUTHENTICATIONS with Retry-After before its credentials
// are looked at, right ones included, so that a throttled guesser cannot
// tell a right guess. Successful authentications never spend.
type APIKeyAuth struct {
	app    *App
	logger *zap.Logger

	allowed, missing, invalid, throttled prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (APIKeyAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.api_key_auth",
		New: func() caddy.Module { return new(APIKeyAuth) },
	}
}

// Provision connects the handler to the taskgate app.
func (h *APIKeyAuth) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	var err error
	if h.app, err = loadApp(ctx); err != nil {
		return err
	}
	h.allowed = decisionsTotal.WithLabelValues("api_key_auth", "allowed")
	h.missing = decisionsTotal.WithLabelValues("api_key_auth", "missing_credentials")
	h.invalid = decisionsTotal.WithLabelValues("api_key_auth", "invalid_credentials")
	h.throttled = decisionsTotal.WithLabelValues("api_key_auth", "too_many_failures")
	return nil
}

// ServeHTTP authenticates the request.
func (h *APIKeyAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ids, keys := r.Header[accountIDHeader], r.Header[apiKeyHeader]
	// The key leaves the request whatever happens next, so that no later
	// handler or upstream sees it.
	delete(r.Header, apiKeyHeader)
	for _, name := range misspeltKeyHeaders {
		delete(r.Header, name)
	}
	// While no address is throttled (the usual case), the client address
	// is not even worked out: it is needed only if this request fails.
	var addr netip.Addr
	knownAddr := false
	if t := h.app.authFailures; t != nil && t.Len() > 0 {
		addr, knownAddr = h.app.clientAddr(r), true
		if res := t.Check(addr, h.app.authFailureLimit); !res.Allowed {
			h.throttled.Inc()
			w.Header().Set("Retry-After", strconv.FormatInt(ratelimit.CeilSeconds(res.RetryAfter), 10))
			apierr.Write(w, apierr.TooManyFailedAuthentications)
			return nil
		}
	}
	if len(ids) == 0 || len(keys) == 0 || ids[0] == "" || keys[0] == "" {
		h.missing.Inc()
		h.spendFailure(r, addr, knownAddr)
		apierr.Write(w, apierr.MissingCredentials)
		return nil
	}
	if len(ids) > 1 || len(keys) > 1 {
		h.invalid.Inc()
		h.spendFailure(r, addr, knownAddr)
		apierr.Write(w, apierr.InvalidCredentials)
		return nil
	}
	acct, err := h.app.registry.Authenticate(ids[0], keys[0])
	if err != nil {
		h.invalid.Inc()
		h.spendFailure(r, addr, knownAddr)
		if c := h.logger.Check(zapcore.DebugLevel, "authentication failed"); c != nil {
			c.Write(zap.String("account_id", ids[0]))
		}
		// Counted for accounts that exist (a revoked or mistyped key); an
		// unknown id is counted under "", which is never stored, so that
		// both cost the same and the timing does not tell whether the
		// account exists.
		counted := ""
		if known, ok := h.app.registry.Lookup(ids[0]); ok {
			counted = known.ID
		}
		h.app.meter.Request(counted, h.app.api.TaskType(r.URL.Path), apierr.InvalidCredentials.Code)
		apierr.Write(w, apierr.InvalidCredentials)
		return nil
	}
	h.allowed.Inc()
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(userIDPlaceholder, acct.ID)
	uw := &usageWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err = next.ServeHTTP(uw, r)
	h.app.meter.Request(acct.ID, h.app.api.TaskType(r.URL.Path), uw.rejection(err))
	return err
}

// spendFailure takes one failure from the allowance of the request's
// client address (addr, when known is true) and logs the address when
// that was its last.
func (h *APIKeyAuth) spendFailure(r *http.Request, addr netip.Addr, known bool) {
	t := h.app.authFailures
	if t == nil {
		return
	}
	if !known {
		addr = h.app.clientAddr(r)
	}
	if res := t.Fail(addr, h.app.authFailureLimit); res.Allowed && res.Remaining == 0 {
		h.logger.Info("a client address failed authentication too often: its requests get 429 until it may try again",
			zap.Stringer("client", authfail.Address(addr)), zap.Duration("retry_after", h.app.authFailureLimit.Interval()))
	}
}

// usageWriter learns how the rest of the chain answered a request: the
// code of a taskgate error (apierr.Write tells it), or else the status.
type usageWriter struct {
	caddyhttp.ResponseWriterWrapper
	status int
	code   string
}

// WriteHeader records the final status.
func (u *usageWriter) WriteHeader(status int) {
	if u.status == 0 && status >= 200 {
		u.status = status
	}
	u.ResponseWriter.WriteHeader(status)
}

// Write records a 200 when no status was written.
func (u *usageWriter) Write(b []byte) (int, error) {
	if u.status == 0 {
		u.status = http.StatusOK
	}
	return u.ResponseWriter.Write(b)
}

// RecordErrorCode records the code of a taskgate error.
func (u *usageWriter) RecordErrorCode(code string) { u.code = code }

// rejection is the reason the request was refused, empty when it was
// not: the taskgate error code, or "http_<status>" for other errors (err
// is what the rest of the chain returned).
func (u *usageWriter) rejection(err error) string {
	if u.code != "" {
		return u.code
	}
	status := u.status
	if err != nil && status == 0 {
		// Nothing was written: Caddy answers with the error's status.
		status = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
	}
	if status < 400 {
		return ""
	}
	return "http_" + strconv.Itoa(status)
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
	app *App

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
	var err error
	if h.app, err = loadApp(ctx); err != nil {
		return err
	}
	h.allowed = decisionsTotal.WithLabelValues("ip_allowlist", "allowed")
	h.missing = decisionsTotal.WithLabelValues("ip_allowlist", "missing_credentials")
	h.refused = decisionsTotal.WithLabelValues("ip_allowlist", "ip_not_allowed")
	return nil
}

// ServeHTTP checks the client address.
func (h *IPAllowlist) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	id, _ := repl.GetString(userIDPlaceholder)
	if id == "" {
		h.missing.Inc()
		apierr.Write(w, apierr.MissingCredentials)
		return nil
	}
	if acct, ok := h.app.registry.Lookup(id); ok && len(acct.Allow) > 0 {
		if addr := h.app.clientAddr(r); !addr.IsValid() || !acct.Allow.Allows(addr) {
			h.refused.Inc()
			apierr.Write(w, apierr.IPNotAllowed)
			return nil
		}
	}
	h.allowed.Inc()
	return next.ServeHTTP(w, r)
}

// AccountRateLimit limits the requests of the authenticated account to its
// rate (the app's default rate for accounts that set none, including users
// authenticated by other handlers than api_key_auth). Every answer carries
// RateLimit-Policy and RateLimit headers; a refused request gets 429
// TOO_MANY_REQUESTS with Retry-After.
type AccountRateLimit struct {
	app    *App
	logger *zap.Logger

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
	h.logger = ctx.Logger()
	var err error
	if h.app, err = loadApp(ctx); err != nil {
		return err
	}
	h.allowed = decisionsTotal.WithLabelValues("account_rate_limit", "allowed")
	h.missing = decisionsTotal.WithLabelValues("account_rate_limit", "missing_credentials")
	h.limited = decisionsTotal.WithLabelValues("account_rate_limit", "too_many_requests")
	h.storeError = decisionsTotal.WithLabelValues("account_rate_limit", "store_error")
	return nil
}

// ServeHTTP takes one request from the account's allowance.
func (h *AccountRateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	id, _ := repl.GetString(userIDPlaceholder)
	if id == "" {
		h.missing.Inc()
		apierr.Write(w, apierr.MissingCredentials)
		return nil
	}
	limit := h.app.defaultLimit
	if acct, ok := h.app.registry.Lookup(id); ok {
		if acct.Limit != (ratelimit.Limit{}) {
			limit = acct.Limit
		}
		id = acct.ID
	}
	res, err := h.app.limiter.Take(r.Context(), id, limit)
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
	policy := h.app.policyHeader(limit)
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
func (a *App) policyHeader(l ratelimit.Limit) string {
	if v, ok := a.policyHeaders.Load(l); ok {
		return v.(string)
	}
	v, _ := a.policyHeaders.LoadOrStore(l, l.PolicyHeader())
	return v.(string)
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*APIKeyAuth)(nil)
	_ apierr.CodeRecorder         = (*usageWriter)(nil)
	_ http.ResponseWriter         = (*usageWriter)(nil)
	_ caddy.Provisioner           = (*APIKeyAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*IPAllowlist)(nil)
	_ caddy.Provisioner           = (*IPAllowlist)(nil)
	_ caddyhttp.MiddlewareHandler = (*AccountRateLimit)(nil)
	_ caddy.Provisioner           = (*AccountRateLimit)(nil)
)
