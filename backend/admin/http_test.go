package admin

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/internal/clocktest"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/usage"
)

const pan = "verify_with_source/ind_pan"

type fixture struct {
	t        *testing.T
	handler  *Handler
	registry *account.Registry
	store    *memory.Store
	clock    *clocktest.Clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	static := &account.Account{ID: "demo", Static: true, Limit: ratelimit.DefaultLimit, Keys: []account.Key{{Hash: account.HashKey("demo-key")}}}
	dynamic := account.NewDynamic()
	clock := clocktest.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	registry, err := account.NewRegistry(account.RegistryConfig{Static: []*account.Account{static}, Dynamic: dynamic, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	return &fixture{
		t: t,
		handler: &Handler{Service: &Service{
			Accounts:     store,
			UsageStore:   store,
			Dynamic:      dynamic,
			Static:       registry,
			DefaultLimit: ratelimit.DefaultLimit,
			TaskTypes:    map[string]bool{pan: true},
			Clock:        clock.Now,
		}},
		registry: registry,
		store:    store,
		clock:    clock,
	}
}

// do sends a request and decodes the JSON answer into out (when not nil).
func (f *fixture) do(method, path, body string, wantStatus int, out any) map[string]any {
	f.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	}
	// As every client must: writes say they are JSON, even without a body.
	if body != "" || method == "POST" || method == "PATCH" || method == "PUT" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	if w.Code != wantStatus {
		f.t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, w.Code, wantStatus, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		f.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	var generic any
	if err := json.Unmarshal(w.Body.Bytes(), &generic); err != nil {
		f.t.Fatalf("%s %s: answer is not JSON: %s", method, path, w.Body)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			f.t.Fatal(err)
		}
	}
	object, _ := generic.(map[string]any)
	return object
}

type created struct {
	AccountView
	APIKey string `json:"api_key"`
}

func (f *fixture) authenticates(id, key string) bool {
	_, err := f.registry.Authenticate(id, key)
	if err != nil && !errors.Is(err, account.ErrInvalidCredentials) {
		f.t.Fatal(err)
	}
	return err == nil
}

func TestCreateShowList(t *testing.T) {
	f := newFixture(t)
	var c created
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"Acme Ltd","rate_limit":"100/s","burst":50,
		"allow":["203.0.113.0/24","::ffff:192.0.2.1"],"task_types":["`+pan+`"],
		"webhooks":[{"url":"https://acme.example/hooks","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","authorization":"Bearer x"}],
		"failure_webhook":"https://acme.example/failures"}`, http.StatusCreated, &c)
	if c.ID != "acme" || c.Name != "Acme Ltd" || c.Static || c.RateLimit != "100/s" || c.Burst != 50 || c.DefaultRateLimit {
		t.Fatalf("created %+v", c.AccountView)
	}
	if !account.IsGeneratedKey(c.APIKey) || len(c.Keys) != 1 || c.Keys[0].Prefix != account.KeyPrefix(c.APIKey) {
		t.Fatalf("key %q, keys %+v", c.APIKey, c.Keys)
	}
	if w := c.Webhooks; len(w) != 1 || !w[0].HasSecret || !w[0].HasAuthorization {
		t.Fatalf("webhooks %+v", w)
	}
	if !f.authenticates("acme", c.APIKey) {
		t.Fatal("the new key does not authenticate")
	}

	// The key, its hash and the webhook's secrets are never shown again.
	shown := f.do("GET", "/taskgate/accounts/acme", "", http.StatusOK, nil)
	raw, _ := json.Marshal(shown)
	sum := account.HashKey(c.APIKey)
	for _, secret := range []string{c.APIKey, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "Bearer x", hex.EncodeToString(sum[:8])} {
		if secret != "" && strings.Contains(string(raw), secret) {
			t.Fatalf("GET shows %q: %s", secret, raw)
		}
	}
	if strings.Contains(string(raw), "sha256") {
		t.Fatalf("GET shows a key hash: %s", raw)
	}

	// A generated id; the default rate.
	var g created
	f.do("POST", "/taskgate/accounts", `{"name":"Other"}`, http.StatusCreated, &g)
	if !strings.HasPrefix(g.ID, "acct_") || g.RateLimit != "30/s" || !g.DefaultRateLimit {
		t.Fatalf("generated %+v", g.AccountView)
	}

	var list struct{ Accounts []AccountView }
	f.do("GET", "/taskgate/accounts", "", http.StatusOK, &list)
	var ids []string
	for _, a := range list.Accounts {
		ids = append(ids, a.ID)
	}
	if want := []string{"acct_", "acme", "demo"}; len(ids) != 3 || !strings.HasPrefix(ids[0], want[0]) || ids[1] != want[1] || ids[2] != want[2] {
		t.Fatalf("list ids %v, want [acct_… acme demo]", ids)
	}
	if demo := list.Accounts[2]; !demo.Static || len(demo.Keys) != 1 || !strings.HasPrefix(demo.Keys[0].ID, "sha256_") {
		t.Fatalf("static account shown as %+v", demo)
	}
}

func TestCreateRefuses(t *testing.T) {
	f := newFixture(t)
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A"}`, http.StatusCreated, nil)
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"id":"acme","name":"again"}`, 409, "ACCOUNT_EXISTS"},
		{`{"id":"demo","name":"static id"}`, 409, "ACCOUNT_EXISTS"},
		{`{"id":"bad id","name":"x"}`, 400, "BAD_REQUEST"},
		{`{}`, 400, "BAD_REQUEST"},
		{`{"name":"x","allow":["10.0.0.0/33"]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","rate_limit":"0/s"}`, 400, "BAD_REQUEST"},
		{`{"name":"x","burst":5}`, 400, "BAD_REQUEST"},
		{`{"name":"x","task_types":["a/b"]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","webhooks":[{"url":"http://h/x","secret":"nope"}]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","webhooks":[{"url":"http://h/x"},{"url":"http://h/x"}]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","webhooks":[{"url":"http://127.0.0.1:2019/stop"}]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","webhooks":[{"url":"http://[::ffff:169.254.169.254]/"}]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","failure_webhook":"http://localhost/f"}`, 400, "BAD_REQUEST"},
		{`{"name":"x","unknown":1}`, 400, "BAD_REQUEST"},
		{`{"NAME":"x"}`, 400, "BAD_REQUEST"},
		{`{"name":"x","Rate_Limit":"5/s"}`, 400, "BAD_REQUEST"},
		{`{"name":"x","webhooks":[{"URL":"http://h/x"}]}`, 400, "BAD_REQUEST"},
		{`{"name":"x","disabled":true}`, 400, "BAD_REQUEST"},
		{`{"name":"x\u0000"}`, 400, "BAD_REQUEST"},
		{`{"name":`, 400, "BAD_REQUEST"},
		{`[]`, 400, "BAD_REQUEST"},
		{`{"name":"x"}{}`, 400, "BAD_REQUEST"},
	} {
		got := f.do("POST", "/taskgate/accounts", tc.body, tc.status, nil)
		if got["error"] != tc.code || got["message"] == "" {
			t.Errorf("POST %s: %v, want %s with a message", tc.body, got, tc.code)
		}
	}
	// A key that is a field's name only when case is ignored is unknown,
	// whatever the level, and named as such.
	for _, tc := range []struct{ method, path, body, key string }{
		{"POST", "/taskgate/accounts", `{"Name":"x"}`, "Name"},
		{"POST", "/taskgate/accounts", `{"name":"x","webhooks":[{"url":"http://h/x","Secret":"s"}]}`, "Secret"},
		{"PATCH", "/taskgate/accounts/acme", `{"DISABLED":true}`, "DISABLED"},
		{"PATCH", "/taskgate/accounts/acme", `{"name":"y","naMe":"z"}`, "naMe"},
		{"POST", "/taskgate/accounts/acme/keys", `{"Expire_Others_In":"0s"}`, "Expire_Others_In"},
	} {
		got := f.do(tc.method, tc.path, tc.body, 400, nil)
		if msg, _ := got["message"].(string); got["error"] != "BAD_REQUEST" || !strings.Contains(msg, `unknown field "`+tc.key+`"`) {
			t.Errorf("%s %s %s: %v, want BAD_REQUEST naming %q as an unknown field", tc.method, tc.path, tc.body, got, tc.key)
		}
	}
	if a := f.do("GET", "/taskgate/accounts/acme", "", 200, nil); a["name"] != "A" || a["disabled"] != false {
		t.Errorf("refused changes changed the account: %v", a)
	}
	// Not JSON.
	r := httptest.NewRequest("POST", "/taskgate/accounts", strings.NewReader("name=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("form body: %d, want 415", w.Code)
	}
	// Too large.
	big := `{"name":"` + strings.Repeat("x", MaxBody) + `"}`
	f.do("POST", "/taskgate/accounts", big, http.StatusRequestEntityTooLarge, nil)
}

