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
	"github.com/taskgate/taskgate/backend/ratelimit"
)

const demoKeyHash = "ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22" // "demo-api-key"

// newTestApp provisions an app with the given accounts.
func newTestApp(t testing.TB, accounts ...AccountConfig) *App {
	t.Helper()
	return provisionTestApp(t, &App{RateLimit: "1/h", Burst: 2, Accounts: accounts})
}

// provisionTestApp provisions app and cleans it up when the test ends.
func provisionTestApp(t testing.TB, app *App) *App {
	t.Helper()
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
		newTestAuth(app),
		newTestAllowlist(app),
		newTestRateLimit(app),
	}
	for i := len(mws) - 1; i >= 0; i-- {
		mw, next := mws[i], h
		h = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return mw.ServeHTTP(w, r, next) })
	}
	return h
}

// newTestAllowlist is an ip_allowlist handler of app.
func newTestAllowlist(app *App) *IPAllowlist {
	h := new(IPAllowlist)
	h.bind(app)
	return h
}

// newTestRateLimit is an account_rate_limit handler of app.
func newTestRateLimit(app *App) *AccountRateLimit {
	h := new(AccountRateLimit)
	h.bind(app, app.logger)
	return h
}

// newTestAuth is an api_key_auth handler of app.
func newTestAuth(app *App) *APIKeyAuth {
	h := new(APIKeyAuth)
	h.bind(app, app.logger)
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
	rl := newTestRateLimit(app)
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
			fixed := map[int][]string{401: {apierr.MissingCredentials.Message}, 403: {apierr.InvalidCredentials.Message, apierr.IPNotAllowed.Message}, 429: {apierr.TooManyRequests.Message, apierr.TooManyFailedAuthentications.Message}}
			var body struct{ Message string }
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if !slices.Contains(fixed[w.Code], body.Message) {
				t.Fatalf("unexpected error body %q", w.Body)
			}
		}

	})
}

func TestAuthFailuresThrottle(t *testing.T) {
	app := provisionTestApp(t, &App{
		RateLimit: "1000/s", AuthFailures: "3/m",
		Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}},
	})
	h := chain(app)
	const guesser, other = "192.0.2.7", "198.51.100.1"
	// Successes spend nothing.
	for range 10 {
		if w := serve(t, h, guesser, creds("demo", "demo-api-key")); w.Code != 200 {
			t.Fatalf("right key: %d", w.Code)
		}
	}
	for i, hdr := range []http.Header{creds("demo", "wrong"), creds("", ""), creds("nobody", "demo-api-key")} {
		if w := serve(t, h, guesser, hdr); w.Code != 401 && w.Code != 403 {
			t.Fatalf("failure %d: %d %s, want 401 or 403", i+1, w.Code, w.Body)
		}
	}
	for _, hdr := range []http.Header{creds("demo", "wrong"), creds("demo", "demo-api-key"), creds("", "")} {
		w := serve(t, h, guesser, hdr)
		if w.Code != 429 || errorCode(t, w) != "TOO_MANY_FAILED_AUTHENTICATIONS" {
			t.Fatalf("throttled address: %d %s", w.Code, w.Body)
		}
		if ra := w.Header().Get("Retry-After"); ra != "20" && ra != "19" {
			t.Fatalf("Retry-After %q, want 20 (one failure back every 20s)", ra)
		}
		if w.Header().Get("X-Account") != "" {
			t.Fatal("a throttled request was authenticated")
		}
	}
	if w := serve(t, h, other, creds("demo", "demo-api-key")); w.Code != 200 {
		t.Fatalf("another address: %d %s", w.Code, w.Body)
	}

	// A reload's new app shares what each address spent.
	again := provisionTestApp(t, &App{AuthFailures: "3/m", Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}}})
	if w := serve(t, chain(again), guesser, creds("demo", "demo-api-key")); w.Code != 429 {
		t.Fatalf("after a reload: %d, want 429", w.Code)
	}
}

