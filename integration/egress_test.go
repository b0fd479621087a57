package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// hostileDestinations are webhook URLs aimed inside the gateway's network,
// each in a spelling Go or a resolver takes, with why it is refused.
// {admin} stands for the admin endpoint's port, which is named before the
// range it is in.
var hostileDestinations = []struct{ url, reason string }{
	{"http://127.0.0.1:{admin}/stop", "the admin endpoint is never a destination"},
	{"http://localhost:{admin}/stop", "the admin endpoint is never a destination"},
	{"http://tenant.localhost/", "loopback address"},
	{"http://[::1]/", "loopback address"},
	{"http://[::ffff:127.0.0.1]:{admin}/stop", "the admin endpoint is never a destination"},
	{"http://2130706433:{admin}/stop", "the admin endpoint is never a destination"},
	{"http://0x7f.1/", "loopback address"},
	{"http://0.0.0.0:{admin}/stop", "the admin endpoint is never a destination"},
	{"http://[::]/", "unspecified address"},
	{"http://169.254.169.254/latest/meta-data/", "link-local address"},
	{"http://[fe80::1%25lo]/", "link-local address"},
	{"http://10.0.0.1/", "private address"},
	{"http://172.16.5.4/", "private address"},
	{"http://192.168.1.1/", "private address"},
	{"http://[fd00::1]/", "private address"},
	{"http://100.64.0.1/", "shared (CGNAT) address"},
	{"http://224.0.0.251/", "multicast address"},
	{"http://255.255.255.255/", "reserved address"},
	{"http://[64:ff9b::a9fe:a9fe]/", "link-local address"},
}

// TestEgressRefusedWhenSet checks every hostile destination at the three
// places a webhook URL is set: the admin API and the CLI answer with a
// clear error and store nothing, and a Caddyfile holding it does not load.
// With allow_private 127.0.0.1/32, as in the demo, loopback receivers are
// allowed but the admin endpoint is not.
func TestEgressRefusedWhenSet(t *testing.T) {
	t.Parallel()
	s, _ := startAdminServer(t, "memory")
	adminPort := s.adminAddr[strings.LastIndex(s.adminAddr, ":")+1:]
	for _, h := range hostileDestinations {
		u := strings.ReplaceAll(h.url, "{admin}", adminPort)
		for _, body := range []string{
			fmt.Sprintf(`{"name":"x","webhooks":[{"url":%q}]}`, u),
			fmt.Sprintf(`{"name":"x","failure_webhook":%q}`, u),
		} {
			r := adminCall(t, s, http.MethodPost, "/taskgate/accounts", body)
			wantError(t, r, http.StatusBadRequest, "BAD_REQUEST")
			if !strings.Contains(string(r.body), h.reason) {
				t.Errorf("POST %s: %s, want the message to say %q", body, r.body, h.reason)
			}
		}
	}
	// A change is held to the same rule.
	acct := createAccount(t, s, `{"id":"patched","name":"P","webhooks":[{"url":"https://hooks.example.com/x"}]}`)
	r := adminCall(t, s, http.MethodPatch, "/taskgate/accounts/"+acct.ID, `{"webhooks":[{"url":"http://169.254.169.254/"}]}`)
	wantError(t, r, http.StatusBadRequest, "BAD_REQUEST")
	// Nothing was stored: only the one account exists besides the static.
	var list struct {
		Accounts []json.RawMessage `json:"accounts"`
	}
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts", ""), http.StatusOK, &list)
	if strings.Contains(fmt.Sprint(list), "169.254") {
		t.Errorf("a refused destination was stored: %s", list.Accounts)
	}

	// The CLI says why, with a non-zero exit.
	s.accountFails(t, []string{"the admin endpoint is never a destination"}, "create", "--name", "Evil", "--webhook", "http://127.0.0.1:"+adminPort+"/stop", "--address", s.adminAddr)
	s.accountFails(t, []string{"private address"}, "create", "--name", "Evil", "--webhook", "http://192.168.0.1/", "--address", s.adminAddr)

	// The Caddyfile: refused at load, with the line.
	for _, tc := range []struct{ hooks, webhooks, want string }{
		{"webhook http://127.0.0.1:9/hooks", "", "loopback address"},
		{"failure_webhook http://[::ffff:a9fe:a9fe]/", "", "link-local address"},
		{"webhook http://127.0.0.1:" + adminPort + "/stop", "allow_private 127.0.0.1/32", "the admin endpoint is never a destination"},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "Caddyfile")
		writeFile(t, path, fmt.Sprintf(`{
	admin %s
	taskgate {
		account a {
			key k
			%s
		}
		webhooks {
			timeout 2s
			%s
		}
	}
}
:0 {
	respond ok
}
`, s.adminAddr, tc.hooks, tc.webhooks))
		_, errOut, code := taskgateCmd(t, dir, "validate", "--config", path, "--adapter", "caddyfile")
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("validate with %q: exit %d, want an error saying %q:\n%s", tc.hooks, code, tc.want, errOut)
		}
	}
}

