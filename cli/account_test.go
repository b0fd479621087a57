package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// sampleAccount is the account object of docs/admin-api.md.
const sampleAccount = `{
  "id": "acme", "name": "Acme Ltd", "static": false, "disabled": false,
  "rate_limit": "100/s", "burst": 100, "default_rate_limit": false,
  "allow": ["203.0.113.0/24", "2001:db8::/32"],
  "task_types": ["verify_with_source/ind_pan"],
  "webhooks": [{"id": "we_7Qd2kP0aXw1Lm9Zr", "enabled": true, "url": "https://acme.example/hooks", "types": [], "has_secret": true, "has_authorization": false}],
  "failure_webhook": "https://acme.example/failures",
  "keys": [{"id": "key_7Qd2kP0aXw1Lm9Zr", "prefix": "tg_Ab3x", "created_at": "2026-11-25T10:00:00Z", "expires_at": null, "expired": false}],
  "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z"}`

// staticAccount is a Caddyfile account following the default rate, with
// one live and one expired key.
const staticAccount = `{
  "id": "demo", "name": "Demo", "static": true, "disabled": true,
  "rate_limit": "30/s", "burst": 30, "default_rate_limit": true,
  "allow": [], "task_types": [], "webhooks": [], "failure_webhook": "",
  "keys": [
    {"id": "sha256_0123456789ab", "prefix": "", "expires_at": null, "expired": false},
    {"id": "sha256_ba9876543210", "prefix": "", "expires_at": "2026-11-20T00:00:00Z", "expired": true}
  ]}`

// recordedRequest is one request the fake admin API received.
type recordedRequest struct {
	Method      string
	Path        string // escaped, as sent
	Query       string
	Body        string
	ContentType string
	Origin      string
}

// fakeAdmin is an admin API that records requests and gives one answer.
type fakeAdmin struct {
	addr string

	mu       sync.Mutex
	requests []recordedRequest
	status   int
	answer   string
}

func newFakeAdmin(t *testing.T) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{status: http.StatusOK, answer: sampleAccount}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.addr = srv.Listener.Addr().String()
	return f
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, recordedRequest{
		Method:      r.Method,
		Path:        r.URL.EscapedPath(),
		Query:       r.URL.RawQuery,
		Body:        string(body),
		ContentType: r.Header.Get("Content-Type"),
		Origin:      r.Header.Get("Origin"),
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	io.WriteString(w, f.answer)
}

// respond sets the answer to the next requests.
func (f *fakeAdmin) respond(status int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.answer = status, answer
}

// only returns the one request received, failing the test otherwise.
func (f *fakeAdmin) only(t *testing.T) recordedRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 1 {
		t.Fatalf("the admin API got %d requests, want 1: %+v", len(f.requests), f.requests)
	}
	r := f.requests[0]
	f.requests = nil
	return r
}

func (f *fakeAdmin) none(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 0 {
		t.Fatalf("the admin API got requests, want none: %+v", f.requests)
	}
}

// runAccountCmd runs `taskgate account args...` against the fake, the way
// caddycmd would, and returns what it printed.
func runAccountCmd(t *testing.T, f *fakeAdmin, stdin string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"account"}, args...)
	if f != nil {
		full = append(full, "--address", f.addr)
	}
	return runAccountArgs(stdin, full...)
}

func runAccountArgs(stdin string, args ...string) (string, error) {
	var out bytes.Buffer
	err := runAccountTo(&out, stdin, args...)
	return out.String(), err
}

// runAccountTo runs `taskgate args...`, writing its output to out.
func runAccountTo(out io.Writer, stdin string, args ...string) error {
	root := &cobra.Command{Use: "taskgate", SilenceUsage: true, SilenceErrors: true}
	account := &cobra.Command{Use: "account"}
	configureAccountCommand(account)
	root.AddCommand(account)
	root.SetOut(out)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	return root.Execute()
}

