package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The keys of the leak tests: distinctive, so that a grep cannot miss them
// nor find them by accident.
const (
	leakRightKey = "tg_leak_right_5f0c2a9e7b"
	leakWrongKey = "tg_leak_wrong_91d3b7e4aa"
)

// echoUpstream is a loopback HTTP server that answers every request with
// its headers as JSON and remembers them.
type echoUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	t.Helper()
	u := &echoUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *echoUpstream) received() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

// TestAPIKeyNotForwardedUpstream checks that api_key_auth in front of
// reverse_proxy passes the account id on but never the key, and that a
// refused request never reaches the upstream.
func TestAPIKeyNotForwardedUpstream(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	account alpha {
		key_sha256 %s
	}
}`, sha256Hex(leakRightKey)),
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	ip_allowlist
	account_rate_limit
	reverse_proxy %s
}`, port, strings.TrimPrefix(up.URL, "http://")),
	})

	for _, h := range []http.Header{
		creds("alpha", leakWrongKey),
		creds("nobody", leakRightKey),
		{"Api-Key": {leakRightKey}},
		{"Account-Id": {"alpha"}, "Api-Key": {leakRightKey, leakRightKey}},
	} {
		r := s.get(t, siteURL(port, "/refused"), h)
		if r.status != http.StatusUnauthorized && r.status != http.StatusForbidden {
			t.Errorf("headers %v: status %d, want 401 or 403", h, r.status)
		}
	}
	if got := up.received(); len(got) != 0 {
		t.Fatalf("refused requests reached the upstream: %v", got)
	}

	r := s.get(t, siteURL(port, "/allowed"), creds("alpha", leakRightKey))
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200 (body %s)", r.status, r.body)
	}
	got := up.received()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(got))
	}
	seen := got[0]
	if v := seen.Values("Account-Id"); len(v) != 1 || v[0] != "alpha" {
		t.Errorf("upstream saw Account-Id %q, want [alpha]", v)
	}
	if v, ok := seen["Api-Key"]; ok {
		t.Errorf("upstream saw Api-Key %q", v)
	}
	for name, vs := range seen {
		for _, v := range vs {
			if strings.Contains(v, leakRightKey) {
				t.Errorf("upstream saw the key in header %s: %q", name, v)
			}
		}
	}
	if strings.Contains(string(r.body), leakRightKey) {
		t.Errorf("the key came back to the client through the upstream: %s", r.body)
	}
}

// TestAPIKeyNotLoggedWithHeaderFilter runs the logging setup the README
// prescribes (Caddy records each request for its logs before any handler
// runs, so api_key_auth cannot remove the key from that record): a filter that deletes the Api-Key
// request header from the access log and from the default log. With it, no
// key reaches the access log or the process output, at debug level, for
// allowed and refused requests and for requests whose upstream fails.
func TestAPIKeyNotLoggedWithHeaderFilter(t *testing.T) {
	t.Parallel()
	checkKeysNotLogged(t)
}

func checkKeysNotLogged(t *testing.T) {
	up := newEchoUpstream(t)
	port, deadPort := freePort(t), freePort(t)
	s := newServer(t)
	accessLog := filepath.Join(s.dir, "access.log")
	const filter = `
		format filter {
			request>headers>Api-Key delete
		}`
	const defaultLog = `
log {
	format filter {
		request>headers>Api-Key delete
	}
}`
	s.start(config{
		Global: fmt.Sprintf(`
debug
%s
taskgate {
	account alpha {
		key_sha256 %s
	}
}`, defaultLog, sha256Hex(leakRightKey)),
		Sites: fmt.Sprintf(`
http://:%d {
	log {
		output file %s%s
	}
	handle /up/* {
		api_key_auth
		reverse_proxy %s
	}
	handle /down/* {
		api_key_auth
		reverse_proxy 127.0.0.1:%d
	}
	handle {
		api_key_auth
		respond "ok" 200
	}
}`, port, accessLog, filter, strings.TrimPrefix(up.URL, "http://"), deadPort),
	})

	requests := []struct {
		path   string
		header http.Header
		status int
	}{
		{"/", creds("alpha", leakRightKey), 200},
		{"/", creds("alpha", leakWrongKey), 403},
		{"/", creds("nobody", leakRightKey), 403},
		{"/", http.Header{"Api-Key": {leakRightKey}}, 401},
		{"/", http.Header{"Account-Id": {"alpha"}, "Api-Key": {leakRightKey, leakWrongKey}}, 403},
		{"/up/x", creds("alpha", leakRightKey), 200},
		{"/up/x", creds("alpha", leakWrongKey), 403},
		{"/down/x", creds("alpha", leakRightKey), 502},
		{"/down/x", creds("alpha", leakWrongKey), 403},
	}
	for _, rq := range requests {
		if r := s.get(t, siteURL(port, rq.path), rq.header); r.status != rq.status {
			t.Fatalf("GET %s: status %d, want %d (body %s)", rq.path, r.status, rq.status, r.body)
		}
	}

	// Caddy writes the access log after the answer went out: wait for one
	// line per request before looking, so that the check is not vacuous.
	var access string
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(accessLog)
		access = string(b)
		if strings.Count(access, `"msg":"handled request"`) >= len(requests) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has not got %d entries:\n%s", len(requests), access)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(access, `"Account-Id":["alpha"]`) {
		t.Fatalf("the access log does not show request headers at all, the check would prove nothing:\n%s", access)
	}
	// The failed upstream is logged as an error by the default logger.
	var output string
	for {
		output = s.output()
		if strings.Contains(output, "127.0.0.1:"+fmt.Sprint(deadPort)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error log of the failed upstream in the output:\n%s", output)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, key := range []string{leakRightKey, leakWrongKey} {
		for _, l := range strings.Split(access, "\n") {
			if strings.Contains(l, key) {
				t.Errorf("access log holds key %s: %s", key, l)
			}
		}
		for _, l := range strings.Split(output, "\n") {
			if strings.Contains(l, key) {
				t.Errorf("process output holds key %s: %s", key, l)
			}
		}
	}
}
