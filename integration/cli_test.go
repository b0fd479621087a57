package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// apiKeyInText finds generated API keys in a command's output.
var apiKeyInText = regexp.MustCompile(`tg_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}`)

// accountCmd runs `taskgate account <args>` in the server's directory and
// returns its standard output, its standard error and its exit code.
func (s *server) accountCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return taskgateCmd(t, s.dir, append([]string{"account"}, args...)...)
}

// accountOK runs `taskgate account <args>`, fails the test unless it
// exits 0, and returns its standard output.
func (s *server) accountOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.accountCmd(t, args...)
	if code != 0 {
		t.Fatalf("taskgate account %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// accountFails runs `taskgate account <args>`, fails the test unless it
// exits non-zero with every one of want in its standard error, and
// returns the standard error.
func (s *server) accountFails(t *testing.T, want []string, args ...string) string {
	t.Helper()
	out, errOut, code := s.accountCmd(t, args...)
	if code == 0 {
		t.Errorf("taskgate account %s: exit 0, want an error\nstdout:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("taskgate account %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, errOut)
		}
	}
	return errOut
}

// wantLines checks that out has, for each of want, a line holding all of
// its fields in that order.
func wantLines(t *testing.T, what, out string, want ...[]string) {
	t.Helper()
	for _, fields := range want {
		pattern := `(?m)^.*` + strings.Join(quoteAll(fields), `.*`) + `.*$`
		if !regexp.MustCompile(pattern).MatchString(out) {
			t.Errorf("%s: no line with %q in:\n%s", what, fields, out)
		}
	}
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = regexp.QuoteMeta(v)
	}
	return q
}

// decodeJSONOutput decodes a command's --json output into v.
func decodeJSONOutput(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s --json: %v:\n%s", what, err, out)
	}
}