// fullDisk fails every write, as a full disk does.
type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestAccountCreateAnswerLost: a create whose answer, with the key shown
// once, cannot be written fails the command (a script must not take the
// key for stored), and says the account was made.
func TestAccountCreateAnswerLost(t *testing.T) {
	f := newFakeAdmin(t)
	created := strings.TrimSuffix(sampleAccount, "}") + `, "api_key": "tg_abcdefghijklmnopqrstuvwxyz012345_abc123"}`
	for _, extra := range [][]string{nil, {"--json"}} {
		f.respond(http.StatusCreated, created)
		args := append([]string{"account", "create", "--name", "Acme", "--address", f.addr}, extra...)
		err := runAccountTo(fullDisk{}, "", args...)
		if err == nil || !strings.Contains(err.Error(), "could not be written") || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("create %v to a full disk: %v; want the write's error, the account made", extra, err)
		}
		f.only(t)
	}
}

// checkRequest compares a request's method, path and JSON body (empty:
// no body).
func checkRequest(t *testing.T, got recordedRequest, method, path, body string) {
	t.Helper()
	if got.Method != method || got.Path != path {
		t.Errorf("request = %s %s, want %s %s", got.Method, got.Path, method, path)
	}
	// Writes say they are JSON, with a body or without.
	write := method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut
	if (write || body != "") && got.ContentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got.ContentType)
	}
	if body == "" {
		if got.Body != "" {
			t.Errorf("request body = %s, want none", got.Body)
		}
		return
	}
	if !sameJSON(t, got.Body, body) {
		t.Errorf("request body = %s\nwant %s", got.Body, body)
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

func wantContains(t *testing.T, out string, facts ...string) {
	t.Helper()
	for _, s := range facts {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestAccountCreate(t *testing.T) {
	f := newFakeAdmin(t)
	created := strings.TrimSuffix(sampleAccount, "}") + `, "api_key": "tg_abcdefghijklmnopqrstuvwxyz012345_abc123"}`
	f.respond(http.StatusCreated, created)

	out, err := runAccountCmd(t, f, "", "create", "--name", "Acme Ltd", "--id", "acme",
		"--rate-limit", "100/s", "--burst", "100",
		"--allow", "203.0.113.0/24", "--allow", "2001:db8::/32",
		"--task-type", "verify_with_source/ind_pan",
		"--webhook", "https://acme.example/hooks", "--webhook", "https://acme.example/b?x=1,2",
		"--webhook-secret", "whsec_s3cret",
		"--failure-webhook", "https://acme.example/failures")
	if err != nil {
		t.Fatal(err)
	}
	req := f.only(t)
	checkRequest(t, req, "POST", "/taskgate/accounts", `{
		"name": "Acme Ltd", "id": "acme", "rate_limit": "100/s", "burst": 100,
		"allow": ["203.0.113.0/24", "2001:db8::/32"],
		"task_types": ["verify_with_source/ind_pan"],
		"webhooks": [{"url": "https://acme.example/hooks", "secret": "whsec_s3cret"},
		             {"url": "https://acme.example/b?x=1,2", "secret": "whsec_s3cret"}],
		"failure_webhook": "https://acme.example/failures"}`)
	if want := "http://" + f.addr; req.Origin != want {
		t.Errorf("Origin = %q, want %q", req.Origin, want)
	}
	wantContains(t, out, "Created account acme", "Acme Ltd", "100/s burst 100",
		"203.0.113.0/24, 2001:db8::/32", "https://acme.example/hooks (signed)",
		"key_7Qd2kP0aXw1Lm9Zr", "shown once", "tg_abcdefghijklmnopqrstuvwxyz012345_abc123")

	t.Run("only the name", func(t *testing.T) {
		if _, err := runAccountCmd(t, f, "", "create", "--name", "Acme"); err != nil {
			t.Fatal(err)
		}
		checkRequest(t, f.only(t), "POST", "/taskgate/accounts", `{"name": "Acme"}`)
	})
	t.Run("secret on standard input", func(t *testing.T) {
		_, err := runAccountCmd(t, f, "whsec_fromstdin\n", "create", "--name", "Acme",
			"--webhook", "https://acme.example/hooks", "--webhook-secret-file", "-")
		if err != nil {
			t.Fatal(err)
		}
		checkRequest(t, f.only(t), "POST", "/taskgate/accounts",
			`{"name": "Acme", "webhooks": [{"url": "https://acme.example/hooks", "secret": "whsec_fromstdin"}]}`)
	})
	t.Run("secret in a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, []byte("whsec_fromfile\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := runAccountCmd(t, f, "", "create", "--name", "Acme",
			"--webhook", "https://acme.example/hooks", "--webhook-secret-file", path)
		if err != nil {
			t.Fatal(err)
		}
		checkRequest(t, f.only(t), "POST", "/taskgate/accounts",
			`{"name": "Acme", "webhooks": [{"url": "https://acme.example/hooks", "secret": "whsec_fromfile"}]}`)
	})
	for _, args := range [][]string{
		{"create"}, // no --name
		{"create", "--name", "Acme", "--webhook-secret", "whsec_x"}, // a secret for no webhook
		{"create", "--name", "Acme", "--webhook", "https://a.example", "--webhook-secret", "x", "--webhook-secret-file", "-"},
		{"create", "--name", "Acme", "extra"},
	} {
		if _, err := runAccountCmd(t, f, "", args...); err == nil {
			t.Errorf("%q: want an error", args)
		}
		f.none(t)
	}
}

func TestAccountList(t *testing.T) {
	f := newFakeAdmin(t)
	f.respond(http.StatusOK, `{"accounts": [`+sampleAccount+`,`+staticAccount+`]}`)
	out, err := runAccountCmd(t, f, "", "list")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "GET", "/taskgate/accounts", "")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", out)
	}
	wantContains(t, lines[0], "ID", "NAME", "KIND", "DISABLED", "RATE", "KEYS", "ALLOW")
	wantContains(t, lines[1], "acme", "Acme Ltd", "dynamic", "no", "100/s burst 100", "1", "203.0.113.0/24, 2001:db8::/32")
	wantContains(t, lines[2], "demo", "static", "yes", "30/s burst 30 (default)", "1 (+1 expired)", "any")

	f.respond(http.StatusOK, `{"accounts": []}`)
	out, err = runAccountCmd(t, f, "", "list")
	if err != nil || !strings.Contains(out, "No accounts.") {
		t.Errorf("empty list: %q, %v", out, err)
	}
}

