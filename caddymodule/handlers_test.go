package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/taskgate/taskgate/backend/apierr"
)

const demoKeyHash = "ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22" // "demo-api-key"

// newTestApp provisions an app with the given accounts.
func newTestApp(t testing.TB, accounts ...AccountConfig) *App {
	t.Helper()
	app := &App{RateLimit: "1/h", Burst: 2, Accounts: accounts}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Cleanup() })
	return app
}

// chain is the edge chain in front of a handler that answers 200 with the
// authenticated account id.
func chain(app *App) caddyhttp.Handler {
	var h caddyhttp.Handler = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		id, _ := repl.GetString(userIDPlaceholder)
		w.Header().Set("X-Account", id)
		w.Header().Set("X-Saw-Key", r.Header.Get("api-key"))
		w.WriteHeader(http.StatusOK)
		return nil
	})
	mws := []caddyhttp.MiddlewareHandler{
		&APIKeyAuth{app: app, logger: app.logger, allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), invalid: decisionsTotal.WithLabelValues("t", "i")},
		&IPAllowlist{app: app, allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), refused: decisionsTotal.WithLabelValues("t", "r")},
		&AccountRateLimit{app: app, logger: app.logger, allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), limited: decisionsTotal.WithLabelValues("t", "l"), storeError: decisionsTotal.WithLabelValues("t", "s")},
	}
	for i := len(mws) - 1; i >= 0; i-- {
		mw, next := mws[i], h
		h = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return mw.ServeHTTP(w, r, next) })
	}
	return h
}

// serve runs one request from clientIP through h as Caddy would: with a
// replacer and the client_ip variable in the request context.
func serve(t testing.TB, h caddyhttp.Handler, clientIP string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v3/tasks", nil)
	r.Header = header
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: clientIP})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r.WithContext(ctx)); err != nil {
		t.Fatalf("handler error: %v", err)
	}
	return w
}

func creds(id, key string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set("account-id", id)
	}
	if key != "" {
		h.Set("api-key", key)
	}
	return h
}

func errorCode(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: Content-Type %q, want application/json", w.Code, ct)
	}
	var body struct{ Error, Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" || body.Message == "" {
		t.Fatalf("status %d: body %q is not {error, message}", w.Code, w.Body.String())
	}
	return body.Error
}

func TestEdgeChain(t *testing.T) {
	app := newTestApp(t,
		AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}, Allow: []string{"127.0.0.1/32", "::1/128"}},
		AccountConfig{ID: "office", Keys: []string{"office-key"}, Allow: []string{"10.0.0.0/8"}, RateLimit: "1/h", Burst: 1},
	)
	h := chain(app)
	for _, tc := range []struct {
		name     string
		ip       string
		header   http.Header
		status   int
		code     string
		identity string
	}{
		{"no credentials", "127.0.0.1", creds("", ""), 401, "MISSING_CREDENTIALS", ""},
		{"no key", "127.0.0.1", creds("demo", ""), 401, "MISSING_CREDENTIALS", ""},
		{"no account", "127.0.0.1", creds("", "demo-api-key"), 401, "MISSING_CREDENTIALS", ""},
		{"unknown account", "127.0.0.1", creds("nobody", "demo-api-key"), 403, "INVALID_CREDENTIALS", ""},
		{"wrong key", "127.0.0.1", creds("demo", "office-key"), 403, "INVALID_CREDENTIALS", ""},
		{"two keys", "127.0.0.1", http.Header{"Account-Id": {"demo"}, "Api-Key": {"demo-api-key", "x"}}, 403, "INVALID_CREDENTIALS", ""},
		{"allowed", "127.0.0.1", creds("demo", "demo-api-key"), 200, "", "demo"},
		{"allowed over IPv6", "::1", creds("demo", "demo-api-key"), 200, "", "demo"},
		{"refused address", "192.0.2.1", creds("demo", "demo-api-key"), 403, "IP_NOT_ALLOWED", ""},
		{"mapped address", "::ffff:10.1.2.3", creds("office", "office-key"), 200, "", "office"},
		{"over the limit", "10.1.2.3", creds("office", "office-key"), 429, "TOO_MANY_REQUESTS", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, tc.ip, tc.header)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.status, w.Body)
			}
			if tc.code != "" {
				if code := errorCode(t, w); code != tc.code {
					t.Fatalf("error %q, want %q", code, tc.code)
				}
			}
			if got := w.Header().Get("X-Account"); got != tc.identity {
				t.Fatalf("{http.auth.user.id} = %q, want %q", got, tc.identity)
			}
			if got := w.Header().Get("X-Saw-Key"); got != "" {
				t.Fatalf("the api-key header reached the next handler: %q", got)
			}
		})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	app := newTestApp(t, AccountConfig{ID: "a", Keys: []string{"k"}, RateLimit: "10/m", Burst: 3})
	h := chain(app)
	for i, want := range []string{`"default";r=2;t=6`, `"default";r=1;t=12`, `"default";r=0;t=18`} {
		w := serve(t, h, "127.0.0.1", creds("a", "k"))
		if w.Code != 200 || w.Header().Get("RateLimit") != want || w.Header().Get("RateLimit-Policy") != `"default";q=3;w=18` {
			t.Fatalf("request %d: %d RateLimit %q Policy %q; want 200 %q", i, w.Code, w.Header().Get("RateLimit"), w.Header().Get("RateLimit-Policy"), want)
		}
	}
	w := serve(t, h, "127.0.0.1", creds("a", "k"))
	if w.Code != 429 || errorCode(t, w) != "TOO_MANY_REQUESTS" {
		t.Fatalf("4th request: %d %s", w.Code, w.Body)
	}
	if ra := w.Header().Get("Retry-After"); ra != "6" && ra != "5" {
		t.Fatalf("Retry-After %q, want about 6", ra)
	}
	if w.Header().Get("RateLimit-Policy") == "" || w.Header().Get("RateLimit") == "" {
		t.Fatal("a 429 must carry the RateLimit headers")
	}
}

