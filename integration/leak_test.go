package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
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

// TestAPIKeyNotLoggedWithHeaderFilter runs the log filter of the demo
// Caddyfile (Caddy records each request for its logs before any handler
// runs, so api_key_auth cannot remove the key from that record) as the
// default log's and an access log's, with log_credentials on, and sends
// secrets in every spelling of a credential header: api-key in any case,
// api_key, X-Api-Key and Authorization, on allowed and refused requests
// and on requests whose upstream fails (a handler error, logged by the
// default log). No secret reaches the access log or the process output,
// at debug level; a second site's access log without the filter shows
// that each spelling would have been logged.
func TestAPIKeyNotLoggedWithHeaderFilter(t *testing.T) {
	t.Parallel()
	checkKeysNotLogged(t)
}

// demoLogFilter returns the `format filter { … }` block of the demo
// Caddyfile's default log.
func demoLogFilter(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\n\tlog \{\n\t\t(format filter \{.*?\n\t\t\})\n\t\}`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the demo Caddyfile has no global log block with a format filter")
	}
	return string(m[1])
}

// credentialSpellings are the request headers a key may be sent in, as a
// client may spell them on the wire (Go keeps these as given on the
// client side and canonicalizes them on the server's).
var credentialSpellings = []string{"api-key", "API-KEY", "Api-Key", "api_key", "API_KEY", "x-api-key", "X-API-KEY", "Authorization"}

func checkKeysNotLogged(t *testing.T) {
	up := newEchoUpstream(t)
	port, bare, deadPort := freePort(t), freePort(t), freePort(t)
	s := newServer(t)
	accessLog := filepath.Join(s.dir, "access.log")
	bareLog := filepath.Join(s.dir, "unfiltered.log")
	filter := demoLogFilter(t)
	s.start(config{
		Global: fmt.Sprintf(`
debug
servers {
	log_credentials
}
log {
	%s
}
taskgate {
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account alpha {
		key_sha256 %s
	}
}`, strings.ReplaceAll(filter, "\n\t\t", "\n\t"), sha256Hex(leakRightKey)),
		Sites: fmt.Sprintf(`
http://:%d {
	log {
		output file %s
		%s
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
}

http://:%d {
	log {
		output file %s
	}
	respond "ok" 200
}`, port, accessLog, filter, strings.TrimPrefix(up.URL, "http://"), deadPort, bare, bareLog),
	})

	// A recognizable secret per spelling and path, so that a leak names
	// its way in.
	var secrets []string
	secret := func(spelling, path string, good bool) string {
		v := fmt.Sprintf("tg_leak_%s_%s_%t", strings.NewReplacer("-", "", "_", "U").Replace(spelling), strings.Trim(strings.ReplaceAll(path, "/", ""), "x"), good)
		secrets = append(secrets, v)
		return v
	}
	requests := 0
	send := func(port int, path string, h http.Header, status int) {
		t.Helper()
		requests++
		if r := s.get(t, siteURL(port, path), h); r.status != status {
			t.Fatalf("GET %s %v: status %d, want %d (body %s)", path, h, r.status, status, r.body)
		}
	}
	// The right and wrong keys in the header api_key_auth reads.
	send(port, "/", creds("alpha", leakRightKey), 200)
	send(port, "/", creds("alpha", leakWrongKey), 403)
	send(port, "/", creds("nobody", leakRightKey), 403)
	send(port, "/", http.Header{"Api-Key": {leakRightKey}}, 401)
	send(port, "/", http.Header{"Account-Id": {"alpha"}, "Api-Key": {leakRightKey, leakWrongKey}}, 403)
	// Every spelling, beside a right key (allowed), a wrong one (refused)
	// and in front of a failing upstream (a handler error).
	for _, spelling := range credentialSpellings {
		for _, path := range []string{"/", "/up/x", "/down/x"} {
			for _, good := range []bool{true, false} {
				h := creds("alpha", leakWrongKey)
				status := http.StatusForbidden
				if good {
					h = creds("alpha", leakRightKey)
					status = map[string]int{"/": 200, "/up/x": 200, "/down/x": 502}[path]
				}
				v := secret(spelling, path, good)
				switch {
				case http.CanonicalHeaderKey(spelling) == "Api-Key":
					// The header api_key_auth reads, in another case:
					// the key itself, right or not.
					delete(h, "Api-Key")
					if good {
						v = leakRightKey
					}
				case spelling == "Authorization":
					v = "Bearer " + v
				}
				h[spelling] = []string{v}
				send(port, path, h, status)
			}
		}
		h := http.Header{}
		h[spelling] = []string{"control-" + secret(spelling, "bare", true)}
		send(bare, "/", h, 200)
	}

	// Caddy writes an access log entry after the answer went out: wait for
	// one line per request before looking, so that the check is not
	// vacuous.
	deadline := time.Now().Add(10 * time.Second)
	readLog := func(path string, want int) string {
		for {
			b, _ := os.ReadFile(path)
			if strings.Count(string(b), `"msg":"handled request"`) >= want {
				return string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not got %d entries:\n%s", path, want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	access := readLog(accessLog, requests-len(credentialSpellings))
	unfiltered := readLog(bareLog, len(credentialSpellings))
	if !strings.Contains(access, `"Account-Id":["alpha"]`) {
		t.Fatalf("the access log does not show request headers at all, the check would prove nothing:\n%s", access)
	}
	// Without the filter, each spelling reaches the log: the filter is
	// what keeps them out.
	for _, spelling := range credentialSpellings {
		if v := "control-" + secret(spelling, "bare", true); !strings.Contains(unfiltered, v) {
			t.Errorf("the unfiltered access log lacks %s's value %s: the check of %s proves nothing", spelling, v, spelling)
		}
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

	for _, key := range append(secrets, leakRightKey, leakWrongKey) {
		if strings.HasSuffix(key, "bare_true") {
			continue
		}
		for _, l := range strings.Split(access, "\n") {
			if strings.Contains(l, key) {
				t.Errorf("access log holds %s: %s", key, l)
			}
		}
		for _, l := range strings.Split(output, "\n") {
			if strings.Contains(l, key) {
				t.Errorf("process output holds %s: %s", key, l)
			}
		}
	}
	// Nor does a key sent in a wrong header reach the upstream.
	for _, h := range up.received() {
		for _, name := range []string{"Api-Key", "Api_key", "X-Api-Key"} {
			if v, ok := h[name]; ok {
				t.Errorf("the upstream saw %s: %q", name, v)
			}
		}
	}
}

// TestDocumentedLogFiltersCoverEverySpelling checks that every log filter
// the demo Caddyfile, the README and docs/ show deletes every header a key
// may come in, as the one TestAPIKeyNotLoggedWithHeaderFilter runs does.
func TestDocumentedLogFiltersCoverEverySpelling(t *testing.T) {
	t.Parallel()
	files := []string{filepath.Join("..", "Caddyfile"), filepath.Join("..", "README.md")}
	docs, _ := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	files = append(files, docs...)
	block := regexp.MustCompile(`(?s)format filter \{.*?\}`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, filter := range block.FindAllString(string(b), -1) {
			found++
			for _, name := range []string{"Api-Key", "Api_key", "X-Api-Key", "Authorization"} {
				if !regexp.MustCompile(`request>headers>` + name + `\s+delete`).MatchString(filter) {
					t.Errorf("%s: a log filter does not delete %s:\n%s", f, name, filter)
				}
			}
		}
	}
	if found < 6 {
		t.Errorf("found %d log filters, want at least the demo's, the README's two and deployment.md's three", found)
	}
}

// TestLiteralSecretsWarned loads a config whose webhook secrets,
// authorizations and keys are written out for one account and given by
// {env.*} and {file.*} placeholders for another: each written-out secret
// draws a warning at load that names its account and webhook and says
// that the admin API shows it, without showing it in the log; the
// placeholders draw none, and the admin API's /config/ shows them, not
// the secrets they stand for.
func TestLiteralSecretsWarned(t *testing.T) {
	t.Parallel()
	const (
		literalSecret = "whsec_bGl0ZXJhbC1zZWNyZXQtZm9yLXRoZS10ZXN0"
		literalAuth   = "Bearer tg_literal_receiver_93be1f"
		literalKey    = "tg_literal_key_0d4a77"
		fileSecret    = "whsec_ZmlsZS1zZWNyZXQtZm9yLXRoZS10ZXN0LXg"
		envAuth       = "tg_env_receiver_6c2e90"
	)
	s := newServer(t)
	secretFile := filepath.Join(s.dir, "hook-secret")
	writeFile(t, secretFile, fileSecret+"\n")
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	account lit {
		key %s
		webhook https://hooks.example.com/lit {
			secret %s
			authorization "%s"
		}
	}
	account ph {
		key {env.TG_TEST_PH_KEY}
		webhook https://hooks.example.com/ph {
			secret {file.%s}
			authorization "Bearer {env.TG_TEST_PH_AUTH}"
		}
	}
}`, literalKey, literalSecret, literalAuth, secretFile),
		Sites: fmt.Sprintf("http://:%d {\n\tapi_key_auth\n\trespond ok\n}", freePort(t)),
		Env:   []string{"TG_TEST_PH_KEY=tg_env_key_51aa03", "TG_TEST_PH_AUTH=" + envAuth},
	})

	type entry struct {
		Level, Msg, AccountID, Webhook, Option string
	}
	var warnings []entry
	for _, line := range strings.Split(s.output(), "\n") {
		var e struct {
			Level     string `json:"level"`
			Msg       string `json:"msg"`
			AccountID string `json:"account_id"`
			Webhook   string `json:"webhook_host"`
			Option    string `json:"option"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && strings.Contains(e.Msg, "a secret is written out") {
			warnings = append(warnings, entry{e.Level, e.Msg, e.AccountID, e.Webhook, e.Option})
		}
	}
	// The webhook is named by its host (and place): the rest of a URL may
	// carry a token.
	want := map[string]bool{"lit  key": false, "lit hooks.example.com secret": false, "lit hooks.example.com authorization": false}
	for _, w := range warnings {
		k := w.AccountID + " " + w.Webhook + " " + w.Option
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected warning %+v", w)
			continue
		}
		want[k] = true
		if w.Level != "warn" || !strings.Contains(w.Msg, "/config/") {
			t.Errorf("warning %+v: want level warn and a mention of the admin API's /config/", w)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no warning for %q:\n%s", k, s.output())
		}
	}
	for _, v := range []string{literalSecret, literalAuth, literalKey, fileSecret, envAuth} {
		if strings.Contains(s.output(), v) {
			t.Errorf("the log shows a secret %s", v)
		}
	}
	cfg := s.get(t, "http://"+s.adminAddr+"/config/apps/taskgate/accounts", nil)
	if !strings.Contains(string(cfg.body), "{file."+secretFile+"}") || !strings.Contains(string(cfg.body), "{env.TG_TEST_PH_AUTH}") {
		t.Errorf("/config/ does not show the placeholders: %s", cfg.body)
	}
	for _, v := range []string{fileSecret, envAuth} {
		if strings.Contains(string(cfg.body), v) {
			t.Errorf("/config/ shows the secret %s behind a placeholder", v)
		}
	}
}