// TestEgressRefusedAtDelivery checks the check made when a delivery is
// attempted: an account stored while its receiver's range was allowed keeps
// its URL, but once the operator no longer allows the range its deliveries
// (and its failure notices) fail at once as DESTINATION_NOT_ALLOWED, one
// attempt each, never retried, and the receiver gets nothing. The node goes
// on serving.
func TestEgressRefusedAtDelivery(t *testing.T) {
	t.Parallel()
	src := okSource(t)
	recv := newHookReceiver(t, always(http.StatusOK))
	port := freePort(t)
	global := func(allow string) string {
		return fmt.Sprintf(`
taskgate {
	storage %s
	task_type egress/pan {
		source %s/pan
	}
	webhooks {
		%s
		timeout 2s
		retry 100ms 400ms 1m
	}
}`, "memory", src.url, allow)
	}
	s := startServer(t, config{Global: global("allow_private 127.0.0.1/32"), Sites: taskSite(port)})
	acct := createAccount(t, s, fmt.Sprintf(`{"id":"inward","name":"Inward","rate_limit":"1000/s","webhooks":[{"url":%q}],"failure_webhook":%q}`,
		recv.url+"/hooks", recv.url+"/failures"))
	c := taskClient{s: s, port: port, auth: creds(acct.ID, acct.APIKey)}

	// Allowed: delivered.
	first := c.createAsync(t, "egress/pan", "t-1", "g", `{}`)
	c.waitDelivery(t, first, "", "delivered while allowed", func(d deliveryObject) bool { return d.Status == "delivered" })
	before := len(recv.requests())

	// No longer allowed: refused, once, for good.
	if r := s.load(t, config{Global: global(""), Sites: taskSite(port)}); r.status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.status, r.body)
	}
	// Sent with an Idempotency-Key, so that the client may send it again
	// should the reload close its connection unanswered.
	second := wantAccepted(t, c.post(t, "async", "egress/pan", createBody("t-2", "g", `{}`), http.Header{"Idempotency-Key": {"after-reload"}}))
	d := c.waitDelivery(t, second, "", "failed as not allowed", func(d deliveryObject) bool { return d.Status == "failed" })
	if len(d.Attempts) != 1 || d.Attempts[0].Error == nil || *d.Attempts[0].Error != "DESTINATION_NOT_ALLOWED" || d.Attempts[0].StatusCode != nil {
		t.Errorf("delivery %s, want one attempt with error DESTINATION_NOT_ALLOWED and no status", d.raw)
	}
	// The failure notice is refused too, and is not notified about.
	c.waitDelivery(t, second, "webhook.failed", "failure notice refused", func(d deliveryObject) bool {
		return d.Status == "failed" && len(d.Attempts) == 1 && d.Attempts[0].Error != nil && *d.Attempts[0].Error == "DESTINATION_NOT_ALLOWED"
	})
	if got := len(recv.requests()); got != before {
		t.Errorf("the receiver got %d requests after the range was closed, want none", got-before)
	}
	// The operator sees why in the log; the account's record does not name
	// the address.
	if out := s.output(); !strings.Contains(out, "webhook destination not allowed") || !strings.Contains(out, "loopback address") {
		t.Errorf("no log line says why the destination was refused:\n%s", out)
	}
	if strings.Contains(string(d.raw), "loopback") {
		t.Errorf("the delivery record names the range: %s", d.raw)
	}
	metrics, _ := s.metrics(t, "taskgate_webhooks_destinations_refused_total")
	if metrics["taskgate_webhooks_destinations_refused_total"] < 2 {
		t.Errorf("taskgate_webhooks_destinations_refused_total = %v, want at least 2", metrics)
	}
	// Still serving.
	c.waitTerminal(t, c.createAsync(t, "egress/pan", "t-3", "g", `{}`))
	if !s.alive() {
		t.Fatal("the node exited")
	}
}
