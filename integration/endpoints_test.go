package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// endpointObject is a webhook endpoint as the webhooks API shows it.
type endpointObject struct {
	ID                      string   `json:"id"`
	URL                     string   `json:"url"`
	TaskTypes               []string `json:"task_types"`
	Enabled                 bool     `json:"enabled"`
	ReadOnly                bool     `json:"read_only"`
	Secret                  string   `json:"secret"`
	PreviousSecretExpiresAt *string  `json:"previous_secret_expires_at"`
}

// startEndpointServer starts a server with the given storage, the task
// type adm/echo (whose source answers at once), webhooks allowed to
// loopback receivers and the task API on a port of its own, and returns
// it with that port.
func startEndpointServer(t *testing.T, storage string) (*server, int) {
	t.Helper()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"done"}`)
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: fmt.Sprintf(`
taskgate {
	storage %[1]s
	task_type adm/echo {
		source %[2]s/echo
	}
	webhooks {
		allow_private 127.0.0.1/32
		timeout 2s
	}
}`, s.storageOption(storage), src.url), Sites: taskSite(port)})
	return s, port
}

// TestSelfServiceEndpoints: an account made through the admin API creates
// its own endpoint through the client API, its tasks' webhooks arrive
// signed with the secret it was shown once, a rotation signs them with
// both secrets, a test event arrives at once, a disabled endpoint gets no
// more, and the operator locks the account's endpoints.
func TestSelfServiceEndpoints(t *testing.T) {
	t.Parallel()
	recv := newHookReceiver(t, always(http.StatusNoContent))
	s, port := startEndpointServer(t, "bolt")
	acct := createAccount(t, s, `{"id":"tenant","name":"Tenant"}`)
	c := taskClient{s: s, port: port, auth: http.Header{"Account-Id": {acct.ID}, "Api-Key": {acct.APIKey}}}
	call := func(method, path, body string) response {
		t.Helper()
		return s.do(t, method, c.url("/v3/webhooks"+path), c.header(nil), strings.NewReader(body))
	}

	var ep endpointObject
	decodeAnswer(t, call(http.MethodPost, "", `{"url":"`+recv.url+`/hooks","description":"main"}`), http.StatusCreated, &ep)
	if !strings.HasPrefix(ep.Secret, "whsec_") || !ep.Enabled {
		t.Fatalf("created %+v, want an enabled endpoint and its secret", ep)
	}
	wantError(t, call(http.MethodPost, "", `{"url":"http://169.254.169.254/"}`), http.StatusBadRequest, "BAD_REQUEST")

	// A task's webhook, signed with the secret shown at creation.
	signedWith := func(what string, n int, secrets ...string) {
		t.Helper()
		recv.waitRequests(t, n)
		got := recv.requests()[n-1]
		sigs := strings.Fields(got.Header.Get("webhook-signature"))
		if len(sigs) != len(secrets) {
			t.Fatalf("%s: %d signatures %q, want %d", what, len(sigs), sigs, len(secrets))
		}
		for _, secret := range secrets {
			if err := verifySignature(secret, got.ID, got.Header.Get("webhook-timestamp"), got.Body, got.Header.Get("webhook-signature")); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	c.waitTerminal(t, c.createAsync(t, "adm/echo", "t1", "g", `{}`))
	signedWith("the first task's webhook", 1, ep.Secret)

	// A rotation: both secrets sign during the overlap.
	var rotated endpointObject
	decodeAnswer(t, call(http.MethodPost, "/"+ep.ID+"/rotate-secret", `{"grace":"1h"}`), http.StatusOK, &rotated)
	if rotated.Secret == ep.Secret || rotated.PreviousSecretExpiresAt == nil {
		t.Fatalf("rotated %+v, want a new secret and the old one's end", rotated)
	}
	c.waitTerminal(t, c.createAsync(t, "adm/echo", "t2", "g", `{}`))
	signedWith("a task's webhook during the overlap", 2, rotated.Secret, ep.Secret)

	// A test event, at once, answered with the attempt.
	var res struct {
		Delivered bool `json:"delivered"`
		Attempt   struct {
			StatusCode int `json:"status_code"`
		} `json:"attempt"`
	}
	decodeAnswer(t, call(http.MethodPost, "/"+ep.ID+"/test", ""), http.StatusOK, &res)
	if !res.Delivered || res.Attempt.StatusCode != http.StatusNoContent {
		t.Fatalf("test event: %+v, want delivered with 204", res)
	}
	signedWith("the test event", 3, rotated.Secret, ep.Secret)
	if body := recv.requests()[2].Body; !strings.Contains(string(body), `"webhook.test"`) {
		t.Fatalf("test event body %s", body)
	}

	// Disabled: the next task sends nothing; its delivery fails, to be
	// retried once the endpoint is enabled again.
	decodeAnswer(t, call(http.MethodPatch, "/"+ep.ID, `{"enabled":false}`), http.StatusOK, &ep)
	t3 := c.createAsync(t, "adm/echo", "t3", "g", `{}`)
	c.waitTerminal(t, t3)
	var list struct {
		Webhooks []endpointObject `json:"webhooks"`
	}
	decodeAnswer(t, call(http.MethodGet, "", ""), http.StatusOK, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Enabled || list.Webhooks[0].Secret != "" {
		t.Fatalf("list %+v, want the disabled endpoint without its secret", list)
	}

	// The operator locks the account's endpoints: the client may list
	// them, not change them; the operator may.
	r := adminCall(t, s, http.MethodPatch, "/taskgate/accounts/tenant", `{"webhooks_locked":true}`)
	if r.status != http.StatusOK {
		t.Fatalf("lock: %d %s", r.status, r.body)
	}
	wantError(t, call(http.MethodPatch, "/"+ep.ID, `{"enabled":true}`), http.StatusForbidden, "SELF_SERVICE_DISABLED")
	r = adminCall(t, s, http.MethodPatch, "/taskgate/accounts/tenant/webhooks/"+ep.ID, `{"enabled":true}`)
	if r.status != http.StatusOK {
		t.Fatalf("the operator enables the endpoint: %d %s", r.status, r.body)
	}
	var shown endpointObject
	if err := json.Unmarshal(r.body, &shown); err != nil || !shown.Enabled {
		t.Fatalf("operator's answer %s: want the endpoint enabled", r.body)
	}
	c.waitTerminal(t, c.createAsync(t, "adm/echo", "t4", "g", `{}`))
	signedWith("a task's webhook after re-enabling", 4, rotated.Secret, ep.Secret)

	// The CLI: the operator rotates the secret without overlap, and the
	// test event it sends is signed with the secret it printed alone.
	out, errOut, code := taskgateCmd(t, s.dir, "webhook", "rotate-secret", "tenant", ep.ID, "--grace", "0s", "--address", s.adminAddr)
	if code != 0 {
		t.Fatalf("taskgate webhook rotate-secret: exit %d\n%s%s", code, out, errOut)
	}
	_, printed, ok := strings.Cut(out, "Secret (shown once): ")
	if !ok {
		t.Fatalf("taskgate webhook rotate-secret printed no secret:\n%s", out)
	}
	printed = strings.TrimSpace(printed)
	if out, errOut, code = taskgateCmd(t, s.dir, "webhook", "test", "tenant", ep.ID, "--address", s.adminAddr); code != 0 || !strings.Contains(out, "delivered") {
		t.Fatalf("taskgate webhook test: exit %d\n%s%s", code, out, errOut)
	}
	signedWith("the CLI's test event after a rotation without overlap", 5, printed)
	if out, _, code = taskgateCmd(t, s.dir, "webhook", "list", "tenant", "--address", s.adminAddr); code != 0 || !strings.Contains(out, ep.ID) {
		t.Fatalf("taskgate webhook list: exit %d\n%s", code, out)
	}
	for _, got := range recv.requests() {
		if strings.Contains(string(got.Body), `"t3"`) {
			t.Fatalf("a task that ended while its endpoint was disabled was delivered: %s", got.Body)
		}
	}
	// Its delivery failed and stayed: retried now, it arrives.
	var failed deliveryObject
	waitUntil(t, "the delivery of the task that ended while its endpoint was disabled has failed", 10*time.Second, func() bool {
		ds := c.deliveries(t, "request_id="+t3)
		if len(ds) == 1 && ds[0].Status == "failed" {
			failed = ds[0]
			return true
		}
		return false
	})
	if n := len(failed.Attempts); n != 1 || failed.Attempts[0].Error == nil || *failed.Attempts[0].Error != "endpoint disabled" {
		t.Fatalf("delivery %s: attempts %s, want one, \"endpoint disabled\"", failed.ID, failed.raw)
	}
	if r := s.do(t, http.MethodPost, c.url("/v3/webhooks/deliveries/"+failed.ID+"/retry"), c.header(nil), nil); r.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	recv.waitFor(t, "the retried delivery", func() bool {
		for _, got := range recv.got {
			if got.ID == failed.ID {
				return true
			}
		}
		return false
	})
}

// TestEndpointGoneIsDisabled: a receiver answering 410 Gone has its
// endpoint disabled at once; the account's failure webhook hears of it
// (webhook.disabled) and of the delivery that failed, and the endpoint
// shows why.
func TestEndpointGoneIsDisabled(t *testing.T) {
	t.Parallel()
	recv := newHookReceiver(t, func(r *http.Request, _ int) int {
		if r.URL.Path == "/gone" {
			return http.StatusGone
		}
		return http.StatusNoContent
	})
	s, port := startEndpointServer(t, "memory")
	acct := createAccount(t, s, fmt.Sprintf(`{"id":"leaver","name":"Leaver","failure_webhook":%q}`, recv.url+"/failures"))
	c := taskClient{s: s, port: port, auth: http.Header{"Account-Id": {acct.ID}, "Api-Key": {acct.APIKey}}}
	var ep endpointObject
	decodeAnswer(t, s.do(t, http.MethodPost, c.url("/v3/webhooks"), c.header(nil), strings.NewReader(`{"url":"`+recv.url+`/gone"}`)), http.StatusCreated, &ep)

	c.waitTerminal(t, c.createAsync(t, "adm/echo", "t1", "g", `{}`))
	var events []string
	recv.waitFor(t, "the notices of the disabled endpoint and of the failed delivery", func() bool {
		events = events[:0]
		for _, r := range recv.got {
			if r.Path == "/failures" {
				var b struct {
					Event string `json:"event"`
				}
				_ = json.Unmarshal(r.Body, &b)
				events = append(events, b.Event)
			}
		}
		return len(events) == 2
	})
	for _, r := range recv.requests() {
		if r.Path != "/failures" || !strings.Contains(string(r.Body), `"webhook.disabled"`) {
			continue
		}
		var b struct {
			EndpointID     string `json:"endpoint_id"`
			Reason         string `json:"reason"`
			LastStatusCode int    `json:"last_status_code"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.EndpointID != ep.ID || b.Reason != "gone" || b.LastStatusCode != http.StatusGone {
			t.Fatalf("webhook.disabled body %s, want endpoint %s, reason gone, last status 410", r.Body, ep.ID)
		}
	}
	var shown struct {
		Enabled        bool   `json:"enabled"`
		DisabledReason string `json:"disabled_reason"`
	}
	decodeAnswer(t, s.do(t, http.MethodGet, c.url("/v3/webhooks/"+ep.ID), c.header(nil), nil), http.StatusOK, &shown)
	if shown.Enabled || shown.DisabledReason != "gone" {
		t.Fatalf("endpoint %+v after a 410, want disabled (gone)", shown)
	}
}