func TestUpdate(t *testing.T) {
	f := newFixture(t)
	var c created
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A","rate_limit":"5/s","allow":["10.0.0.0/8"]}`, http.StatusCreated, &c)
	var v AccountView
	f.do("PATCH", "/taskgate/accounts/acme", `{"name":"B","allow":["192.0.2.0/24"]}`, http.StatusOK, &v)
	if v.Name != "B" || len(v.Allow) != 1 || v.Allow[0] != "192.0.2.0/24" || v.RateLimit != "5/s" {
		t.Fatalf("after PATCH: %+v", v)
	}
	a, _ := f.registry.Lookup("acme")
	if len(a.Allow) != 1 || a.Allow[0].String() != "192.0.2.0/24" || a.Limit.Count != 5 {
		t.Fatalf("the registry did not follow: %+v", a)
	}
	// Back to the default rate and any address.
	f.do("PATCH", "/taskgate/accounts/acme", `{"rate_limit":null,"allow":null}`, http.StatusOK, &v)
	if !v.DefaultRateLimit || v.RateLimit != "30/s" || len(v.Allow) != 0 {
		t.Fatalf("after resets: %+v", v)
	}
	if a, _ := f.registry.Lookup("acme"); a.Limit != (ratelimit.Limit{}) || len(a.Allow) != 0 {
		t.Fatalf("the registry did not follow the resets: %+v", a)
	}
	// A bad change changes nothing.
	f.do("PATCH", "/taskgate/accounts/acme", `{"name":"C","allow":["nope"]}`, http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/accounts/acme", "", http.StatusOK, &v)
	if v.Name != "B" {
		t.Fatalf("a refused PATCH changed the name to %q", v.Name)
	}
	f.do("PATCH", "/taskgate/accounts/acme", `{"id":"other"}`, http.StatusBadRequest, nil)
	f.do("PATCH", "/taskgate/accounts/nobody", `{"name":"x"}`, http.StatusNotFound, nil)
	f.do("PATCH", "/taskgate/accounts/demo", `{"name":"x"}`, http.StatusConflict, nil)

	// Disable and enable again.
	f.do("DELETE", "/taskgate/accounts/acme", "", http.StatusOK, &v)
	if !v.Disabled || f.authenticates("acme", c.APIKey) {
		t.Fatal("a disabled account still authenticates")
	}
	f.do("GET", "/taskgate/accounts/acme", "", http.StatusOK, nil) // still readable
	f.do("PATCH", "/taskgate/accounts/acme", `{"disabled":false}`, http.StatusOK, &v)
	if v.Disabled || !f.authenticates("acme", c.APIKey) {
		t.Fatal("an enabled account does not authenticate")
	}
	f.do("DELETE", "/taskgate/accounts/demo", "", http.StatusConflict, nil)
}

func TestKeys(t *testing.T) {
	f := newFixture(t)
	var c created
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A"}`, http.StatusCreated, &c)
	first := c.APIKey

	// A second key, both live.
	var k struct {
		KeyID          string     `json:"key_id"`
		APIKey         string     `json:"api_key"`
		OthersExpireAt *time.Time `json:"others_expire_at"`
	}
	f.do("POST", "/taskgate/accounts/acme/keys", "", http.StatusCreated, &k)
	second := k.APIKey
	if k.OthersExpireAt != nil || !f.authenticates("acme", first) || !f.authenticates("acme", second) {
		t.Fatal("after a plain new key both keys should work")
	}

	// A third, the others expiring in an hour.
	f.do("POST", "/taskgate/accounts/acme/keys", `{"expire_others_in":"1h"}`, http.StatusCreated, &k)
	third := k.APIKey
	if k.OthersExpireAt == nil || !k.OthersExpireAt.Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("others_expire_at %v, want now+1h", k.OthersExpireAt)
	}
	f.clock.Advance(59 * time.Minute)
	if !f.authenticates("acme", first) || !f.authenticates("acme", third) {
		t.Fatal("keys should all work during the grace period")
	}
	f.clock.Advance(time.Minute)
	if f.authenticates("acme", first) || f.authenticates("acme", second) || !f.authenticates("acme", third) {
		t.Fatal("after the grace period only the newest key should work")
	}
	var v AccountView
	f.do("GET", "/taskgate/accounts/acme", "", http.StatusOK, &v)
	if len(v.Keys) != 3 || !v.Keys[0].Expired || !v.Keys[1].Expired || v.Keys[2].Expired {
		t.Fatalf("keys %+v: want two expired, one live", v.Keys)
	}

	// Revoking: at once.
	f.do("DELETE", "/taskgate/accounts/acme/keys/"+k.KeyID, "", http.StatusOK, &v)
	if f.authenticates("acme", third) {
		t.Fatal("a revoked key still works")
	}
	f.do("DELETE", "/taskgate/accounts/acme/keys/"+k.KeyID, "", http.StatusNotFound, nil)

	// A new key drops the expired ones; at most MaxKeys.
	for range MaxKeys {
		f.do("POST", "/taskgate/accounts/acme/keys", `{}`, http.StatusCreated, nil)
	}
	f.do("GET", "/taskgate/accounts/acme", "", http.StatusOK, &v)
	if len(v.Keys) != MaxKeys {
		t.Fatalf("%d keys, want %d (expired ones dropped)", len(v.Keys), MaxKeys)
	}
	if got := f.do("POST", "/taskgate/accounts/acme/keys", `{}`, http.StatusConflict, nil); got["error"] != "TOO_MANY_KEYS" {
		t.Fatalf("key %d: %v", MaxKeys+1, got)
	}
	f.do("POST", "/taskgate/accounts/acme/keys", `{"expire_others_in":"soon"}`, http.StatusBadRequest, nil)
	f.do("POST", "/taskgate/accounts/acme/keys", `{"expire_others_in":"-1h"}`, http.StatusBadRequest, nil)
	f.do("POST", "/taskgate/accounts/demo/keys", `{}`, http.StatusConflict, nil)
	f.do("POST", "/taskgate/accounts/nobody/keys", `{}`, http.StatusNotFound, nil)
}

