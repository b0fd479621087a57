package endpoints_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/webhook"
)

const pan = "verify_with_source/ind_pan"

// receiver is a loopback webhook receiver that keeps what it got.
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, status int) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) last(t *testing.T) received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) == 0 {
		t.Fatal("the receiver got nothing")
	}
	return rc.got[len(rc.got)-1]
}

// signedBy tells whether one of the header's signatures is the secret's
// (Standard Webhooks: HMAC-SHA256 of "<id>.<timestamp>.<body>").
func signedBy(secret string, r received) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(r.header.Get("webhook-id") + "." + r.header.Get("webhook-timestamp") + "."))
	mac.Write(r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

type fixture struct {
	t       *testing.T
	service *endpoints.Service
	admin   *admin.Service
}

func newFixture(t *testing.T) *fixture {
	static := &account.Account{ID: "demo", Static: true, Keys: []account.Key{{Hash: account.HashKey("demo-key")}},
		Webhooks: []account.Webhook{{URL: "https://hooks.example.com/demo"}}}
	dynamic := account.NewDynamic()
	registry, err := account.NewRegistry(account.RegistryConfig{Static: []*account.Account{static}, Dynamic: dynamic})
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	policy := egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	adminService := &admin.Service{Accounts: store, UsageStore: store, Dynamic: dynamic, Static: registry,
		DefaultLimit: ratelimit.DefaultLimit, TaskTypes: map[string]bool{pan: true}, Egress: policy}
	return &fixture{t: t, admin: adminService, service: &endpoints.Service{
		Lookup: registry.Lookup, Update: adminService.UpdateRecord, Egress: policy,
		TaskTypes: map[string]bool{pan: true}, Sender: webhook.NewSender(webhook.SenderConfig{Egress: policy, Timeout: 5 * time.Second}),
	}}
}

// do sends a request to the webhooks API of the account and decodes the
// answer into out.
func (f *fixture) do(accountID, method, path, body string, operator bool, want int, out any) {
	f.t.Helper()
	r := httptest.NewRequest(method, "/v3/webhooks"+path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	f.service.Serve(w, r, accountID, path, operator)
	if w.Code != want {
		f.t.Fatalf("%s %s %s: %d %s, want %d", method, path, body, w.Code, w.Body, want)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, w.Body)
		}
	}
}

