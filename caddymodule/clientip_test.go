package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// newTestServer provisions (without starting) a Caddy HTTP server that
// trusts the given proxies.
func newTestServer(t testing.TB, strict bool, trusted ...string) *caddyhttp.Server {
	t.Helper()
	srv := map[string]any{"listen": []string{"127.0.0.1:0"}}
	if len(trusted) > 0 {
		srv["trusted_proxies"] = map[string]any{"source": "static", "ranges": trusted}
	}
	if strict {
		srv["trusted_proxies_strict"] = 1
	}
	httpApp, _ := json.Marshal(map[string]any{"servers": map[string]any{"test": srv}})
	storage, _ := json.Marshal(map[string]any{"module": "file_system", "root": t.TempDir()})
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Admin:      &caddy.AdminConfig{Disabled: true},
		StorageRaw: storage,
		AppsRaw:    caddy.ModuleMap{"http": httpApp},
	})
	if err != nil {
		t.Fatal(err)
	}
	app, err := ctx.App("http")
	if err != nil {
		t.Fatal(err)
	}
	return app.(*caddyhttp.App).Servers["test"]
}

// prepared is a request from peer with the given X-Forwarded-For, as srv
// hands it to its handlers.
func prepared(srv *caddyhttp.Server, peer string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v3/tasks", nil)
	r.RemoteAddr = peer
	if len(xff) > 0 {
		r.Header["X-Forwarded-For"] = xff
	}
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), httptest.NewRecorder(), srv)
}

func TestTrustedProxiesReadable(t *testing.T) {
	if !trustedProxiesFound {
		t.Fatal("caddyhttp.Server has no trustedProxies field of type IPRangeSource: the client address cannot be read from the right behind several proxies")
	}
	srv := newTestServer(t, false, "127.0.0.1/32", "10.0.0.0/8")
	src := trustedProxies(srv)
	if src == nil {
		t.Fatal("no trusted proxies read from a server that has some")
	}
	if got := src.GetIPRanges(nil); len(got) != 2 || got[1].String() != "10.0.0.0/8" {
		t.Fatalf("trusted ranges %v", got)
	}
	if trustedProxies(newTestServer(t, false)) != nil {
		t.Fatal("trusted proxies read from a server without any")
	}
}

func TestClientAddr(t *testing.T) {
	loose := newTestServer(t, false, "127.0.0.1/32", "10.0.0.0/8")
	strict := newTestServer(t, true, "127.0.0.1/32", "10.0.0.0/8")
	none := newTestServer(t, false)
	for _, tc := range []struct {
		name   string
		srv    *caddyhttp.Server
		mode   string
		peer   string
		xff    []string
		want   string
		caddys string // Caddy's own client IP, to show the difference
	}{
		{"untrusted peer, header ignored", loose, "", "192.0.2.1:5000", []string{"10.1.2.3"}, "192.0.2.1", "192.0.2.1"},
		{"no trusted proxies", none, "", "192.0.2.1:5000", []string{"10.1.2.3"}, "192.0.2.1", "192.0.2.1"},
		{"trusted peer, one address", loose, "", "127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9", "203.0.113.9"},
		{"client-chosen left entry", loose, "", "127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9", "198.51.100.1"},
		{"trusted hops skipped", loose, "", "127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9, 10.0.0.7"}, "203.0.113.9", "198.51.100.1"},
		{"two header lines", loose, "", "127.0.0.1:5000", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9", "198.51.100.1"},
		{"every entry trusted: the peer", loose, "", "127.0.0.1:5000", []string{"10.0.0.1, 10.0.0.2"}, "127.0.0.1", "10.0.0.1"},
		{"nothing forwarded: the peer", loose, "", "127.0.0.1:5000", nil, "127.0.0.1", "127.0.0.1"},
		{"a proxy wrote unknown: no address", loose, "", "127.0.0.1:5000", []string{"203.0.113.9, unknown"}, "invalid IP", "203.0.113.9"},
		{"a proxy wrote unknown, strict server: no address", strict, "", "127.0.0.1:5000", []string{"203.0.113.9, unknown"}, "invalid IP", "203.0.113.9"},
		{"strict server", strict, "", "127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9", "203.0.113.9"},
		{"opt-in to Caddy's", loose, clientIPCaddy, "127.0.0.1:5000", []string{"198.51.100.1, 203.0.113.9"}, "198.51.100.1", "198.51.100.1"},
		{"IPv6 peer", loose, "", "[::1]:5000", []string{"198.51.100.1"}, "::1", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &App{ClientIP: tc.mode}
			r := prepared(tc.srv, tc.peer, tc.xff...)
			if got, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); got != tc.caddys {
				t.Fatalf("Caddy's client IP %q, want %q", got, tc.caddys)
			}
			if got := app.clientAddr(r); got.String() != tc.want {
				t.Fatalf("client address %v, want %s", got, tc.want)
			}
		})
	}
}
