package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestReloadKeepsLimiterState replaces the config through the admin API
// (as `caddy reload` does) and checks that the new config is served while
// the rate-limit state of the old one is kept, and that a config that fails
// to load leaves the running one, state included, in place.
func TestReloadKeepsLimiterState(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s := newServer(t)
	cfg := func(body, extraAccount, extraRoute string) config {
		return config{
			Global: `
taskgate {
	account busy {
		key key-busy
		rate_limit 10/m burst 2
	}
	account fresh {
		key key-fresh
		rate_limit 10/m burst 2
	}` + extraAccount + `
}`,
			Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	account_rate_limit
	%s
	respond "%s {http.auth.user.id}" 200
}`, port, extraRoute, body),
		}
	}
	s.start(cfg("v1", "", ""))
	u := siteURL(port, "/")
	busy := creds("busy", "key-busy")

	wantOK(t, s.get(t, u, busy), "v1 busy")
	wantOK(t, s.get(t, u, busy), "v1 busy")
	wantError(t, s.get(t, u, busy), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")

	if r := s.load(t, cfg("v2", "", "")); r.status != http.StatusOK {
		t.Fatalf("POST /load: %d %s", r.status, r.body)
	}
	wantOK(t, s.get(t, u, creds("fresh", "key-fresh")), "v2 fresh")
	r := s.get(t, u, busy)
	wantError(t, r, http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	if remaining, _ := rateLimitState(t, r); remaining != 0 {
		t.Errorf("busy after reload: remaining %d, want 0", remaining)
	}

	// A config that fails to provision is refused as a whole: whether it
	// fails in the taskgate app or after it, in a later handler.
	bad := []struct {
		name  string
		cfg   config
		error string
	}{
		{"bad account", cfg("v3", `
	account broken {
		key {env.TG_TEST_SURELY_UNSET_VAR}
	}`, ""), "is its environment variable set?"},
		{"bad handler after the chain", cfg("v3", "", `
	reverse_proxy /proxied/* 127.0.0.1:9 {
		transport http {
			tls_trust_pool file /nonexistent/ca.pem
		}
	}`), "/nonexistent/ca.pem"},
	}
	for _, b := range bad {
		r = s.load(t, b.cfg)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), b.error) {
			t.Errorf("POST /load, %s: %d %s, want 400 naming %q", b.name, r.status, r.body, b.error)
		}
		wantError(t, s.get(t, u, busy), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	}
	wantOK(t, s.get(t, u, creds("fresh", "key-fresh")), "v2 fresh")
	wantError(t, s.get(t, u, creds("fresh", "key-fresh")), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	// The decision counters are the process's: they go on across reloads
	// and are on the new config's metrics endpoint.
	got, _ := s.metrics(t, "taskgate_edge_decisions_total")
	limited := `taskgate_edge_decisions_total{handler="account_rate_limit",outcome="too_many_requests"}`
	allowed := `taskgate_edge_decisions_total{handler="account_rate_limit",outcome="allowed"}`
	if got[limited] != 5 || got[allowed] != 4 {
		t.Errorf("after reloads: %s = %v, want 5; %s = %v, want 4", limited, got[limited], allowed, got[allowed])
	}
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
}
