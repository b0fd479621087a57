package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/console"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// patience bounds every wait for a signal.
const patience = 10 * time.Second

const pan = "verify/pan"

// site is a console on an engine on the memory store, with a static
// account "demo" and a source that verifies everything, and a browser
// (a client with a cookie jar) that does not follow redirects.
type site struct {
	t      testing.TB
	engine *engine.Engine
	srv    *httptest.Server
	client *http.Client
	demo   *account.Account
}

func newSite(t testing.TB, base string) *site {
	t.Helper()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"id_found"}`)
	}))
	t.Cleanup(src.Close)
	// demo's webhook receiver refuses every delivery: each fails at once.
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(recv.Close)
	core, err := engine.OpenCore(context.Background(), storage.Config{Type: "memory"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	limiter, err := engine.NewLimiter(core, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	demo := &account.Account{ID: "demo", Keys: []account.Key{{Hash: account.HashKey("k")}},
		Webhooks: []account.Webhook{{URL: recv.URL + "/hooks"}}}
	e, err := engine.New(core, limiter, engine.Config{
		Accounts:     []*account.Account{demo},
		DefaultLimit: ratelimit.DefaultLimit,
		TaskTypes:    []*task.Type{{Action: "verify", Type: "pan", Source: src.URL, Concurrency: 2}},
		SyncTimeout:  patience,
		Retention:    time.Hour,
		MaxBody:      1 << 20,
		Webhooks: engine.WebhooksConfig{Policy: webhook.DefaultPolicy(),
			Egress: egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() {
		e.Stop()
		_ = limiter.Close()
		_ = core.Close()
	})
	c, err := console.New(console.Config{Admin: e.Admin, Base: base, TaskTypes: []string{pan}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(base+"/", c)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &site{t: t, engine: e, srv: srv, client: client, demo: demo}
}

// get returns the page at path, which must answer want.
func (s *site) get(path string, want int) string {
	s.t.Helper()
	resp, err := s.client.Get(s.srv.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	return string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// post submits a form of the page at from to action, with the page's
// form token, and returns the answer.
func (s *site) post(from, action string, form url.Values, want int) (string, *http.Response) {
	s.t.Helper()
	page := s.get(from, http.StatusOK)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		s.t.Fatalf("no form token on %s", from)
	}
	form.Set("csrf", m[1])
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("POST %s: %d, want %d: %s", action, resp.StatusCode, want, b)
	}
	return string(b), resp
}

func TestAccountLifeCycle(t *testing.T) {
	s := newSite(t, "/console")
	if page := s.get("/console/accounts", http.StatusOK); !strings.Contains(page, `href="/console/accounts/demo"`) {
		t.Fatalf("the static account is not listed:\n%s", page)
	}
	page, _ := s.post("/console/new-account", "/console/accounts", url.Values{
		"id": {"acme"}, "name": {"Acme Corp"}, "rate_limit": {"50/s"}, "allow": {"203.0.113.0/24\n198.51.100.7/32"}, "task_types": {pan},
	}, http.StatusCreated)
	key := regexp.MustCompile(`<code id="secret">(tg_[^<]+)</code>`).FindStringSubmatch(page)
	if key == nil {
		t.Fatalf("no key shown:\n%s", page)
	}
	if _, err := s.engine.Accounts.Authenticate("acme", key[1]); err != nil {
		t.Fatalf("the key shown does not authenticate acme")
	}
	page = s.get("/console/accounts/acme", http.StatusOK)
	for _, want := range []string{"Acme Corp", "50/s", "203.0.113.0/24\n198.51.100.7/32", `value="` + pan + `" checked`} {
		if !strings.Contains(page, want) {
			t.Errorf("the account page lacks %q", want)
		}
	}

	// Edit the settings; a bad rate is the API's error, not a 500.
	_, resp := s.post("/console/accounts/acme", "/console/accounts/acme", url.Values{"name": {"Acme"}, "rate_limit": {"5/s"}, "burst": {"9"}}, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/console/accounts/acme?done=saved" {
		t.Errorf("redirected to %q", loc)
	}
	if page = s.get("/console/accounts/acme?done=saved", http.StatusOK); !strings.Contains(page, "Saved.") || !strings.Contains(page, `value="5/s"`) || !strings.Contains(page, `value="9"`) {
		t.Errorf("after the edit:\n%s", page)
	}
	if page, _ = s.post("/console/accounts/acme", "/console/accounts/acme", url.Values{"name": {"Acme"}, "rate_limit": {"lots"}}, http.StatusBadRequest); !strings.Contains(page, "BAD_REQUEST") {
		t.Errorf("a bad rate:\n%s", page)
	}

	// Rotate: a new key, the old one expiring.
	page, _ = s.post("/console/accounts/acme", "/console/accounts/acme/keys", url.Values{"expire_others_in": {"1h"}}, http.StatusCreated)
	newKey := regexp.MustCompile(`<code id="secret">(tg_[^<]+)</code>`).FindStringSubmatch(page)
	if newKey == nil || newKey[1] == key[1] {
		t.Fatalf("no new key:\n%s", page)
	}
	rec, _, err := s.engine.Admin.Service.Account(t.Context(), "acme")
	if err != nil || len(rec.Keys) != 2 || rec.Keys[0].ExpiresAt == nil {
		t.Fatalf("keys after the rotation: %+v, %v", rec, err)
	}
	// Revoke the old one.
	s.post("/console/accounts/acme", "/console/accounts/acme/keys/"+rec.Keys[0].ID+"/revoke", url.Values{}, http.StatusSeeOther)
	if _, err := s.engine.Accounts.Authenticate("acme", key[1]); err == nil {
		t.Error("the revoked key still authenticates")
	}

	// Disable, then enable.
	s.post("/console/accounts/acme", "/console/accounts/acme/disable", url.Values{}, http.StatusSeeOther)
	if _, err := s.engine.Accounts.Authenticate("acme", newKey[1]); err == nil {
		t.Error("a disabled account authenticates")
	}
	if page = s.get("/console/accounts/acme?done=disabled", http.StatusOK); !strings.Contains(page, "Enable the account") {
		t.Error("the page of a disabled account offers no enabling")
	}
	s.post("/console/accounts/acme", "/console/accounts/acme/enable", url.Values{}, http.StatusSeeOther)
	if _, err := s.engine.Accounts.Authenticate("acme", newKey[1]); err != nil {
		t.Error("the enabled account does not authenticate")
	}

	// Webhook endpoints: created with a secret shown once, rotated,
	// deleted. (The address is public and never dialed.)
	page, _ = s.post("/console/accounts/acme", "/console/accounts/acme/webhooks", url.Values{"url": {"https://93.184.215.14/hooks"}, "description": {"main"}}, http.StatusCreated)
	secret := regexp.MustCompile(`<code id="secret">(whsec_[^<]+)</code>`).FindStringSubmatch(page)
	if secret == nil {
		t.Fatalf("no secret shown:\n%s", page)
	}
	page = s.get("/console/accounts/acme", http.StatusOK)
	wid := regexp.MustCompile(`/console/accounts/acme/webhooks/(we_[^/]+)/rotate`).FindStringSubmatch(page)
	if wid == nil || !strings.Contains(page, "https://93.184.215.14/hooks") {
		t.Fatalf("the endpoint is not listed:\n%s", page)
	}
	page, _ = s.post("/console/accounts/acme", "/console/accounts/acme/webhooks/"+wid[1]+"/rotate", url.Values{}, http.StatusOK)
	if rotated := regexp.MustCompile(`<code id="secret">(whsec_[^<]+)</code>`).FindStringSubmatch(page); rotated == nil || rotated[1] == secret[1] || !strings.Contains(page, "until") {
		t.Fatalf("rotation:\n%s", page)
	}
	s.post("/console/accounts/acme", "/console/accounts/acme/webhooks/"+wid[1]+"/disable", url.Values{}, http.StatusSeeOther)
	if page = s.get("/console/accounts/acme?done=webhook", http.StatusOK); !strings.Contains(page, "/webhooks/"+wid[1]+"/enable") {
		t.Error("the disabled endpoint offers no enabling")
	}
	s.post("/console/accounts/acme", "/console/accounts/acme/webhooks/"+wid[1]+"/enable", url.Values{}, http.StatusSeeOther)
	s.post("/console/accounts/acme", "/console/accounts/acme/webhooks", url.Values{"url": {"http://10.0.0.1/hooks"}}, http.StatusBadRequest)
	s.post("/console/accounts/acme", "/console/accounts/acme/webhooks/"+wid[1]+"/delete", url.Values{}, http.StatusSeeOther)
	if page = s.get("/console/accounts/acme", http.StatusOK); strings.Contains(page, "93.184.215.14") {
		t.Error("the deleted endpoint is listed")
	}

	// A static account cannot be changed here.
	if page = s.get("/console/accounts/demo", http.StatusOK); strings.Contains(page, `id="settings"`) {
		t.Error("the static account has a settings form")
	}
	s.post("/console/new-account", "/console/accounts/demo/disable", url.Values{}, http.StatusConflict)
	s.get("/console/accounts/nobody", http.StatusNotFound)
}

func TestFormsNeedTheTokenAndTheSameSite(t *testing.T) {
	s := newSite(t, "")
	s.get("/accounts", http.StatusOK) // the cookie
	token := csrfField.FindStringSubmatch(s.get("/new-account", http.StatusOK))[1]
	try := func(form url.Values, header map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/accounts", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	form := url.Values{"id": {"x"}, "name": {"X"}}
	if got := try(form, same); got != http.StatusForbidden {
		t.Errorf("without the token: %d, want 403", got)
	}
	other := "A"
	if token[0] == 'A' {
		other = "B"
	}
	form.Set("csrf", other+token[1:])
	if got := try(form, same); got != http.StatusForbidden {
		t.Errorf("with another token: %d, want 403", got)
	}
	form.Set("csrf", token)
	if got := try(form, nil); got != http.StatusForbidden {
		t.Errorf("with the token, but neither Sec-Fetch-Site nor Origin: %d, want 403", got)
	}
	if got := try(form, map[string]string{"Sec-Fetch-Site": "cross-site"}); got != http.StatusForbidden {
		t.Errorf("cross-site: %d, want 403", got)
	}
	if got := try(form, map[string]string{"Sec-Fetch-Site": "same-site"}); got != http.StatusForbidden {
		t.Errorf("same site, another origin: %d, want 403", got)
	}
	if got := try(form, map[string]string{"Origin": "https://evil.example"}); got != http.StatusForbidden {
		t.Errorf("from another origin: %d, want 403", got)
	}
	if got := try(form, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}); got != http.StatusForbidden {
		t.Errorf("same-origin said, another Origin: %d, want 403", got)
	}
	if _, _, err := s.engine.Admin.Service.Account(t.Context(), "x"); err == nil {
		t.Fatal("a refused form created the account")
	}
	if got := try(form, map[string]string{"Origin": s.srv.URL}); got != http.StatusCreated {
		t.Errorf("from the console: %d, want 201", got)
	}
}

// createAccounts creates n accounts, acct-0000 "Customer 0" and on.
func (s *site) createAccounts(n int) {
	s.t.Helper()
	for i := range n {
		in := &admin.Input{ID: admin.Optional[string]{Set: true, Value: fmt.Sprintf("acct-%04d", i)}, Name: admin.Optional[string]{Set: true, Value: fmt.Sprintf("Customer %d", i)}}
		if _, _, err := s.engine.Admin.Service.Create(context.Background(), in); err != nil {
			s.t.Fatal(err)
		}
	}
}

func TestAccountsPaginateAndSearch(t *testing.T) {
	s := newSite(t, "")
	s.createAccounts(120)
	rows := regexp.MustCompile(`<td><a href="/accounts/[^"]+">`)
	page := s.get("/accounts", http.StatusOK)
	if n := len(rows.FindAllString(page, -1)); n != console.PageSize || !strings.Contains(page, "Page 1 of 3") || !strings.Contains(page, `rel="next" href="/accounts?page=2"`) {
		t.Fatalf("page 1: %d rows", n)
	}
	page = s.get("/accounts?page=3", http.StatusOK)
	if n := len(rows.FindAllString(page, -1)); n != 121-2*console.PageSize || strings.Contains(page, `rel="next"`) {
		t.Fatalf("page 3: %d rows", n)
	}
	page = s.get("/accounts?q=customer+11", http.StatusOK)
	if n := len(rows.FindAllString(page, -1)); n != 11 { // 11, 110…119
		t.Fatalf("search: %d rows, want 11", n)
	}
	s.get("/accounts?page=99", http.StatusOK) // the last page
}