// TestAccountCLI runs the `taskgate account` commands of the real binary
// against a running server's admin endpoint, found with --address or
// read from the server's Caddyfile with --config: exit codes, what people
// read, --json for scripts, keys printed once that work on the public
// listener, and errors that say what went wrong.
func TestAccountCLI(t *testing.T) {
	t.Parallel()
	s, port := startAdminServer(t, "memory")
	addr := []string{"--address", s.adminAddr}
	fromConfig := []string{"--config", "Caddyfile", "--adapter", "caddyfile"}
	create := func(t *testing.T, id, key string) response {
		t.Helper()
		c := taskClient{s: s, port: port, auth: creds(id, key)}
		return c.post(t, "async", "adm/echo", createBody("cli-task", "cli-group", `{}`), nil)
	}

	// create: the account, then its key, once.
	out := s.accountOK(t, append([]string{"create", "--name", "Acme Ltd", "--id", "acme", "--rate-limit", "100/s",
		"--burst", "50", "--allow", "127.0.0.0/8", "--allow", "2001:db8::/32", "--task-type", "adm/echo"}, addr...)...)
	keys := apiKeyInText.FindAllString(out, -1)
	if len(keys) != 1 {
		t.Fatalf("create printed %d keys, want 1:\n%s", len(keys), out)
	}
	acmeKey := keys[0]
	wantLines(t, "create", out,
		[]string{"Created account acme"},
		[]string{"name:", "Acme Ltd"},
		[]string{"kind:", "dynamic"},
		[]string{"status:", "enabled"},
		[]string{"rate limit:", "100/s burst 50"},
		[]string{"allow:", "127.0.0.0/8, 2001:db8::/32"},
		[]string{"task types:", "adm/echo"},
		[]string{"key_", acmeKey[:7], "live"},
		[]string{"API key", "shown once"},
	)
	wantAccepted(t, create(t, "acme", acmeKey))

	// create with --json, the admin address read from the Caddyfile.
	out = s.accountOK(t, append([]string{"create", "--name", "Beta", "--json"}, fromConfig...)...)
	var beta createdAccount
	decodeJSONOutput(t, "create", out, &beta)
	if !strings.HasPrefix(beta.ID, "acct_") || beta.Name != "Beta" || !apiKeyPattern.MatchString(beta.APIKey) ||
		len(beta.Keys) != 1 || !beta.DefaultRateLimit {
		t.Errorf("create --json: %s", out)
	}
	wantAccepted(t, create(t, beta.ID, beta.APIKey))

	// An error answer of the API: non-zero, with its code and message.
	s.accountFails(t, []string{"account acme: ACCOUNT_EXISTS: an account with this id exists (HTTP 409)"},
		append([]string{"create", "--name", "Again", "--id", "acme"}, addr...)...)
	s.accountFails(t, []string{"account fixed: ACCOUNT_EXISTS", "(HTTP 409)"},
		append([]string{"create", "--name", "Again", "--id", "fixed"}, fromConfig...)...)
	s.accountFails(t, []string{"BAD_REQUEST", "allow", "(HTTP 400)"},
		append([]string{"create", "--name", "Bad", "--allow", "10.0.0.0/33"}, addr...)...)
	s.accountFails(t, []string{"name"}, append([]string{"create", "--id", "nameless"}, addr...)...)

	// list, show: the facts, and never a key.
	out = s.accountOK(t, append([]string{"list"}, addr...)...)
	wantLines(t, "list", out,
		[]string{"ID", "NAME", "KIND"},
		[]string{"acme", "Acme Ltd", "dynamic", "no", "100/s burst 50", "1", "127.0.0.0/8"},
		[]string{beta.ID, "Beta", "dynamic"},
		[]string{"fixed", "static"},
	)
	if apiKeyInText.MatchString(out) {
		t.Errorf("list shows a key:\n%s", out)
	}
	var list struct {
		Accounts []adminAccount `json:"accounts"`
	}
	decodeJSONOutput(t, "list", s.accountOK(t, append([]string{"list", "--json"}, fromConfig...)...), &list)
	var ids []string
	for _, a := range list.Accounts {
		ids = append(ids, a.ID)
	}
	if want := []string{beta.ID, "acme", "fixed"}; strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("list --json: accounts %q, want %q", ids, want)
	}

	out = s.accountOK(t, append([]string{"show", "acme"}, addr...)...)
	var acme adminAccount
	decodeJSONOutput(t, "show", s.accountOK(t, append([]string{"show", "acme", "--json"}, addr...)...), &acme)
	if acme.ID != "acme" || len(acme.Keys) != 1 {
		t.Fatalf("show --json: %+v", acme)
	}
	firstKeyID := acme.Keys[0].ID
	wantLines(t, "show", out, []string{"id:", "acme"}, []string{"name:", "Acme Ltd"}, []string{firstKeyID, acmeKey[:7], "live"})
	if strings.Contains(out, acmeKey) {
		t.Errorf("show prints the key:\n%s", out)
	}
	s.accountFails(t, []string{"account nobody: NOT_FOUND", "(HTTP 404)"}, append([]string{"show", "nobody"}, addr...)...)

	// update: only the flags given change.
	out = s.accountOK(t, append([]string{"update", "acme", "--name", "Acme Group", "--clear-allow"}, addr...)...)
	wantLines(t, "update", out,
		[]string{"Updated account acme"},
		[]string{"name:", "Acme Group"},
		[]string{"rate limit:", "100/s burst 50"},
		[]string{"allow:", "any address"},
		[]string{"task types:", "adm/echo"},
	)
	var updated adminAccount
	decodeJSONOutput(t, "update", s.accountOK(t, append([]string{"update", "acme", "--allow", "10.0.0.0/8", "--json"}, addr...)...), &updated)
	if updated.Name != "Acme Group" || len(updated.Allow) != 1 || updated.Allow[0] != "10.0.0.0/8" {
		t.Errorf("update --json: %+v", updated)
	}
	wantError(t, create(t, "acme", acmeKey), http.StatusForbidden, "IP_NOT_ALLOWED")
	s.accountOK(t, append([]string{"update", "acme", "--allow", "127.0.0.1/32"}, addr...)...)
	wantAccepted(t, create(t, "acme", acmeKey))
	s.accountFails(t, []string{"nothing to change"}, append([]string{"update", "acme"}, addr...)...)
	out = s.accountOK(t, append([]string{"update", "acme", "--quota", "100/day", "--quota", "1000/month:adm/echo"}, addr...)...)
	wantLines(t, "update --quota", out, []string{"quotas:", "100/day, 1000/month adm/echo"})
	out = s.accountOK(t, append([]string{"usage", "acme"}, addr...)...)
	wantLines(t, "usage with quotas", out, []string{"100/day:", "used,", "left, resets"})
	out = s.accountOK(t, append([]string{"update", "acme", "--clear-quotas"}, addr...)...)
	wantLines(t, "update --clear-quotas", out, []string{"quotas:", "none"})
	s.accountFails(t, []string{"--quota 5/week"}, append([]string{"update", "acme", "--quota", "5/week"}, addr...)...)
	s.accountFails(t, []string{"account fixed: STATIC_ACCOUNT", "(HTTP 409)"}, append([]string{"update", "fixed", "--name", "x"}, addr...)...)

	// rotate-key: a new key, printed once; both work until one is revoked.
	out = s.accountOK(t, append([]string{"rotate-key", "acme"}, addr...)...)
	keys = apiKeyInText.FindAllString(out, -1)
	if len(keys) != 1 || keys[0] == acmeKey {
		t.Fatalf("rotate-key printed keys %q, want one new key:\n%s", keys, out)
	}
	secondKey := keys[0]
	wantLines(t, "rotate-key", out, []string{"New key key_", secondKey[:7], "acme"}, []string{"other keys stay live", "revoke-key acme"})
	wantAccepted(t, create(t, "acme", acmeKey))
	wantAccepted(t, create(t, "acme", secondKey))

	// revoke-key: the old key stops working at once.
	out = s.accountOK(t, append([]string{"revoke-key", "acme", firstKeyID}, addr...)...)
	wantLines(t, "revoke-key", out, []string{"Revoked key " + firstKeyID + " of account acme", "1 live key"})
	wantError(t, create(t, "acme", acmeKey), http.StatusForbidden, "INVALID_CREDENTIALS")
	wantAccepted(t, create(t, "acme", secondKey))
	s.accountFails(t, []string{"NOT_FOUND", "(HTTP 404)"}, append([]string{"revoke-key", "acme", firstKeyID}, addr...)...)

	// rotate-key --json --expire-others-in 0s: the other key expires now.
	var rotated newKeyAnswer
	decodeJSONOutput(t, "rotate-key", s.accountOK(t, append([]string{"rotate-key", "acme", "--expire-others-in", "0s", "--json"}, addr...)...), &rotated)
	if !apiKeyPattern.MatchString(rotated.APIKey) || rotated.OthersExpireAt == nil {
		t.Fatalf("rotate-key --json: %+v", rotated)
	}
	wantError(t, create(t, "acme", secondKey), http.StatusForbidden, "INVALID_CREDENTIALS")
	wantAccepted(t, create(t, "acme", rotated.APIKey))

	// disable, then update --enable.
	out = s.accountOK(t, append([]string{"disable", "acme"}, addr...)...)
	wantLines(t, "disable", out, []string{"Disabled account acme"})
	wantError(t, create(t, "acme", rotated.APIKey), http.StatusForbidden, "INVALID_CREDENTIALS")
	wantLines(t, "show", s.accountOK(t, append([]string{"show", "acme"}, fromConfig...)...), []string{"status:", "DISABLED"})
	s.accountOK(t, append([]string{"update", "acme", "--enable"}, addr...)...)
	wantAccepted(t, create(t, "acme", rotated.APIKey))

	// usage: once the counts are written, the command shows them.
	// acme's requests: 7 accepted creates, 1 refused by its allow list,
	// 3 refused for a revoked, an expired and a disabled account's key.
	want := usageCounts{
		Requests:       11,
		Rejected:       map[string]int64{"invalid_credentials": 3, "ip_not_allowed": 1},
		TasksCreated:   7,
		TasksCompleted: 7,
	}
	waitUsage(t, s, "acme", map[string]usageCounts{"adm/echo": want})
	var usage adminUsage
	decodeJSONOutput(t, "usage", s.accountOK(t, append([]string{"usage", "acme", "--json"}, addr...)...), &usage)
	if usage.AccountID != "acme" || usage.Total.String() != want.String() {
		t.Errorf("usage --json total %v, want %v", usage.Total, want)
	}
	out = s.accountOK(t, append([]string{"usage", "acme", "--from", usage.From, "--to", usage.To}, addr...)...)
	wantLines(t, "usage", out,
		[]string{"Usage of account acme from " + usage.From + " to " + usage.To},
		[]string{"DAY", "TASK TYPE", "REQUESTS", "REJECTED", "CREATED"},
		[]string{"adm/echo", "11", "4", "7", "7", "0"},
		[]string{"total", "11", "4", "7", "7", "0"},
		[]string{"Rejected, by error code: invalid_credentials 3, ip_not_allowed 1"},
	)
	s.accountFails(t, []string{"BAD_REQUEST", "(HTTP 400)"}, append([]string{"usage", "acme", "--from", "yesterday"}, addr...)...)

	// Nothing listening at the address: a readable error.
	s.accountFails(t, []string{"is taskgate running?"}, "list", "--address", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
}