func TestUsage(t *testing.T) {
	f := newFixture(t)
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A"}`, http.StatusCreated, nil)
	meter := usage.NewMeter(usage.MeterConfig{Store: f.store, Clock: f.clock.Now})
	meter.Request("acme", pan, "")
	meter.TaskCreated("acme", pan)
	meter.Request("acme", "", "TOO_MANY_REQUESTS")
	f.clock.Advance(24 * time.Hour)
	meter.Request("acme", pan, "")
	meter.Request("demo", pan, "")
	if err := meter.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var u struct {
		From, To string
		Usage    []struct {
			Day      string `json:"day"`
			TaskType string `json:"task_type"`
			usage.Counts
		}
		Total usage.Counts
	}
	f.do("GET", "/taskgate/accounts/acme/usage", "", http.StatusOK, &u)
	if u.To != "2026-11-26" || u.From != "2026-10-28" || len(u.Usage) != 3 || u.Total.Requests != 3 || u.Total.Created != 1 || u.Total.Rejected["too_many_requests"] != 1 {
		t.Fatalf("usage %+v", u)
	}
	if r := u.Usage[0]; r.Day != "2026-11-25" || r.TaskType != "" || r.Rejected["too_many_requests"] != 1 {
		t.Fatalf("first row %+v", r)
	}
	f.do("GET", "/taskgate/accounts/acme/usage?from=2026-11-26&to=2026-11-26", "", http.StatusOK, &u)
	if len(u.Usage) != 1 || u.Total.Requests != 1 {
		t.Fatalf("one day: %+v", u)
	}
	f.do("GET", "/taskgate/accounts/demo/usage", "", http.StatusOK, &u)
	if u.Total.Requests != 1 {
		t.Fatalf("static account usage: %+v", u)
	}
	f.do("GET", "/taskgate/accounts/acme/usage?from=yesterday", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/accounts/acme/usage?from=2026-11-26&to=2026-11-25", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/accounts/acme/usage?from=2020-01-01&to=2026-11-25", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/accounts/nobody/usage", "", http.StatusNotFound, nil)
}

// TestWritesMustBeJSON checks that every write without Content-Type
// application/json is refused with 415 before anything changes, body or
// not, while reads need no Content-Type.
func TestWritesMustBeJSON(t *testing.T) {
	f := newFixture(t)
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A"}`, http.StatusCreated, nil)
	f.handler.Client = &api.API{Service: task.NewService(task.ServiceConfig{Store: f.store, Hub: task.NewHub()}), MaxBody: 1 << 20, Deliveries: f.store}
	for _, rq := range []struct{ method, path, body string }{
		{"POST", "/taskgate/accounts", `{"id":"other","name":"O"}`},
		{"PATCH", "/taskgate/accounts/acme", `{"disabled":true}`},
		{"POST", "/taskgate/accounts/acme/keys", ``},
		{"POST", "/taskgate/accounts/acme/keys", `{"expire_others_in":"0s"}`},
		{"POST", "/taskgate/accounts/acme/deliveries/msg_x/retry", ``},
	} {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "application/merge-patch+json", "multipart/form-data; boundary=x"} {
			r := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			w := httptest.NewRecorder()
			f.handler.ServeHTTP(w, r)
			var e struct{ Error, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != http.StatusUnsupportedMediaType || e.Error != "UNSUPPORTED_MEDIA_TYPE" {
				t.Errorf("%s %s with Content-Type %q: %d %s, want 415 UNSUPPORTED_MEDIA_TYPE", rq.method, rq.path, ct, w.Code, w.Body)
			}
		}
	}
	a := f.do("GET", "/taskgate/accounts/acme", "", 200, nil)
	if a["disabled"] != false || len(a["keys"].([]any)) != 1 {
		t.Errorf("refused writes changed the account: %v", a)
	}
	f.do("GET", "/taskgate/accounts/other", "", 404, nil)
	// With the header, parameters included, the same writes go through.
	r := httptest.NewRequest("PATCH", "/taskgate/accounts/acme", strings.NewReader(`{"name":"B"}`))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("PATCH with a charset: %d %s", w.Code, w.Body)
	}
	f.do("POST", "/taskgate/accounts/acme/keys", "", http.StatusCreated, nil)
	f.do("POST", "/taskgate/accounts/acme/deliveries/msg_x/retry", "", http.StatusNotFound, nil)
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/taskgate/", 404},
		{"GET", "/taskgate/other", 404},
		{"GET", "/taskgate/accounts/", 404},
		{"PUT", "/taskgate/accounts", 405},
		{"POST", "/taskgate/accounts/demo", 405},
		{"GET", "/taskgate/accounts/demo/keys", 405},
		{"GET", "/taskgate/accounts/demo/keys/x", 405},
		{"POST", "/taskgate/accounts/demo/usage", 405},
		{"GET", "/taskgate/accounts/demo/other", 404},
		{"GET", "/taskgate/accounts/demo/keys/x/y", 404},
		{"GET", "/taskgate/accounts/nobody", 404},
	} {
		f.do(tc.method, tc.path, "", tc.status, nil)
	}
}