func TestAccountShow(t *testing.T) {
	f := newFakeAdmin(t)
	out, err := runAccountCmd(t, f, "", "show", "acme")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "GET", "/taskgate/accounts/acme", "")
	wantContains(t, out, "acme", "Acme Ltd", "dynamic", "enabled", "100/s burst 100",
		"203.0.113.0/24", "verify_with_source/ind_pan", "https://acme.example/hooks (signed)",
		"https://acme.example/failures", "key_7Qd2kP0aXw1Lm9Zr", "tg_Ab3x", "live")

	f.respond(http.StatusOK, staticAccount)
	out, err = runAccountCmd(t, f, "", "show", "demo")
	if err != nil {
		t.Fatal(err)
	}
	f.only(t)
	wantContains(t, out, "static", "DISABLED", "(default)", "any address", "task types:", "all",
		"webhooks:", "none", "expired 2026-11-20T00:00:00Z")

	// Path segments are escaped.
	if _, err := runAccountCmd(t, f, "", "show", "a b/../c?d"); err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "GET", "/taskgate/accounts/a%20b%2F..%2Fc%3Fd", "")

	if _, err := runAccountCmd(t, f, "", "show"); err == nil {
		t.Error("show without an id: want an error")
	}
	f.none(t)
}

func TestAccountUpdate(t *testing.T) {
	f := newFakeAdmin(t)
	for _, tc := range []struct {
		args []string
		body string
	}{
		{[]string{"--name", "Acme Two"}, `{"name": "Acme Two"}`},
		{[]string{"--rate-limit", "200/s", "--burst", "400"}, `{"rate_limit": "200/s", "burst": 400}`},
		{[]string{"--rate-limit", ""}, `{"rate_limit": ""}`},
		{[]string{"--burst", "0"}, `{"burst": 0}`},
		{[]string{"--allow", "10.0.0.0/8", "--allow", "192.0.2.1/32"}, `{"allow": ["10.0.0.0/8", "192.0.2.1/32"]}`},
		{[]string{"--clear-allow"}, `{"allow": []}`},
		{[]string{"--task-type", "a/b"}, `{"task_types": ["a/b"]}`},
		{[]string{"--clear-task-types"}, `{"task_types": []}`},
		{[]string{"--failure-webhook", ""}, `{"failure_webhook": ""}`},
		{[]string{"--webhook", "https://h.example", "--webhook-secret", "whsec_x"}, `{"webhooks": [{"url": "https://h.example", "secret": "whsec_x"}]}`},
		{[]string{"--clear-webhooks"}, `{"webhooks": []}`},
		{[]string{"--enable"}, `{"disabled": false}`},
		{[]string{"--enable", "--name", "N"}, `{"disabled": false, "name": "N"}`},
		{[]string{"--lock-webhooks"}, `{"webhooks_locked": true}`},
		{[]string{"--unlock-webhooks"}, `{"webhooks_locked": false}`},
	} {
		out, err := runAccountCmd(t, f, "", append([]string{"update", "acme"}, tc.args...)...)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		checkRequest(t, f.only(t), "PATCH", "/taskgate/accounts/acme", tc.body)
		wantContains(t, out, "Updated account acme", "Acme Ltd")
	}
	for _, args := range [][]string{
		{"update", "acme"}, // nothing to change
		{"update", "acme", "--allow", "10.0.0.0/8", "--clear-allow"},
		{"update", "acme", "--task-type", "a/b", "--clear-task-types"},
		{"update", "acme", "--webhook", "https://h.example", "--clear-webhooks"},
		{"update", "acme", "--enable=false"},
		{"update", "acme", "--lock-webhooks", "--unlock-webhooks"},
		{"update", "--name", "N"}, // no id
	} {
		if _, err := runAccountCmd(t, f, "", args...); err == nil {
			t.Errorf("%q: want an error", args)
		}
		f.none(t)
	}
}