func TestAuthFailuresPerSlash64(t *testing.T) {
	app := provisionTestApp(t, &App{AuthFailures: "2/m", Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}}})
	h := chain(app)
	serve(t, h, "2001:db8:0:1::1", creds("demo", "wrong"))
	serve(t, h, "2001:db8:0:1::2", creds("demo", "wrong"))
	if w := serve(t, h, "2001:db8:0:1:ffff::3", creds("demo", "demo-api-key")); w.Code != 429 {
		t.Fatalf("same /64: %d, want 429", w.Code)
	}
	if w := serve(t, h, "2001:db8:0:2::1", creds("demo", "demo-api-key")); w.Code != 200 {
		t.Fatalf("next /64: %d, want 200", w.Code)
	}
}

// TestAuthFailuresNoAddress: clients whose address is unknown (a proxy's
// "unknown", a unix socket) are not throttled: they would share one
// allowance, and one guesser would get all of them refused.
func TestAuthFailuresNoAddress(t *testing.T) {
	app := provisionTestApp(t, &App{AuthFailures: "2/m", Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}}})
	h := chain(app)
	for range 5 {
		if w := serve(t, h, "", creds("demo", "wrong")); w.Code != 403 {
			t.Fatalf("a wrong key from no address: %d, want 403", w.Code)
		}
	}
	if w := serve(t, h, "", creds("demo", "demo-api-key")); w.Code != 200 {
		t.Fatalf("the right key from no address after others' failures: %d, want 200", w.Code)
	}
}

func TestAuthFailuresOff(t *testing.T) {
	app := provisionTestApp(t, &App{AuthFailures: "off", Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}}})
	if app.authFailures != nil {
		t.Fatal("auth_failures off keeps a throttle")
	}
	h := chain(app)
	for range 50 {
		if w := serve(t, h, "192.0.2.7", creds("demo", "wrong")); w.Code != 403 {
			t.Fatalf("with the throttle off: %d", w.Code)
		}
	}
}

func TestParseAuthFailures(t *testing.T) {
	for _, tc := range []struct {
		rate  string
		burst int64
		want  string // Limit.String(), empty when off; "error" for an error
	}{
		{"", 0, "20/m burst 20"},
		{"5/m", 0, "5/m burst 5"},
		{"100/h", 10, "100/h burst 10"},
		{"off", 0, ""},
		{"off", 3, "error"},
		{"fast", 0, "error"},
	} {
		l, err := parseAuthFailures(tc.rate, tc.burst)
		got := l.String()
		switch {
		case err != nil:
			got = "error"
		case l == (ratelimit.Limit{}):
			got = ""
		}
		if got != tc.want {
			t.Errorf("parseAuthFailures(%q, %d) = %q (%v), want %q", tc.rate, tc.burst, got, err, tc.want)
		}
	}
}

func TestMisspeltKeyHeadersRemoved(t *testing.T) {
	app := newTestApp(t, AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}})
	auth := newTestAuth(app)
	for _, status := range []int{200, 403} {
		var seen http.Header
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r.Header.Clone()
			return nil
		})
		key := "demo-api-key"
		if status == 403 {
			key = "wrong"
		}
		h := http.Header{}
		h.Set("Account-Id", "demo")
		h.Set("Api-Key", key)
		h["X-Api-Key"] = []string{"secret-x"}
		h["Api_key"] = []string{"secret-underscore"}
		h["Authorization"] = []string{"Bearer for-the-upstream"}
		w := serve(t, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			err := auth.ServeHTTP(w, r, next)
			for _, name := range []string{"Api-Key", "X-Api-Key", "Api_key"} {
				if v, ok := r.Header[name]; ok {
					t.Errorf("status %d: %s left in the request: %q", status, name, v)
				}
			}
			return err
		}), "192.0.2.1", h)
		if w.Code != status {
			t.Fatalf("status %d, want %d", w.Code, status)
		}
		if status == 200 && seen.Get("Authorization") != "Bearer for-the-upstream" {
			t.Errorf("Authorization did not reach the next handler: %v", seen)
		}
	}
}