// runTask runs an async task of demo to its end (its webhook then goes
// out and fails) and returns its request id.
func (s *site) runTask(taskID string) string {
	s.t.Helper()
	call := func(method, target, body string) []byte {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.engine.API.Serve(w, r, s.demo)
		return w.Body.Bytes()
	}
	var created struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(call(http.MethodPost, "/v3/tasks/async/verify/pan", `{"task_id":"`+taskID+`","group_id":"g1","data":{}}`), &created); err != nil || created.RequestID == "" {
		s.t.Fatalf("create: %v", err)
	}
	var done []struct {
		Status string `json:"status"`
	}
	answer := call(http.MethodGet, "/v3/tasks?wait=10&request_id="+created.RequestID, "")
	if err := json.Unmarshal(answer, &done); err != nil || len(done) != 1 || done[0].Status != "completed" {
		s.t.Fatalf("task: %s", answer)
	}
	return created.RequestID
}

// waitPage loads path until it contains want, within patience.
func (s *site) waitPage(path, want string) string {
	s.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(patience)
	for {
		page := s.get(path, http.StatusOK)
		if strings.Contains(page, want) {
			return page
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s has no %q within %s:\n%s", path, want, patience, page)
		}
		<-tick.C
	}
}

func TestTasksDeliveriesSourcesAndNodes(t *testing.T) {
	s := newSite(t, "")
	requestID := s.runTask("t1")
	// The task's stable link, by its request id alone, with its failed
	// delivery.
	page := s.waitPage("/tasks/"+requestID, `<span class="tag failed">failed</span>`)
	for _, want := range []string{`<span class="tag completed">completed</span>`, "&#34;task_id&#34;: &#34;t1&#34;", "<td>400</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the task page lacks %q", want)
		}
	}
	s.get("/accounts/demo/tasks/"+requestID, http.StatusOK)
	s.get("/tasks/nothing", http.StatusNotFound)
	for _, by := range []string{"task_id=t1", "group_id=g1"} {
		kind, id, _ := strings.Cut(by, "=")
		if page = s.get("/tasks?by="+kind+"&q="+id, http.StatusOK); !strings.Contains(page, `href="/accounts/demo/tasks/`+requestID+`"`) {
			t.Errorf("search by %s does not link the task", kind)
		}
	}
	if page = s.get("/sources", http.StatusOK); !strings.Contains(page, pan) || !strings.Contains(page, `<span class="tag up">up</span>`) {
		t.Errorf("sources:\n%s", page)
	}
	s.waitPage("/nodes", "this node")
	s.get("/nowhere", http.StatusNotFound)
	s.get("/static/", http.StatusNotFound)
	s.get("/static/console.css", http.StatusOK)
}