func TestAccountRotateKey(t *testing.T) {
	f := newFakeAdmin(t)
	f.respond(http.StatusCreated, `{"key_id": "key_new", "api_key": "tg_newkey", "prefix": "tg_newk",
		"created_at": "2026-11-25T10:00:00Z", "others_expire_at": "2026-11-26T10:00:00Z"}`)
	out, err := runAccountCmd(t, f, "", "rotate-key", "acme", "--expire-others-in", "24h")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "POST", "/taskgate/accounts/acme/keys", `{"expire_others_in": "24h0m0s"}`)
	wantContains(t, out, "key_new", "tg_newkey", "shown once", "expire at 2026-11-26T10:00:00Z")

	if _, err := runAccountCmd(t, f, "", "rotate-key", "acme", "--expire-others-in", "0s"); err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "POST", "/taskgate/accounts/acme/keys", `{"expire_others_in": "0s"}`)

	f.respond(http.StatusCreated, `{"key_id": "key_new", "api_key": "tg_newkey", "prefix": "tg_newk", "created_at": "2026-11-25T10:00:00Z"}`)
	out, err = runAccountCmd(t, f, "", "rotate-key", "acme")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "POST", "/taskgate/accounts/acme/keys", "")
	wantContains(t, out, "tg_newkey", "stay live", "revoke-key acme")

	for _, d := range []string{"-1h", "tomorrow"} {
		if _, err := runAccountCmd(t, f, "", "rotate-key", "acme", "--expire-others-in", d); err == nil {
			t.Errorf("--expire-others-in %s: want an error", d)
		}
		f.none(t)
	}
}

func TestAccountRevokeKey(t *testing.T) {
	f := newFakeAdmin(t)
	out, err := runAccountCmd(t, f, "", "revoke-key", "acme", "key_old")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "DELETE", "/taskgate/accounts/acme/keys/key_old", "")
	wantContains(t, out, "Revoked key key_old of account acme", "1 live key(s) left")

	f.respond(http.StatusOK, strings.Replace(sampleAccount, `"expired": false`, `"expired": true`, 1))
	out, err = runAccountCmd(t, f, "", "revoke-key", "acme", "key/x")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "DELETE", "/taskgate/accounts/acme/keys/key%2Fx", "")
	wantContains(t, out, "0 live key(s) left", "authenticates nothing", "rotate-key acme")
}

func TestAccountDisable(t *testing.T) {
	f := newFakeAdmin(t)
	f.respond(http.StatusOK, strings.Replace(sampleAccount, `"disabled": false`, `"disabled": true`, 1))
	out, err := runAccountCmd(t, f, "", "disable", "acme")
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "DELETE", "/taskgate/accounts/acme", "")
	wantContains(t, out, "Disabled account acme", "update acme --enable")
}