// TestBinaryNamesItself checks that the binary is taskgate, not a stock
// Caddy: its version names both, its help introduces taskgate, and Caddy's
// commands that would replace it with a downloaded Caddy are gone.
func TestBinaryNamesItself(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, _, code := taskgateCmd(t, dir, "version")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "taskgate ") || !strings.HasPrefix(lines[1], "Caddy v2.") {
		t.Errorf("taskgate version: exit %d, output %q; want taskgate's version, then Caddy's", code, out)
	}
	if flag, _, _ := taskgateCmd(t, dir, "--version"); flag != out {
		t.Errorf("taskgate --version = %q, want what version prints, %q", flag, out)
	}
	help, _, code := taskgateCmd(t, dir, "help")
	if code != 0 || !strings.HasPrefix(help, "taskgate is an edge for task APIs") || !strings.Contains(help, "hash-key") || !strings.Contains(help, "account ") {
		t.Errorf("taskgate help: exit %d:\n%s", code, help)
	}
	for _, verb := range []string{"upgrade", "add-package", "remove-package"} {
		if strings.Contains(help, "\n  "+verb+" ") {
			t.Errorf("taskgate help lists %s:\n%s", verb, help)
		}
		if _, errOut, code := taskgateCmd(t, dir, verb); code == 0 || !strings.Contains(errOut, "unknown command") {
			t.Errorf("taskgate %s: exit %d, stderr %q; want an unknown command", verb, code, errOut)
		}
	}
}

