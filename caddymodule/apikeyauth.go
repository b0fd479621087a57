package caddymodule

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/authfail"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/usage"
)

func init() {
	caddy.RegisterModule(APIKeyAuth{})
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

// apiKeyAuthPlaceholder marks a request that api_key_auth authenticated:
// its user is an API account, not an operator (see Console).
const apiKeyAuthPlaceholder = "taskgate.api_key_auth"

// The rate-limit response headers, in Go's canonical form.
const (
	rateLimitPolicyHeader = "Ratelimit-Policy"
	rateLimitHeader       = "Ratelimit"
)

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
	accounts  *account.Registry
	meter     *usage.Meter
	taskType  func(path string) string
	throttle  *authfail.Throttle
	failLimit ratelimit.Limit
	clientIP  clientIPMode
	logger    *zap.Logger

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
	app, err := loadApp(ctx)
	if err != nil {
		return err
	}
	h.bind(app, ctx.Logger())
	return nil
}

// bind takes from the app what the handler uses.
func (h *APIKeyAuth) bind(app *App, logger *zap.Logger) {
	h.accounts, h.meter, h.taskType = app.engine.Accounts, app.engine.Core.Meter, app.engine.API.TaskType
	h.throttle, h.failLimit, h.clientIP = app.authFailures, app.authFailureLimit, clientIPMode(app.ClientIP)
	h.logger = logger
	h.allowed = decisionsTotal.WithLabelValues("api_key_auth", "allowed")
	h.missing = decisionsTotal.WithLabelValues("api_key_auth", "missing_credentials")
	h.invalid = decisionsTotal.WithLabelValues("api_key_auth", "invalid_credentials")
	h.throttled = decisionsTotal.WithLabelValues("api_key_auth", "too_many_failures")
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
	if t := h.throttle; t != nil && t.Len() > 0 {
		addr, knownAddr = h.clientIP.addr(r), true
		if res := t.Check(addr, h.failLimit); !res.Allowed {
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
	acct, err := h.accounts.Authenticate(ids[0], keys[0])
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
		if known, ok := h.accounts.Lookup(ids[0]); ok {
			counted = known.ID
		}
		h.meter.Request(counted, h.taskType(r.URL.Path), apierr.InvalidCredentials.Code)
		apierr.Write(w, apierr.InvalidCredentials)
		return nil
	}
	h.allowed.Inc()
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(userIDPlaceholder, acct.ID)
	repl.Set(apiKeyAuthPlaceholder, true)
	uw := &usageWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err = next.ServeHTTP(uw, r)
	h.meter.Request(acct.ID, h.taskType(r.URL.Path), uw.rejection(err))
	return err
}

// spendFailure takes one failure from the allowance of the request's
// client address (addr, when known is true) and logs the address when
// that was its last.
func (h *APIKeyAuth) spendFailure(r *http.Request, addr netip.Addr, known bool) {
	t := h.throttle
	if t == nil {
		return
	}
	if !known {
		addr = h.clientIP.addr(r)
	}
	if res := t.Fail(addr, h.failLimit); res.Allowed && res.Remaining == 0 {
		h.logger.Info("a client address failed authentication too often: its requests get 429 until it may try again",
			zap.Stringer("client", authfail.Address(addr)), zap.Duration("retry_after", h.failLimit.Interval()))
	}
}

// authenticatedUser returns the id that an authentication handler before
// this one (api_key_auth, basic_auth, …) set, or answers 401
// MISSING_CREDENTIALS, counting it in missing (when set), and returns
// false: the handlers after authentication fail closed.
func authenticatedUser(w http.ResponseWriter, r *http.Request, missing prometheus.Counter) (string, bool) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id, _ := repl.GetString(userIDPlaceholder); id != "" {
		return id, true
	}
	if missing != nil {
		missing.Inc()
	}
	apierr.Write(w, apierr.MissingCredentials)
	return "", false
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

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*APIKeyAuth)(nil)
	_ caddy.Provisioner           = (*APIKeyAuth)(nil)
	_ apierr.CodeRecorder         = (*usageWriter)(nil)
	_ http.ResponseWriter         = (*usageWriter)(nil)
)