// TestRetryOneOrMany: a row's own button retries its delivery alone,
// whatever rows are ticked; the button under the list retries the ticked
// ones.
func TestRetryOneOrMany(t *testing.T) {
	s := newSite(t, "")
	first, second := s.runTask("t1"), s.runTask("t2")
	for _, rid := range []string{first, second} {
		s.waitPage("/tasks/"+rid, `<span class="tag failed">failed</span>`)
	}
	ids := regexp.MustCompile(`name="delivery" value="demo/(msg_[^"]+)"`).FindAllStringSubmatch(s.get("/deliveries", http.StatusOK), -1)
	if len(ids) != 2 {
		t.Fatalf("%d failed deliveries listed, want 2", len(ids))
	}
	pending := func() int {
		n := 0
		for _, id := range ids {
			d, err := s.engine.Core.Store.GetDelivery(t.Context(), "demo", id[1])
			if err != nil {
				t.Fatal(err)
			}
			if d.Status == webhook.Pending || len(d.Attempts) > 1 {
				n++
			}
		}
		return n
	}
	// Both ticked, the first row's button pressed: the first alone.
	s.post("/deliveries", "/deliveries/retry", url.Values{"delivery": {"demo/" + ids[0][1], "demo/" + ids[1][1]}, "one": {"demo/" + ids[0][1]}}, http.StatusSeeOther)
	if n := pending(); n != 1 {
		t.Fatalf("%d deliveries retried by one row's button, want 1", n)
	}
	s.post("/deliveries", "/deliveries/retry", url.Values{"delivery": {"demo/" + ids[1][1]}}, http.StatusSeeOther)
	if n := pending(); n != 2 {
		t.Fatalf("%d deliveries retried, want 2", n)
	}
	page, _ := s.post("/deliveries", "/deliveries/retry", url.Values{"delivery": {"demo/msg_nothing"}}, http.StatusConflict)
	if !strings.Contains(page, "not retried: demo/msg_nothing") {
		t.Errorf("an unknown delivery:\n%s", page)
	}
	s.post("/deliveries", "/deliveries/retry", url.Values{}, http.StatusBadRequest)
}