// FuzzAdminBodies feeds arbitrary bodies to the calls that take one: the
// answer is always a JSON object with a 2xx or 4xx status, never a 5xx.
func FuzzAdminBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a"}`,
		`{"id":"x","name":"a","rate_limit":"5/s","burst":2,"allow":["10.0.0.0/8","::1"],"task_types":["verify_with_source/ind_pan"],"webhooks":[{"url":"https://h/x","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","types":["verify_with_source/ind_pan"]}],"failure_webhook":"https://h/f"}`,
		`{"rate_limit":null,"allow":null,"disabled":false}`,
		`{"expire_others_in":"24h"}`,
		`{"name":"a","webhooks":[{"url":"http://[::1]:80/x"}]}`,
		`{"name":1e400}`,
		`[`,
	} {
		f.Add(seed)
	}
	fx := newFixture(&testing.T{})
	fx.handler.Service.Clock = time.Now
	if _, _, err := fx.handler.Service.Create(context.Background(), &Input{ID: Optional[string]{true, "acme"}, Name: Optional[string]{true, "A"}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, route := range []struct{ method, path string }{
			{"POST", "/taskgate/accounts"},
			{"PATCH", "/taskgate/accounts/acme"},
			{"POST", "/taskgate/accounts/acme/keys"},
		} {
			r := httptest.NewRequest(route.method, route.path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			fx.handler.ServeHTTP(w, r)
			if w.Code >= 500 || w.Code < 200 {
				t.Fatalf("%s %s %q: status %d: %s", route.method, route.path, body, w.Code, w.Body)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s %s %q: the answer is not JSON: %s", route.method, route.path, body, w.Body)
			}
		}
	})
}