// TestEndpointLifeCycle creates, lists, changes, tests, rotates and
// deletes an endpoint through the API, against a loopback receiver that
// checks every signature.
func TestEndpointLifeCycle(t *testing.T) {
	f := newFixture(t)
	if _, _, err := f.admin.Create(t.Context(), &admin.Input{ID: admin.Optional[string]{Set: true, Value: "acme"}, Name: admin.Optional[string]{Set: true, Value: "Acme"}}); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, http.StatusNoContent)

	var created endpoints.View
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/hooks","task_types":["`+pan+`"],"description":"prod"}`, false, http.StatusCreated, &created)
	if !strings.HasPrefix(created.ID, "we_") || !strings.HasPrefix(created.Secret, "whsec_") || !created.Enabled || !created.Signed {
		t.Fatalf("created %+v, want an enabled, signed endpoint with an id and its secret", created)
	}
	var list struct{ Webhooks []endpoints.View }
	f.do("acme", "GET", "", "", false, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != created.ID || list.Webhooks[0].Secret != "" {
		t.Fatalf("list %+v, want the endpoint without its secret", list)
	}

	// Hostile and bad input.
	f.do("acme", "POST", "", `{"url":"http://169.254.169.254/latest/"}`, false, http.StatusBadRequest, nil)
	f.do("acme", "POST", "", `{"url":"http://10.0.0.1/"}`, false, http.StatusBadRequest, nil)
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/hooks"}`, false, http.StatusBadRequest, nil) // the same URL twice
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/x","task_types":["nope/none"]}`, false, http.StatusBadRequest, nil)
	f.do("acme", "POST", "", `{"URL":"`+rc.URL+`/x"}`, false, http.StatusBadRequest, nil)
	f.do("acme", "POST", "", `{"description":"no url"}`, false, http.StatusBadRequest, nil)
	f.do("acme", "GET", "/we_missing", "", false, http.StatusNotFound, nil)
	f.do("acme", "PUT", "/"+created.ID, "", false, http.StatusMethodNotAllowed, nil)

	// The test event is signed with the secret shown at creation.
	var res endpoints.TestResult
	f.do("acme", "POST", "/"+created.ID+"/test", "", false, http.StatusOK, &res)
	if !res.Delivered || res.Attempt.StatusCode == nil || *res.Attempt.StatusCode != http.StatusNoContent || res.Event != endpoints.EventTest {
		t.Fatalf("test: %+v, want delivered with 204", res)
	}
	got := rc.last(t)
	if !signedBy(created.Secret, got) || !strings.Contains(string(got.body), `"type":"webhook.test"`) {
		t.Fatalf("test event %s, %q: want webhook.test signed with the secret", got.body, got.header.Get("webhook-signature"))
	}

	// A rotation: both secrets sign until the overlap ends.
	var rotated endpoints.View
	f.do("acme", "POST", "/"+created.ID+"/rotate-secret", `{"grace":"1h"}`, false, http.StatusOK, &rotated)
	if rotated.Secret == "" || rotated.Secret == created.Secret || rotated.PreviousSecretExpiresAt == nil {
		t.Fatalf("rotated %+v, want a new secret and the old one's end", rotated)
	}
	f.do("acme", "POST", "/"+created.ID+"/test", "", false, http.StatusOK, &res)
	got = rc.last(t)
	if sigs := strings.Fields(got.header.Get("webhook-signature")); len(sigs) != 2 || !signedBy(rotated.Secret, got) || !signedBy(created.Secret, got) {
		t.Fatalf("during the overlap: %q, want the new and the old signature", got.header.Get("webhook-signature"))
	}
	// The same, as deliveries of tasks resolve it.
	acct, _ := f.service.Lookup("acme")
	target, _, ok := webhook.ResolveAt(acct, &webhook.Delivery{URL: rc.URL + "/hooks", Event: webhook.EventTask}, time.Now())
	if !ok || target.Secret == nil || target.PreviousSecret == nil {
		t.Fatalf("resolved %+v, %v; want both secrets", target, ok)
	}
	if _, _, ok := webhook.ResolveAt(acct, &webhook.Delivery{URL: rc.URL + "/hooks", Event: webhook.EventTask}, time.Now().Add(2*time.Hour)); !ok {
		t.Fatal("after the overlap: not resolved")
	}
	f.do("acme", "POST", "/"+created.ID+"/rotate-secret", `{"grace":"0s"}`, false, http.StatusOK, &rotated)
	f.do("acme", "POST", "/"+created.ID+"/test", "", false, http.StatusOK, &res)
	if sigs := strings.Fields(rc.last(t).header.Get("webhook-signature")); len(sigs) != 1 || !signedBy(rotated.Secret, rc.last(t)) {
		t.Fatalf("after a rotation without overlap: %q, want the new signature alone", sigs)
	}
	f.do("acme", "POST", "/"+created.ID+"/rotate-secret", `{"grace":"30d"}`, false, http.StatusBadRequest, nil)
	// The operator's writes must say they are JSON, body or not: a page
	// cannot make a browser send one cross-site without asking.
	f.do("acme", "POST", "/"+created.ID+"/rotate-secret", "", true, http.StatusUnsupportedMediaType, nil)
	f.do("acme", "POST", "/"+created.ID+"/test", "", true, http.StatusUnsupportedMediaType, nil)

	// Disabled: no delivery resolves; the test event still goes.
	var changed endpoints.View
	f.do("acme", "PATCH", "/"+created.ID, `{"enabled":false,"description":"paused"}`, false, http.StatusOK, &changed)
	if changed.Enabled || changed.Description != "paused" || changed.URL != rc.URL+"/hooks" {
		t.Fatalf("changed %+v, want disabled with its new description", changed)
	}
	acct, _ = f.service.Lookup("acme")
	if _, _, ok := webhook.ResolveAt(acct, &webhook.Delivery{URL: rc.URL + "/hooks", Event: webhook.EventTask}, time.Now()); ok {
		t.Fatal("a disabled endpoint resolves")
	}
	f.do("acme", "POST", "/"+created.ID+"/test", "", false, http.StatusOK, &res)

	// Self-service off for the account: the client lists, the operator
	// changes.
	unlocked, _ := f.service.Lookup("acme")
	if _, err := f.admin.Update(t.Context(), "acme", &admin.Input{WebhooksLocked: admin.Optional[bool]{Set: true, Value: true}}); err != nil {
		t.Fatal(err)
	}
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/other"}`, false, http.StatusForbidden, nil)
	f.do("acme", "DELETE", "/"+created.ID, "", false, http.StatusForbidden, nil)
	// Even on a node whose copy of the account does not know of the lock
	// yet: the change is checked against the record it changes.
	lookup := f.service.Lookup
	f.service.Lookup = func(id string) (*account.Account, bool) {
		if id == "acme" {
			return unlocked, true
		}
		return lookup(id)
	}
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/other"}`, false, http.StatusForbidden, nil)
	f.do("acme", "PATCH", "/"+created.ID, `{"description":"stale"}`, false, http.StatusForbidden, nil)
	f.do("acme", "DELETE", "/"+created.ID, "", false, http.StatusForbidden, nil)
	f.service.Lookup = lookup
	f.do("acme", "GET", "", "", false, http.StatusOK, &list)
	f.do("acme", "POST", "", `{"url":"`+rc.URL+`/other"}`, true, http.StatusCreated, nil)
	f.do("acme", "DELETE", "/"+created.ID, "", true, http.StatusOK, nil)
	f.do("acme", "GET", "/"+created.ID, "", false, http.StatusNotFound, nil)

	// An account of the configuration: listed, read-only.
	f.do("demo", "GET", "", "", false, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || !list.Webhooks[0].ReadOnly || !strings.HasPrefix(list.Webhooks[0].ID, "we_") {
		t.Fatalf("static list %+v, want its webhook, read-only", list)
	}
	f.do("demo", "POST", "", `{"url":"https://hooks.example.com/x"}`, true, http.StatusConflict, nil)
	f.do("demo", "PATCH", "/"+list.Webhooks[0].ID, `{"enabled":false}`, true, http.StatusConflict, nil)
	f.do("nobody", "GET", "", "", false, http.StatusNotFound, nil)
}

// TestHealth follows an endpoint through failing and delivered attempts:
// the first failure marks it, a delivery clears the mark, every attempt
// failing for DisableAfter disables it once (the answer tells the
// dispatcher to notify the account), and a 410 disables at once.
func TestHealth(t *testing.T) {
	f := newFixture(t)
	f.service.DisableAfter = 5 * 24 * time.Hour
	if _, _, err := f.admin.Create(t.Context(), &admin.Input{ID: admin.Optional[string]{Set: true, Value: "acme"}, Name: admin.Optional[string]{Set: true, Value: "Acme"}}); err != nil {
		t.Fatal(err)
	}
	var ep, gone endpoints.View
	f.do("acme", "POST", "", `{"url":"https://hooks.example.com/a"}`, false, http.StatusCreated, &ep)
	f.do("acme", "POST", "", `{"url":"https://hooks.example.com/gone"}`, false, http.StatusCreated, &gone)
	d := &webhook.Delivery{AccountID: "acme", URL: "https://hooks.example.com/a", Event: webhook.EventTask}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	failed := func(at time.Time) webhook.Attempt { return webhook.Attempt{At: at, StatusCode: 503} }
	show := func(id string) endpoints.View {
		var v endpoints.View
		f.do("acme", "GET", "/"+id, "", false, http.StatusOK, &v)
		return v
	}
	if got := f.service.Health(d, failed(t0), t0); got != nil {
		t.Fatalf("first failure: %+v, want nothing", got)
	}
	if v := show(ep.ID); v.FailingSince == nil || !v.FailingSince.Equal(t0) {
		t.Fatalf("after a failure: %+v, want failing since %s", v, t0)
	}
	// A delivery clears the mark; the next failure starts it again.
	f.service.Health(d, webhook.Attempt{At: t0.Add(time.Hour), StatusCode: 200}, t0.Add(time.Hour))
	if v := show(ep.ID); v.FailingSince != nil {
		t.Fatalf("after a delivery: %+v, want no longer failing", v)
	}
	t1 := t0.Add(2 * time.Hour)
	f.service.Health(d, failed(t1), t1)
	if got := f.service.Health(d, failed(t1.Add(4*24*time.Hour)), t1.Add(4*24*time.Hour)); got != nil {
		t.Fatalf("failing for 4 days: %+v, want nothing yet", got)
	}
	end := t1.Add(5 * 24 * time.Hour)
	got := f.service.Health(d, webhook.Attempt{At: end, Error: "connection refused"}, end)
	if got == nil || got.Reason != endpoints.ReasonFailing || got.EndpointID != ep.ID || !got.FailingSince.Equal(t1) {
		t.Fatalf("failing for 5 days: %+v, want the endpoint disabled, failing since %s", got, t1)
	}
	if v := show(ep.ID); v.Enabled || v.DisabledReason != endpoints.ReasonFailing {
		t.Fatalf("after 5 days: %+v, want disabled (failing)", v)
	}
	if again := f.service.Health(d, failed(end), end); again != nil {
		t.Fatalf("an attempt at a disabled endpoint: %+v, want nothing (told once)", again)
	}
	// Enabled again: a fresh start.
	f.do("acme", "PATCH", "/"+ep.ID, `{"enabled":true}`, false, http.StatusOK, nil)
	if v := show(ep.ID); !v.Enabled || v.DisabledReason != "" || v.FailingSince != nil {
		t.Fatalf("enabled again: %+v, want a fresh start", v)
	}

	g := &webhook.Delivery{AccountID: "acme", URL: "https://hooks.example.com/gone", Event: webhook.EventTask}
	got = f.service.Health(g, webhook.Attempt{At: t0, StatusCode: 410}, t0)
	if got == nil || got.Reason != endpoints.ReasonGone || got.EndpointID != gone.ID || got.Undo == nil {
		t.Fatalf("410: %+v, want the endpoint disabled (gone), with an undo", got)
	}
	// Its notice not stored, the disabling is taken back; the next 410
	// disables it again, and tells again.
	got.Undo()
	if v := show(gone.ID); !v.Enabled || v.DisabledReason != "" {
		t.Fatalf("after the undo: %+v, want enabled", v)
	}
	got = f.service.Health(g, webhook.Attempt{At: t0.Add(time.Minute), StatusCode: 410}, t0.Add(time.Minute))
	if got == nil || got.Reason != endpoints.ReasonGone {
		t.Fatalf("410 after the undo: %+v, want the endpoint disabled again", got)
	}
	// An undo comes too late once the endpoint changed since.
	undo := got.Undo
	f.do("acme", "PATCH", "/"+gone.ID, `{"enabled":true}`, false, http.StatusOK, nil)
	f.do("acme", "PATCH", "/"+gone.ID, `{"enabled":false}`, false, http.StatusOK, nil)
	undo()
	if v := show(gone.ID); v.Enabled {
		t.Fatalf("an undo after the account disabled the endpoint itself: %+v, want it left disabled", v)
	}
	// The configuration's webhooks are not followed.
	if got := f.service.Health(&webhook.Delivery{AccountID: "demo", URL: "https://hooks.example.com/demo"}, webhook.Attempt{StatusCode: 410}, t0); got != nil {
		t.Fatalf("a static account's webhook: %+v, want nothing", got)
	}
}

// TestAuthorizationStaysWithItsReceiver: an Authorization the operator set
// on an account's webhook is sent to that receiver alone. The account may
// move its endpoint along the receiver's paths and keep it, but an
// endpoint it points at another origin goes without it: the account could
// otherwise read the credential, which it is never shown, at a receiver
// of its own.
func TestAuthorizationStaysWithItsReceiver(t *testing.T) {
	f := newFixture(t)
	operatorSide := newReceiver(t, http.StatusNoContent)
	elsewhere := newReceiver(t, http.StatusNoContent)
	in := &admin.Input{ID: admin.Optional[string]{Set: true, Value: "acme"}, Name: admin.Optional[string]{Set: true, Value: "Acme"},
		Webhooks: admin.Optional[[]account.WebhookRecord]{Set: true, Value: []account.WebhookRecord{{URL: operatorSide.URL + "/hooks", Authorization: "Bearer operator-token"}}}}
	if _, _, err := f.admin.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	var list struct{ Webhooks []endpoints.View }
	f.do("acme", "GET", "", "", false, http.StatusOK, &list)
	if len(list.Webhooks) != 1 {
		t.Fatalf("list %+v, want the operator's webhook", list)
	}
	id := list.Webhooks[0].ID
	test := func(rc *receiver) string {
		t.Helper()
		var res endpoints.TestResult
		f.do("acme", "POST", "/"+id+"/test", "", false, http.StatusOK, &res)
		if !res.Delivered {
			t.Fatalf("test: %+v, want delivered", res)
		}
		return rc.last(t).header.Get("Authorization")
	}
	if got := test(operatorSide); got != "Bearer operator-token" {
		t.Fatalf("Authorization at the operator's receiver = %q", got)
	}
	f.do("acme", "PATCH", "/"+id, `{"url":"`+operatorSide.URL+`/other-path"}`, false, http.StatusOK, nil)
	if got := test(operatorSide); got != "Bearer operator-token" {
		t.Errorf("Authorization after a move along the receiver's paths = %q, want it kept", got)
	}
	f.do("acme", "PATCH", "/"+id, `{"url":"`+elsewhere.URL+`/steal"}`, false, http.StatusOK, nil)
	if got := test(elsewhere); got != "" {
		t.Errorf("Authorization sent to the account's own receiver = %q, want none", got)
	}
	// Back at the operator's receiver, it stays gone: the operator sets it again.
	f.do("acme", "PATCH", "/"+id, `{"url":"`+operatorSide.URL+`/hooks"}`, false, http.StatusOK, nil)
	if got := test(operatorSide); got != "" {
		t.Errorf("Authorization after the endpoint came back = %q, want none until the operator sets it", got)
	}

	// Bounds: a URL past MaxURL, a task type given twice.
	long := `{"url":"` + operatorSide.URL + "/" + strings.Repeat("a", endpoints.MaxURL) + `"}`
	f.do("acme", "POST", "", long, false, http.StatusBadRequest, nil)
	f.do("acme", "POST", "", `{"url":"`+operatorSide.URL+`/x","task_types":["`+pan+`","`+pan+`"]}`, false, http.StatusBadRequest, nil)
}
