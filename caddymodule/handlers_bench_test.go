package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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

// BenchmarkAPIKeyAuth measures api_key_auth alone on a right key and on a
// wrong one.
func BenchmarkAPIKeyAuth(b *testing.B) {
	app := newTestApp(b, AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}})
	auth := &APIKeyAuth{app: app, logger: zap.NewNop(), allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), invalid: decisionsTotal.WithLabelValues("t", "i")}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	for _, bc := range []struct{ name, key string }{
		{"authenticated", "demo-api-key"},
		{"refused", "wrong-api-key"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := benchRequest("192.0.2.7")
			keys := []string{bc.key}
			w := discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Header[apiKeyHeader] = keys
				clear(w.h)
				_ = auth.ServeHTTP(w, r, next)
			}
		})
	}
}

// BenchmarkIPAllowlist measures ip_allowlist alone for an authenticated
// account with an allow list: a request straight from its client, and
// one through a trusted proxy (without trusted_proxies_strict) whose
// client address is read from the right of X-Forwarded-For.
func BenchmarkIPAllowlist(b *testing.B) {
	app := newTestApp(b, AccountConfig{ID: "demo", KeySHA256: []string{demoKeyHash}, Allow: []string{"10.0.0.0/8", "203.0.113.0/24"}})
	allow := &IPAllowlist{app: app, allowed: decisionsTotal.WithLabelValues("t", "a"), missing: decisionsTotal.WithLabelValues("t", "m"), refused: decisionsTotal.WithLabelValues("t", "r")}
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