func TestTasksAndDeliveriesOfAnAccount(t *testing.T) {
	f := newFixture(t)
	typ := &task.Type{Action: "verify_with_source", Type: "ind_pan", Source: "http://127.0.0.1:9/", Concurrency: 1}
	svc := task.NewService(task.ServiceConfig{Store: f.store, Hub: task.NewHub()})
	f.handler.Client = &api.API{Service: svc, Types: map[string]*task.Type{pan: typ}, MaxBody: 1 << 20, Deliveries: f.store}
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A"}`, http.StatusCreated, nil)
	created, _, err := svc.Create(t.Context(), task.NewTask{AccountID: "acme", Type: typ, TaskID: "t1", GroupID: "g1", Data: json.RawMessage(`{}`), Async: true})
	if err != nil {
		t.Fatal(err)
	}
	f.do("DELETE", "/taskgate/accounts/acme", "", http.StatusOK, nil)

	// Disabled, its tasks are still there for the operator.
	var views []map[string]any
	f.do("GET", "/taskgate/accounts/acme/tasks?request_id="+created.RequestID, "", http.StatusOK, &views)
	if len(views) != 1 || views[0]["request_id"] != created.RequestID || views[0]["task_id"] != "t1" {
		t.Fatalf("tasks %v", views)
	}
	f.do("GET", "/taskgate/accounts/acme/tasks?group_id=g1", "", http.StatusOK, &views)
	if len(views) != 1 {
		t.Fatalf("group: %v", views)
	}
	// Another account's task is not found, as for the client.
	f.do("GET", "/taskgate/accounts/demo/tasks?request_id="+created.RequestID, "", http.StatusNotFound, nil)
	f.do("GET", "/taskgate/accounts/nobody/tasks?request_id="+created.RequestID, "", http.StatusNotFound, nil)
	f.do("GET", "/taskgate/accounts/acme/tasks/x", "", http.StatusNotFound, nil)
	f.do("GET", "/taskgate/accounts/acme/deliveries?status=failed", "", http.StatusOK, nil)
	f.do("POST", "/taskgate/accounts/acme/deliveries/msg_x/retry", "", http.StatusNotFound, nil)
}

// TestUpdateAfterATaskTypeLeftTheConfig: a change that does not touch the
// task types goes through although one of them is no longer configured.
func TestUpdateAfterATaskTypeLeftTheConfig(t *testing.T) {
	f := newFixture(t)
	f.do("POST", "/taskgate/accounts", `{"id":"acme","name":"A","task_types":["`+pan+`"]}`, http.StatusCreated, nil)
	delete(f.handler.Service.TaskTypes, pan)
	f.do("PATCH", "/taskgate/accounts/acme", `{"name":"B"}`, http.StatusOK, nil)
	f.do("DELETE", "/taskgate/accounts/acme", "", http.StatusOK, nil)
	f.do("PATCH", "/taskgate/accounts/acme", `{"task_types":["`+pan+`"]}`, http.StatusBadRequest, nil)
}