func TestDefaultRateLimitApplies(t *testing.T) {
	app := newTestApp(t, AccountConfig{ID: "a", Keys: []string{"k"}})
	h := chain(app)
	codes := []int{}
	for range 3 {
		codes = append(codes, serve(t, h, "127.0.0.1", creds("a", "k")).Code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("statuses %v, want the app's default burst of 2 then 429", codes)
	}
}

func TestHandlersAfterOtherAuthentication(t *testing.T) {
	app := newTestApp(t)
	rl := &AccountRateLimit{app: app, logger: app.logger, allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), limited: decisionsTotal.WithLabelValues("t", "l"), storeError: decisionsTotal.WithLabelValues("t", "s")}
	ok := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	// Without any authentication the limiter fails closed.
	w := serve(t, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return rl.ServeHTTP(w, r, ok) }), "127.0.0.1", http.Header{})
	if w.Code != 401 {
		t.Fatalf("unauthenticated: %d, want 401", w.Code)
	}
	// A user set by another handler (basic_auth, say) gets the default limit.
	basic := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set(userIDPlaceholder, "alice")
		return rl.ServeHTTP(w, r, ok)
	})
	codes := []int{serve(t, basic, "127.0.0.1", http.Header{}).Code, serve(t, basic, "127.0.0.1", http.Header{}).Code, serve(t, basic, "127.0.0.1", http.Header{}).Code}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("basic_auth user: %v, want 200 200 429", codes)
	}
}

// FuzzEdgeHeaders sends arbitrary credential headers and client addresses
// through the chain: the answer is always 200, 401, 403 or 429 with a JSON
// error body, and the key never reaches the next handler.
func FuzzEdgeHeaders(f *testing.F) {
	f.Add("demo", "demo-api-key", "127.0.0.1")
	f.Add("demo", "wrong", "::1")
	f.Add("", "", "")
	f.Add("d\x00emo", strings.Repeat("k", 5000), "::ffff:127.0.0.1")
	f.Add("\xff\xfe", "\xff", "not-an-ip")
	f.Add("demo", "demo-api-key", "fe80::1%eth0")
	app := newTestApp(f, AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}, Allow: []string{"127.0.0.1/32", "::1/128"}, RateLimit: "1000000/s"})
	h := chain(app)
	f.Fuzz(func(t *testing.T, id, key, ip string) {
		w := serve(t, h, ip, http.Header{"Account-Id": {id}, "Api-Key": {key}})
		switch w.Code {
		case 200:
			if id != "demo" || key != "demo-api-key" {
				t.Fatalf("(%q, %q) from %q passed", id, key, ip)
			}
		case 401, 403, 429:
			errorCode(t, w)
		default:
			t.Fatalf("status %d for (%q, %q) from %q", w.Code, id, key, ip)
		}
		if w.Header().Get("X-Saw-Key") != "" {
			t.Fatal("the key reached the next handler")
		}
		// Error bodies are fixed texts: nothing of the input is echoed.
		if w.Code != 200 {
			fixed := map[int][]string{401: {apierr.MissingCredentials.Message}, 403: {apierr.InvalidCredentials.Message, apierr.IPNotAllowed.Message}, 429: {apierr.TooManyRequests.Message}}
			var body struct{ Message string }
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if !slices.Contains(fixed[w.Code], body.Message) {
				t.Fatalf("unexpected error body %q", w.Body)
			}
		}

	})
}