// TestPagesEscapeWhatAccountsWrote: names, descriptions, ids and search
// terms that an account or an operator typed come out as text, never as
// markup.
func TestPagesEscapeWhatAccountsWrote(t *testing.T) {
	s := newSite(t, "")
	const hostile = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>`
	s.post("/new-account", "/accounts", url.Values{"id": {"evil"}, "name": {hostile}}, http.StatusCreated)
	s.post("/accounts/evil", "/accounts/evil/webhooks", url.Values{"url": {"https://93.184.215.14/" + url.PathEscape(hostile)}, "description": {hostile}}, http.StatusCreated)
	for _, path := range []string{"/accounts", "/accounts/evil", "/accounts?q=" + url.QueryEscape(hostile), "/tasks?by=group_id&q=" + url.QueryEscape(hostile) + "&account=evil", "/deliveries?account=evil"} {
		page := s.get(path, http.StatusOK)
		for _, raw := range []string{"<script>alert", "<img src=x", `"'>`} {
			if strings.Contains(page, raw) {
				t.Errorf("%s carries %q unescaped", path, raw)
			}
		}
	}
	// An error page quotes what it was given, escaped too.
	page := s.get("/tasks/"+url.PathEscape(hostile), http.StatusNotFound)
	if strings.Contains(page, "<script>alert") {
		t.Error("the error page carries the request id unescaped")
	}
}