func TestAccountUsage(t *testing.T) {
	f := newFakeAdmin(t)
	f.respond(http.StatusOK, `{"account_id": "acme", "from": "2026-11-01", "to": "2026-11-30",
	 "usage": [
	   {"day": "2026-11-25", "task_type": "verify_with_source/ind_pan",
	    "requests": 120, "rejected": {"too_many_requests": 3},
	    "tasks_created": 110, "tasks_completed": 108, "tasks_failed": 2},
	   {"day": "2026-11-25", "task_type": "", "requests": 7, "rejected": {"ip_not_allowed": 1}}
	 ],
	 "total": {"requests": 127, "rejected": {"too_many_requests": 3, "ip_not_allowed": 1},
	           "tasks_created": 110, "tasks_completed": 108, "tasks_failed": 2}}`)
	out, err := runAccountCmd(t, f, "", "usage", "acme", "--from", "2026-11-01", "--to", "2026-11-30")
	if err != nil {
		t.Fatal(err)
	}
	req := f.only(t)
	checkRequest(t, req, "GET", "/taskgate/accounts/acme/usage", "")
	if req.Query != "from=2026-11-01&to=2026-11-30" {
		t.Errorf("query = %q", req.Query)
	}
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines {
		if strings.Contains(l, "2026-11-25") || strings.Contains(l, "total") {
			rows = append(rows, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{
		"2026-11-25 verify_with_source/ind_pan 120 3 110 108 2",
		"2026-11-25 (none) 7 1 0 0 0",
		"total 127 4 110 108 2",
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows = %q, want %q\n%s", rows, want, out)
	}
	wantContains(t, out, "acme", "2026-11-01", "2026-11-30", "ip_not_allowed 1, too_many_requests 3")

	f.respond(http.StatusOK, `{"account_id": "acme", "from": "2026-10-27", "to": "2026-11-25", "usage": [], "total": {}}`)
	if _, err := runAccountCmd(t, f, "", "usage", "acme"); err != nil {
		t.Fatal(err)
	}
	if req := f.only(t); req.Query != "" {
		t.Errorf("query without --from/--to = %q, want none", req.Query)
	}
}

func TestAccountJSONOutput(t *testing.T) {
	f := newFakeAdmin(t)
	for _, tc := range []struct {
		answer string
		args   []string
	}{
		{sampleAccount, []string{"show", "acme"}},
		{`{"accounts": [` + sampleAccount + `]}`, []string{"list"}},
		{`{"key_id": "key_new", "api_key": "tg_newkey"}`, []string{"rotate-key", "acme"}},
		{`{"account_id": "acme", "usage": [], "total": {"requests": 0}}`, []string{"usage", "acme"}},
		{sampleAccount, []string{"disable", "acme"}},
	} {
		f.respond(http.StatusOK, tc.answer)
		out, err := runAccountCmd(t, f, "", append(tc.args, "--json")...)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		f.only(t)
		if !sameJSON(t, out, tc.answer) {
			t.Errorf("%q --json printed %s", tc.args, out)
		}
		if !strings.HasPrefix(out, "{\n  \"") || !strings.HasSuffix(out, "}\n") {
			t.Errorf("%q --json: not indented:\n%s", tc.args, out)
		}
	}
}

func TestAccountErrors(t *testing.T) {
	f := newFakeAdmin(t)
	for _, tc := range []struct {
		status  int
		answer  string
		args    []string
		wantErr string
	}{
		{409, `{"error": "ACCOUNT_EXISTS", "message": "an account with this id exists"}`,
			[]string{"create", "--name", "Acme", "--id", "acme"},
			"account acme: ACCOUNT_EXISTS: an account with this id exists (HTTP 409)"},
		{404, `{"error": "NOT_FOUND", "message": "no such key"}`,
			[]string{"revoke-key", "acme", "key_x"},
			"account acme key key_x: NOT_FOUND: no such key (HTTP 404)"},
		{409, `{"error": "STATIC_ACCOUNT", "message": "account demo is defined in the Caddyfile"}`,
			[]string{"update", "demo", "--name", "x", "--json"},
			"account demo: STATIC_ACCOUNT: account demo is defined in the Caddyfile (HTTP 409)"},
		{503, `{"error": "NOT_RUNNING", "message": "the taskgate app is not running"}`,
			[]string{"list"},
			"accounts: NOT_RUNNING: the taskgate app is not running (HTTP 503)"},
		// Caddy's own error answer, e.g. a binary without the taskgate routes.
		{404, `{"error": "resource not found: /taskgate/accounts"}`,
			[]string{"list"},
			"accounts: HTTP 404: resource not found: /taskgate/accounts"},
		{502, "bad gateway\x1b[2J", []string{"show", "acme"}, "account acme: HTTP 502: bad gateway\uFFFD[2J"},
		{500, "", []string{"show", "acme"}, "account acme: HTTP 500: Internal Server Error"},
	} {
		f.respond(tc.status, tc.answer)
		out, err := runAccountCmd(t, f, "", tc.args...)
		f.only(t)
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("%q: error %v\nwant %s", tc.args, err, tc.wantErr)
		}
		var apiErr *apiError
		if !errors.As(err, &apiErr) || apiErr.Status != tc.status {
			t.Errorf("%q: error %#v is not a apiError with status %d", tc.args, err, tc.status)
		}
		if out != "" {
			t.Errorf("%q: printed %q on an error", tc.args, out)
		}
	}

	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = runAccountArgs("", "account", "list", "--address", addr)
	if err == nil || !strings.Contains(err.Error(), "is taskgate running?") {
		t.Errorf("no admin endpoint: error %v", err)
	}
	_, err = runAccountArgs("", "account", "list", "--address", "localhost:1-3")
	if err == nil || !strings.Contains(err.Error(), "invalid admin address") {
		t.Errorf("port range: error %v", err)
	}
}

func TestAccountCommandUnixSocket(t *testing.T) {
	// Unix socket paths are short (108 bytes); t.TempDir can be too long.
	dir, err := os.MkdirTemp("", "tg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets: %v", err)
	}
	f := &fakeAdmin{status: http.StatusOK, answer: sampleAccount}
	srv := httptest.NewUnstartedServer(f)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	// With socket permission bits, as an admin listen address may have.
	for _, addr := range []string{"unix/" + sock, "unix/" + sock + "|0220"} {
		out, err := runAccountArgs("", "account", "show", "acme", "--address", addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		req := f.only(t)
		checkRequest(t, req, "GET", "/taskgate/accounts/acme", "")
		if req.Origin != "" {
			t.Errorf("Origin = %q over a unix socket, want none", req.Origin)
		}
		wantContains(t, out, "Acme Ltd")
	}
}

func TestAccountCommandAddressFromConfig(t *testing.T) {
	f := newFakeAdmin(t)
	config := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(config, []byte(`{"admin": {"listen": "`+f.addr+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runAccountArgs("", "account", "show", "acme", "--config", config); err != nil {
		t.Fatal(err)
	}
	checkRequest(t, f.only(t), "GET", "/taskgate/accounts/acme", "")
}

func TestAccountCommandHelp(t *testing.T) {
	out, err := runAccountArgs("", "account")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"create", "list", "show", "update", "rotate-key", "revoke-key", "disable", "usage"} {
		wantContains(t, out, "\n  "+sub+" ")
	}
	if _, err := runAccountArgs("", "account", "frobnicate"); err == nil {
		t.Error("unknown subcommand: want an error")
	}
}

func TestParseQuotaFlags(t *testing.T) {
	got, err := parseQuotaFlags([]string{"3/day", "10000/month:verify_with_source/ind_pan,verify_with_source/ind_gst"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Limit != 3 || got[0].Period != "day" || len(got[0].TaskTypes) != 0 ||
		got[1].Limit != 10000 || got[1].Period != "month" || len(got[1].TaskTypes) != 2 || got[1].TaskTypes[1] != "verify_with_source/ind_gst" {
		t.Errorf("parsed %+v", got)
	}
	for _, bad := range []string{"3/week", "0/day", "day", "x/month:a/b"} {
		if _, err := parseQuotaFlags([]string{bad}); err == nil {
			t.Errorf("--quota %s: no error", bad)
		}
	}
}
