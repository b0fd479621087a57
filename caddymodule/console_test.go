package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestConsoleServesOperatorsOnly: a loopback client, or one that an
// authentication handler before the console let through, is an operator;
// an API account (api_key_auth) and a remote client without
// authentication are not.
func TestConsoleServesOperatorsOnly(t *testing.T) {
	h := &Console{ForwardAuthHeader: "remote-user"}
	for _, tc := range []struct {
		name   string
		remote string
		host   string
		header http.Header
		set    map[string]any
		want   bool
	}{
		{"loopback", "127.0.0.1:5000", "127.0.0.1:2020", nil, nil, true},
		{"loopback v6", "[::1]:5000", "[::1]:2020", nil, nil, true},
		{"mapped loopback", "[::ffff:127.0.0.1]:5000", "localhost:2020", nil, nil, true},
		{"localhost without a port", "127.0.0.1:5000", "LOCALHOST", nil, nil, true},
		{"remote", "203.0.113.9:5000", "127.0.0.1:2020", nil, nil, false},
		{"loopback, another site's name (DNS rebinding)", "127.0.0.1:5000", "evil.example:2020", nil, nil, false},
		{"loopback, a local proxy's", "127.0.0.1:5000", "127.0.0.1:2020", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, nil, false},
		{"loopback, a local proxy's (Forwarded)", "127.0.0.1:5000", "127.0.0.1:2020", http.Header{"Forwarded": {"for=203.0.113.9"}}, nil, false},
		{"basic_auth", "203.0.113.9:5000", "ops.example", nil, map[string]any{userIDPlaceholder: "ops"}, true},
		{"forward_auth", "203.0.113.9:5000", "ops.example", nil, map[string]any{"http.reverse_proxy.header.Remote-User": "ops"}, true},
		{"api_key_auth", "203.0.113.9:5000", "ops.example", nil, map[string]any{userIDPlaceholder: "acme", apiKeyAuthPlaceholder: true}, false},
		{"api_key_auth on loopback", "127.0.0.1:5000", "127.0.0.1", nil, map[string]any{userIDPlaceholder: "acme", apiKeyAuthPlaceholder: true}, false},
		{"no address", "", "127.0.0.1", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repl := caddy.NewReplacer()
			for k, v := range tc.set {
				repl.Set(k, v)
			}
			r := httptest.NewRequest(http.MethodGet, "/accounts", nil)
			r.RemoteAddr, r.Host = tc.remote, tc.host
			for k, v := range tc.header {
				r.Header[k] = v
			}
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			if got := h.operator(r); got != tc.want {
				t.Errorf("operator = %v, want %v", got, tc.want)
			}
		})
	}
	// A refused client gets 403, not the console.
	r := httptest.NewRequest(http.MethodGet, "/accounts", nil)
	r.RemoteAddr = "203.0.113.9:5000"
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusForbidden {
		t.Fatalf("remote client: %d, %v; want 403", w.Code, err)
	}
}

func TestConsoleBaseIsChecked(t *testing.T) {
	for base, ok := range map[string]bool{"": true, "/console": true, "/ops/console": true, "console": false, "/console/": false, "/": false, "//evil.example": false, "/a/../b": false, "/a//b": false} {
		if err := (&Console{Base: base}).Validate(); (err == nil) != ok {
			t.Errorf("base %q: %v", base, err)
		}
	}
}