// TestFailedDeliveriesPaginate: 50 a page, newest first, with links both
// ways.
func TestFailedDeliveriesPaginate(t *testing.T) {
	s := newSite(t, "")
	var last string
	for i := range console.PageSize + 10 {
		last = s.runTask(fmt.Sprintf("t%d", i))
	}
	rows := regexp.MustCompile(`name="delivery" value="demo/msg_`)
	// Every delivery failed: the second page holds the last 10.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(patience)
	for len(rows.FindAllString(s.get("/deliveries?page=2", http.StatusOK), -1)) != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries did not all fail within %s", patience)
		}
		<-tick.C
	}
	page := s.get("/deliveries", http.StatusOK)
	if n := len(rows.FindAllString(page, -1)); n != console.PageSize || !strings.Contains(page, last) || strings.Contains(page, `rel="prev"`) {
		t.Fatalf("page 1: %d rows, newest first", n)
	}
	page = s.get("/deliveries?page=2", http.StatusOK)
	if n := len(rows.FindAllString(page, -1)); n != 10 || strings.Contains(page, `rel="next"`) || !strings.Contains(page, `rel="prev" href="/deliveries?page=1"`) {
		t.Fatalf("page 2: %d rows", n)
	}
	if n := len(rows.FindAllString(s.get("/deliveries?page=2&account=demo", http.StatusOK), -1)); n != 10 {
		t.Fatalf("page 2 of demo: %d rows", n)
	}
}
