package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/ratelimit"
)

// discard is a response writer that keeps nothing but a reused header map.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// benchRequest is a request from clientIP as Caddy prepares it, reused by
// every iteration of a benchmark.
func benchRequest(clientIP string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v3/tasks", nil)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: clientIP})
	r = r.WithContext(ctx)
	r.Header.Set("Account-Id", "demo")
	return r
}

// BenchmarkAPIKeyAuth measures api_key_auth alone: a right key while no
// address is throttled (the usual case) and while another is; a wrong key
// that spends a failure; and a request from a throttled address.
func BenchmarkAPIKeyAuth(b *testing.B) {
	app := provisionTestApp(b, &App{AuthFailures: "1000000000/s", Accounts: []AccountConfig{{ID: "demo", KeySHA256: []string{demoKeyHash}}}})
	auth := newTestAuth(app)
	auth.logger = zap.NewNop()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	run := func(name, clientIP, key string) {
		b.Run(name, func(b *testing.B) {
			r := benchRequest(clientIP)
			keys := []string{key}
			w := discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Header[apiKeyHeader] = keys
				clear(w.h)
				_ = auth.ServeHTTP(w, r, next)
			}
		})
	}
	run("authenticated", "192.0.2.7", "demo-api-key")
	run("refused", "192.0.2.8", "wrong-api-key")
	// From here on the table holds an address: every request looks.
	run("authenticated, an address throttled", "192.0.2.7", "demo-api-key")
	auth.failLimit = ratelimit.Limit{Count: 1, Period: time.Hour, Burst: 1}
	run("throttled", "192.0.2.8", "demo-api-key")
}

// BenchmarkIPAllowlist measures ip_allowlist alone for an authenticated
// account with an allow list: a request straight from its client, and
// one through a trusted proxy (without trusted_proxies_strict) whose
// client address is read from the right of X-Forwarded-For.
func BenchmarkIPAllowlist(b *testing.B) {
	app := newTestApp(b, AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}, Allow: []string{"10.0.0.0/8", "203.0.113.0/24"}})
	allow := newTestAllowlist(app)
	srv := newTestServer(b, false, "127.0.0.1/32")
	for _, bc := range []struct {
		name, peer string
		xff        []string
	}{
		{"direct", "203.0.113.9:5000", nil},
		{"forwarded", "127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			passed := false
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
			r := prepared(srv, bc.peer, bc.xff...)
			r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set(userIDPlaceholder, "demo")
			w := discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				_ = allow.ServeHTTP(w, r, next)
			}
			if !passed {
				b.Fatal("the request was refused")
			}
		})
	}
}