// TestTaskAndDeliveryCLI checks `taskgate task` and `taskgate delivery`
// against a running server: a task shown by request id and listed by
// group, a delivery the receiver refused listed as failed and queued
// again, and errors that say what went wrong.
func TestTaskAndDeliveryCLI(t *testing.T) {
	t.Parallel()
	src := okSource(t)
	recv := newHookReceiver(t, always(http.StatusBadRequest))
	port := freePort(t)
	s := startServer(t, config{Global: fmt.Sprintf(`
taskgate {
	storage memory
	%s
	task_type cli/pan {
		source %s/pan
	}
	webhooks {
		allow_private 127.0.0.1/32
		retry 100ms 400ms 1m
	}
}`, hookAccount("cli", "webhook "+recv.url+"/hooks"), src.url), Sites: taskSite(port)})
	c := hookClient(s, port, "cli")
	id := c.createAsync(t, "cli/pan", "t-1", "g-1", `{}`)
	addr := []string{"--address", s.adminAddr}

	// The node said what it runs, in one line.
	if out := s.output(); !regexp.MustCompile(`"msg":"taskgate ready","version":"[^"]+","caddy":"v2\.[^"]+","storage":"memory","shared_store":false,"static_accounts":1,"dynamic_accounts":0,"task_types":\["cli/pan"\]`).MatchString(out) {
		t.Errorf("no start line naming version, store, accounts and task types:\n%s", out)
	}

	out, errOut, code := taskgateCmd(t, s.dir, append([]string{"task", "show", "cli", id, "--wait", "10"}, addr...)...)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "completed") || !strings.Contains(out, "cli/pan") {
		t.Errorf("task show: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = taskgateCmd(t, s.dir, append([]string{"task", "list", "cli", "--group", "g-1"}, addr...)...)
	if code != 0 || !strings.Contains(out, id) {
		t.Errorf("task list: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := taskgateCmd(t, s.dir, append([]string{"task", "list", "cli"}, addr...)...); code == 0 || !strings.Contains(errOut, "--group") {
		t.Errorf("task list without a filter: exit %d, stderr %q", code, errOut)
	}

	d := c.waitDelivery(t, id, "", "failed on the 400", func(d deliveryObject) bool { return d.Status == "failed" })
	out, errOut, code = taskgateCmd(t, s.dir, append([]string{"delivery", "list", "cli", "--status", "failed"}, addr...)...)
	if code != 0 || !strings.Contains(out, d.ID) || !strings.Contains(out, "400") {
		t.Errorf("delivery list: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = taskgateCmd(t, s.dir, append([]string{"delivery", "retry", "cli", d.ID}, addr...)...)
	if code != 0 || !strings.Contains(out, "Queued "+d.ID+" again") {
		t.Errorf("delivery retry: exit %d\n%s%s", code, out, errOut)
	}
	recv.waitRequests(t, 2)
	out, _, code = taskgateCmd(t, s.dir, append([]string{"delivery", "list", "cli", "--request-id", id, "--json"}, addr...)...)
	var listed []deliveryObject
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 1 {
		t.Errorf("delivery list --json: exit %d, %v:\n%s", code, err, out)
	}
	if _, errOut, code := taskgateCmd(t, s.dir, append([]string{"delivery", "retry", "cli", "msg_nosuchdelivery"}, addr...)...); code == 0 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Errorf("retry of an unknown delivery: exit %d, stderr %q", code, errOut)
	}
}
