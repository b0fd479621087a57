package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// usageWait bounds how long a test waits for the usage API to catch up:
// counts are written every second, so the answer is at most a few seconds
// behind.
const usageWait = 5 * time.Second

// apiKeyPattern matches a generated API key: tg_, 32 base62 characters,
// _ and a 6-character checksum.
var apiKeyPattern = regexp.MustCompile(`^tg_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}$`)

// adminGlobal is the taskgate block of the admin API tests: storage, one
// static account (fixed, key key-fixed) and two task types served by the
// source at srcURL.
func adminGlobal(storage, srcURL string) string {
	return fmt.Sprintf(`
taskgate {
	storage %[1]s
	account fixed {
		key key-fixed
	}
	task_type adm/echo {
		source %[2]s/echo
	}
	task_type adm/other {
		source %[2]s/other
	}
}`, storage, srcURL)
}

// startAdminServer starts a server with adminGlobal's accounts and task
// types and the task API on a port of its own, and returns it with that
// port. The source answers every call at once.
func startAdminServer(t *testing.T, storage string) (*server, int) {
	t.Helper()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"done"}`)
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: adminGlobal(s.storageOption(storage), src.url), Sites: taskSite(port)})
	return s, port
}

// adminAccount is the account object of the admin API.
type adminAccount struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Static           bool       `json:"static"`
	Disabled         bool       `json:"disabled"`
	RateLimit        string     `json:"rate_limit"`
	Burst            int64      `json:"burst"`
	DefaultRateLimit bool       `json:"default_rate_limit"`
	Allow            []string   `json:"allow"`
	TaskTypes        []string   `json:"task_types"`
	Keys             []adminKey `json:"keys"`
	CreatedAt        *string    `json:"created_at"`
	UpdatedAt        *string    `json:"updated_at"`
}

// adminKey is a key as the admin API shows it.
type adminKey struct {
	ID        string  `json:"id"`
	Prefix    string  `json:"prefix"`
	ExpiresAt *string `json:"expires_at"`
	Expired   bool    `json:"expired"`
}

// createdAccount is the answer to POST /taskgate/accounts.
type createdAccount struct {
	adminAccount
	APIKey string `json:"api_key"`
}

// newKeyAnswer is the answer to POST /taskgate/accounts/{id}/keys.
type newKeyAnswer struct {
	KeyID          string  `json:"key_id"`
	APIKey         string  `json:"api_key"`
	Prefix         string  `json:"prefix"`
	CreatedAt      string  `json:"created_at"`
	OthersExpireAt *string `json:"others_expire_at"`
}

// usageCounts are the counters of a usage row or of the total.
type usageCounts struct {
	Requests       int64            `json:"requests"`
	Rejected       map[string]int64 `json:"rejected"`
	TasksCreated   int64            `json:"tasks_created"`
	TasksCompleted int64            `json:"tasks_completed"`
	TasksFailed    int64            `json:"tasks_failed"`
}

func (c usageCounts) add(o usageCounts) usageCounts {
	c.Requests += o.Requests
	c.TasksCreated += o.TasksCreated
	c.TasksCompleted += o.TasksCompleted
	c.TasksFailed += o.TasksFailed
	rejected := map[string]int64{}
	for _, m := range []map[string]int64{c.Rejected, o.Rejected} {
		for code, n := range m {
			rejected[code] += n
		}
	}
	c.Rejected = rejected
	return c
}

// String prints the counts the same way whether Rejected is nil or empty.
func (c usageCounts) String() string {
	return fmt.Sprintf("requests %d, rejected %v, tasks created %d, completed %d, failed %d",
		c.Requests, c.Rejected, c.TasksCreated, c.TasksCompleted, c.TasksFailed)
}

// adminUsage is the answer to GET /taskgate/accounts/{id}/usage.
type adminUsage struct {
	AccountID string `json:"account_id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Usage     []struct {
		Day      string `json:"day"`
		TaskType string `json:"task_type"`
		usageCounts
	} `json:"usage"`
	Total usageCounts `json:"total"`
}

// byTaskType sums the rows per task type, whatever their day (a test may
// run across midnight UTC).
func (u adminUsage) byTaskType() map[string]usageCounts {
	m := map[string]usageCounts{}
	for _, r := range u.Usage {
		m[r.TaskType] = m[r.TaskType].add(r.usageCounts)
	}
	return m
}

// adminCall sends a request to the admin API, with a JSON body unless body
// is empty; writes say they are JSON even without a body, as the admin API
// requires.
func adminCall(t *testing.T, s *server, method, path, body string) response {
	t.Helper()
	ct := ""
	if body != "" || method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut {
		ct = "application/json"
	}
	return s.admin(t, method, path, ct, []byte(body))
}

// decodeAnswer checks that r has the status and a JSON body, and decodes
// it into v.
func decodeAnswer(t *testing.T, r response, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

// createAccount creates an account through the admin API and returns the
// answer, checked: 201, the id asked for (if any) and a well-formed key
// whose prefix the account's only key shows.
func createAccount(t *testing.T, s *server, body string) createdAccount {
	t.Helper()
	var a createdAccount
	decodeAnswer(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts", body), http.StatusCreated, &a)
	var asked struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(body), &asked)
	if asked.ID != "" && a.ID != asked.ID {
		t.Errorf("created account %q, want %q", a.ID, asked.ID)
	}
	if !apiKeyPattern.MatchString(a.APIKey) {
		t.Errorf("api_key %q is not tg_<32 base62>_<6 base62>", a.APIKey)
	}
	if len(a.Keys) != 1 || !strings.HasPrefix(a.APIKey, a.Keys[0].Prefix) || a.Keys[0].Prefix == "" {
		t.Errorf("keys %+v, want the one key, with a prefix of %q", a.Keys, a.APIKey)
	}
	if a.Static || a.Disabled || a.CreatedAt == nil || a.UpdatedAt == nil {
		t.Errorf("new account %+v: want dynamic, enabled, with created_at and updated_at", a.adminAccount)
	}
	return a
}

// getAccount returns the account with the id, through the admin API.
func getAccount(t *testing.T, s *server, id string) adminAccount {
	t.Helper()
	var a adminAccount
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/"+id, ""), http.StatusOK, &a)
	return a
}

// addKey adds a key to the account through the admin API (body may be
// empty) and returns the answer.
func addKey(t *testing.T, s *server, id, body string) newKeyAnswer {
	t.Helper()
	var k newKeyAnswer
	decodeAnswer(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts/"+id+"/keys", body), http.StatusCreated, &k)
	if !apiKeyPattern.MatchString(k.APIKey) || !strings.HasPrefix(k.APIKey, k.Prefix) || !strings.HasPrefix(k.KeyID, "key_") {
		t.Errorf("new key %+v: want key_… id, tg_… key and its prefix", k)
	}
	return k
}

// getUsage returns the account's usage for the default days.
func getUsage(t *testing.T, s *server, id string) adminUsage {
	t.Helper()
	var u adminUsage
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/"+id+"/usage", ""), http.StatusOK, &u)
	return u
}

// sameCounts tells whether got holds the counts of want per task type,
// and no other task type; an empty Rejected equals a nil one.
func sameCounts(got, want map[string]usageCounts) bool {
	if len(got) != len(want) {
		return false
	}
	for tt, w := range want {
		g, ok := got[tt]
		if !ok || g.String() != w.String() {
			return false
		}
	}
	return true
}

// waitUsage polls the account's usage until its counts per task type are
// exactly want, for at most usageWait, and checks that the total is the
// sum of the rows.
func waitUsage(t *testing.T, s *server, id string, want map[string]usageCounts) adminUsage {
	t.Helper()
	deadline := time.Now().Add(usageWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		u := getUsage(t, s, id)
		got := u.byTaskType()
		var sum usageCounts
		for _, c := range got {
			sum = sum.add(c)
		}
		if u.Total.String() != sum.String() {
			t.Errorf("usage total %v, want the sum of the rows %v", u.Total, sum)
		}
		if sameCounts(got, want) {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of %s after %v:\n got %v\nwant %v", id, usageWait, got, want)
		}
		<-tick.C
	}
}

// TestAdminAccounts manages accounts through the admin endpoint, with
// each storage, and checks what the public listener makes of each change:
// a created account's key, allow list, task types and rate limit; static
// accounts that cannot be changed; rotation and revocation of keys;
// disabling and enabling; bad input; and that the public listener does
// not serve the admin API.
func TestAdminAccounts(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testAdminAccounts)
}

func testAdminAccounts(t *testing.T, storage string) {
	s, port := startAdminServer(t, storage)
	client := func(id, key string) taskClient { return taskClient{s: s, port: port, auth: creds(id, key)} }
	create := func(t *testing.T, c taskClient, taskType string) response {
		t.Helper()
		return c.post(t, "async", taskType, createBody("admin-task", "admin-group", `{}`), nil)
	}

	t.Run("create and use", func(t *testing.T) {
		// A rate per minute: nothing is regained while the test runs.
		a := createAccount(t, s, `{"id":"acme","name":"Acme Ltd","rate_limit":"2/m","burst":2,
			"allow":["127.0.0.0/8","2001:db8::/32"],"task_types":["adm/echo"]}`)
		if a.Name != "Acme Ltd" || a.RateLimit != "2/m" || a.Burst != 2 || a.DefaultRateLimit ||
			!slices.Equal(a.Allow, []string{"127.0.0.0/8", "2001:db8::/32"}) || !slices.Equal(a.TaskTypes, []string{"adm/echo"}) {
			t.Errorf("created %+v, want the settings asked for", a.adminAccount)
		}
		shown := adminCall(t, s, http.MethodGet, "/taskgate/accounts/acme", "")
		if shown.status != http.StatusOK || bytes.Contains(shown.body, []byte(a.APIKey)) || bytes.Contains(shown.body, []byte("api_key")) {
			t.Errorf("GET account: %d %s: want 200 without the key", shown.status, shown.body)
		}

		acme := client("acme", a.APIKey)
		wantAccepted(t, create(t, acme, "adm/echo"))
		wantError(t, create(t, client("acme", a.APIKey+"x"), "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		wantError(t, create(t, client("acme", "key-fixed"), "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		wantError(t, create(t, client("fixed", a.APIKey), "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		// Not one of its task types: as if it did not exist.
		wantError(t, create(t, acme, "adm/other"), http.StatusNotFound, "NOT_FOUND")
		// That was the second request through the limiter: the third is
		// refused.
		wantError(t, create(t, acme, "adm/echo"), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	})

	t.Run("allow list", func(t *testing.T) {
		a := createAccount(t, s, `{"id":"fenced","name":"Fenced","allow":["10.0.0.0/8"]}`)
		c := client("fenced", a.APIKey)
		wantError(t, create(t, c, "adm/echo"), http.StatusForbidden, "IP_NOT_ALLOWED")
		r := adminCall(t, s, http.MethodPatch, "/taskgate/accounts/fenced", `{"allow":["10.0.0.0/8","127.0.0.1/32"]}`)
		var changed adminAccount
		decodeAnswer(t, r, http.StatusOK, &changed)
		if !slices.Equal(changed.Allow, []string{"10.0.0.0/8", "127.0.0.1/32"}) || changed.UpdatedAt == nil || *changed.UpdatedAt == *a.UpdatedAt {
			t.Errorf("after PATCH: %+v", changed)
		}
		wantAccepted(t, create(t, c, "adm/echo"))
		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/fenced", `{"allow":["192.0.2.0/24"]}`), http.StatusOK, &changed)
		wantError(t, create(t, c, "adm/echo"), http.StatusForbidden, "IP_NOT_ALLOWED")
		// null is the default: any address.
		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/fenced", `{"allow":null}`), http.StatusOK, &changed)
		if len(changed.Allow) != 0 {
			t.Errorf("allow after null: %q, want []", changed.Allow)
		}
		wantAccepted(t, create(t, c, "adm/echo"))
	})

	t.Run("rate limit change", func(t *testing.T) {
		a := createAccount(t, s, `{"id":"loose","name":"Loose","rate_limit":"1000/s","burst":1000}`)
		c := client("loose", a.APIKey)
		var changed adminAccount
		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/loose", `{"rate_limit":"1/m","burst":1}`), http.StatusOK, &changed)
		if changed.RateLimit != "1/m" || changed.Burst != 1 || changed.DefaultRateLimit {
			t.Errorf("after PATCH: rate %q burst %d default %v, want 1/m burst 1", changed.RateLimit, changed.Burst, changed.DefaultRateLimit)
		}
		wantAccepted(t, create(t, c, "adm/echo"))
		wantError(t, create(t, c, "adm/echo"), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/loose", `{"rate_limit":""}`), http.StatusOK, &changed)
		fixed := getAccount(t, s, "fixed")
		if !changed.DefaultRateLimit || changed.RateLimit != fixed.RateLimit || changed.Burst != fixed.Burst {
			t.Errorf("after rate_limit \"\": %q burst %d default %v, want the default %q burst %d",
				changed.RateLimit, changed.Burst, changed.DefaultRateLimit, fixed.RateLimit, fixed.Burst)
		}
	})

	t.Run("raised rate limit holds at once", func(t *testing.T) {
		a := createAccount(t, s, `{"id":"raised","name":"Raised","rate_limit":"1/m","burst":1}`)
		c := client("raised", a.APIKey)
		wantAccepted(t, create(t, c, "adm/echo"))
		wantError(t, create(t, c, "adm/echo"), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
		var changed adminAccount
		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/raised", `{"rate_limit":"1000/s","burst":1000}`), http.StatusOK, &changed)
		wantAccepted(t, create(t, c, "adm/echo"))
	})

	t.Run("static account", func(t *testing.T) {
		var list struct {
			Accounts []adminAccount `json:"accounts"`
		}
		decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts", ""), http.StatusOK, &list)
		i := slices.IndexFunc(list.Accounts, func(a adminAccount) bool { return a.ID == "fixed" })
		if i < 0 {
			t.Fatalf("the static account is not listed: %+v", list.Accounts)
		}
		fixed := list.Accounts[i]
		if !fixed.Static || fixed.CreatedAt != nil || fixed.UpdatedAt != nil || len(fixed.Keys) != 1 ||
			!regexp.MustCompile(`^sha256_[0-9a-f]{12}$`).MatchString(fixed.Keys[0].ID) {
			t.Errorf("static account %+v: want static, no dates, one key sha256_<12 hex>", fixed)
		}
		if !slices.IsSortedFunc(list.Accounts, func(a, b adminAccount) int { return strings.Compare(a.ID, b.ID) }) {
			t.Errorf("accounts not by id: %+v", list.Accounts)
		}
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodPatch, "/taskgate/accounts/fixed", `{"name":"Renamed"}`},
			{http.MethodPatch, "/taskgate/accounts/fixed", `{"disabled":true}`},
			{http.MethodDelete, "/taskgate/accounts/fixed", ""},
			{http.MethodPost, "/taskgate/accounts/fixed/keys", ""},
			{http.MethodDelete, "/taskgate/accounts/fixed/keys/" + fixed.Keys[0].ID, ""},
		} {
			wantError(t, adminCall(t, s, rq.method, rq.path, rq.body), http.StatusConflict, "STATIC_ACCOUNT")
		}
		wantError(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts", `{"id":"fixed","name":"Impostor"}`), http.StatusConflict, "ACCOUNT_EXISTS")
		createAccount(t, s, `{"id":"taken","name":"First"}`)
		wantError(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts", `{"id":"taken","name":"Second"}`), http.StatusConflict, "ACCOUNT_EXISTS")
		if got := getAccount(t, s, "taken"); got.Name != "First" {
			t.Errorf("after a refused create with its id, the account is named %q", got.Name)
		}
		wantAccepted(t, create(t, client("fixed", "key-fixed"), "adm/echo"))
	})

	t.Run("rotate and revoke", func(t *testing.T) {
		a := createAccount(t, s, `{"id":"rotor","name":"Rotor"}`)
		first := client("rotor", a.APIKey)
		k := addKey(t, s, "rotor", "")
		if k.OthersExpireAt != nil {
			t.Errorf("others_expire_at %q without expire_others_in", *k.OthersExpireAt)
		}
		second := client("rotor", k.APIKey)
		wantAccepted(t, create(t, first, "adm/echo"))
		wantAccepted(t, create(t, second, "adm/echo"))

		// The revocation holds before its answer is sent: the very next
		// request with the key is refused.
		start := time.Now()
		var after adminAccount
		decodeAnswer(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/rotor/keys/"+a.Keys[0].ID, ""), http.StatusOK, &after)
		answered := time.Now()
		r := create(t, first, "adm/echo")
		refusedIn := time.Since(answered)
		wantError(t, r, http.StatusForbidden, "INVALID_CREDENTIALS")
		t.Logf("%s: revocation call took %v; the first request with the revoked key was refused %v after it returned (one request)",
			storage, answered.Sub(start), refusedIn)
		if len(after.Keys) != 1 || after.Keys[0].ID != k.KeyID {
			t.Errorf("keys after revocation %+v, want only %s", after.Keys, k.KeyID)
		}
		wantAccepted(t, create(t, second, "adm/echo"))
		wantError(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/rotor/keys/"+a.Keys[0].ID, ""), http.StatusNotFound, "NOT_FOUND")

		// expire_others_in 0s: the other keys fail at once.
		k3 := addKey(t, s, "rotor", `{"expire_others_in":"0s"}`)
		if k3.OthersExpireAt == nil {
			t.Errorf("no others_expire_at with expire_others_in 0s")
		}
		wantError(t, create(t, second, "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		wantAccepted(t, create(t, client("rotor", k3.APIKey), "adm/echo"))
		for _, key := range getAccount(t, s, "rotor").Keys {
			if expired := key.ID != k3.KeyID; key.Expired != expired || (expired && key.ExpiresAt == nil) {
				t.Errorf("key %+v: want expired %v", key, expired)
			}
		}

		// An account holds at most 10 keys.
		for range 9 {
			addKey(t, s, "rotor", `{"expire_others_in":"24h"}`)
		}
		wantError(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts/rotor/keys", ""), http.StatusConflict, "TOO_MANY_KEYS")
		// Revoking every key leaves an account that authenticates nothing.
		for _, key := range getAccount(t, s, "rotor").Keys {
			decodeAnswer(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/rotor/keys/"+key.ID, ""), http.StatusOK, &after)
		}
		if len(after.Keys) != 0 {
			t.Errorf("keys after revoking them all: %+v", after.Keys)
		}
		wantError(t, create(t, client("rotor", k3.APIKey), "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
	})

	t.Run("disable and enable", func(t *testing.T) {
		a := createAccount(t, s, `{"id":"sleeper","name":"Sleeper"}`)
		c := client("sleeper", a.APIKey)
		wantAccepted(t, create(t, c, "adm/echo"))
		var got adminAccount
		decodeAnswer(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/sleeper", ""), http.StatusOK, &got)
		if !got.Disabled {
			t.Errorf("DELETE answered %+v, want disabled", got)
		}
		wantError(t, create(t, c, "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		wantError(t, c.get(t, "group_id=admin-group"), http.StatusForbidden, "INVALID_CREDENTIALS")
		if got := getAccount(t, s, "sleeper"); !got.Disabled || len(got.Keys) != 1 {
			t.Errorf("disabled account shown as %+v", got)
		}
		// A new key of a disabled account does not work either.
		k := addKey(t, s, "sleeper", "")
		wantError(t, create(t, client("sleeper", k.APIKey), "adm/echo"), http.StatusForbidden, "INVALID_CREDENTIALS")
		if u := getUsage(t, s, "sleeper"); u.AccountID != "sleeper" {
			t.Errorf("usage of a disabled account: %+v", u)
		}

		decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/sleeper", `{"disabled":false}`), http.StatusOK, &got)
		if got.Disabled {
			t.Errorf("PATCH disabled false answered %+v", got)
		}
		wantAccepted(t, create(t, c, "adm/echo"))
		wantAccepted(t, create(t, client("sleeper", k.APIKey), "adm/echo"))
		if tasks := wantTasks(t, c.get(t, "group_id=admin-group")); len(tasks) != 3 {
			t.Errorf("tasks of the account enabled again: %d, want the 3 it created", len(tasks))
		}
	})

	t.Run("not on the public listener", func(t *testing.T) {
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodGet, "/taskgate/accounts", ""},
			{http.MethodPost, "/taskgate/accounts", `{"id":"sneaky","name":"Sneaky"}`},
			{http.MethodGet, "/taskgate/accounts/fixed", ""},
			{http.MethodPost, "/taskgate/accounts/acme/keys", ""},
			{http.MethodDelete, "/taskgate/accounts/acme", ""},
		} {
			r := s.do(t, rq.method, siteURL(port, rq.path), http.Header{"Content-Type": {"application/json"}}, strings.NewReader(rq.body))
			if r.status == http.StatusCreated || bytes.Contains(r.body, []byte(`"accounts"`)) ||
				bytes.Contains(r.body, []byte(`"api_key"`)) || bytes.Contains(r.body, []byte(`"static"`)) {
				t.Errorf("%s %s on the public listener: %d %s", rq.method, rq.path, r.status, r.body)
			}
		}
		wantError(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/sneaky", ""), http.StatusNotFound, "NOT_FOUND")
		if a := getAccount(t, s, "acme"); a.Disabled || len(a.Keys) != 1 {
			t.Errorf("acme changed by calls on the public listener: %+v", a)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		tests := []struct {
			name, method, path, body, code string
			status                         int
		}{
			{"bad CIDR", http.MethodPost, "/taskgate/accounts", `{"name":"x","allow":["10.0.0.0/33"]}`, "BAD_REQUEST", 400},
			{"not an address", http.MethodPost, "/taskgate/accounts", `{"name":"x","allow":["localhost"]}`, "BAD_REQUEST", 400},
			{"bad rate", http.MethodPost, "/taskgate/accounts", `{"name":"x","rate_limit":"fast"}`, "BAD_REQUEST", 400},
			{"zero rate", http.MethodPost, "/taskgate/accounts", `{"name":"x","rate_limit":"0/s"}`, "BAD_REQUEST", 400},
			{"burst without rate", http.MethodPost, "/taskgate/accounts", `{"name":"x","burst":5}`, "BAD_REQUEST", 400},
			{"unknown field", http.MethodPost, "/taskgate/accounts", `{"name":"x","colour":"red"}`, "BAD_REQUEST", 400},
			{"unknown nested field", http.MethodPost, "/taskgate/accounts", `{"name":"x","webhooks":[{"url":"https://example.com/h","colour":"red"}]}`, "BAD_REQUEST", 400},
			{"a field's name in another case", http.MethodPost, "/taskgate/accounts", `{"NAME":"x"}`, "BAD_REQUEST", 400},
			{"a nested field's name in another case", http.MethodPost, "/taskgate/accounts", `{"name":"x","webhooks":[{"URL":"https://example.com/h"}]}`, "BAD_REQUEST", 400},
			{"PATCH a field's name in another case", http.MethodPatch, "/taskgate/accounts/acme", `{"Disabled":true}`, "BAD_REQUEST", 400},
			{"malformed JSON", http.MethodPost, "/taskgate/accounts", `{"name":"x",`, "BAD_REQUEST", 400},
			{"not an object", http.MethodPost, "/taskgate/accounts", `["x"]`, "BAD_REQUEST", 400},
			{"two objects", http.MethodPost, "/taskgate/accounts", `{"name":"x"}{"name":"y"}`, "BAD_REQUEST", 400},
			{"wrong type", http.MethodPost, "/taskgate/accounts", `{"name":7}`, "BAD_REQUEST", 400},
			{"no name", http.MethodPost, "/taskgate/accounts", `{"id":"nameless"}`, "BAD_REQUEST", 400},
			{"bad id", http.MethodPost, "/taskgate/accounts", `{"id":"-dash","name":"x"}`, "BAD_REQUEST", 400},
			{"unknown task type", http.MethodPost, "/taskgate/accounts", `{"name":"x","task_types":["adm/none"]}`, "BAD_REQUEST", 400},
			{"disabled on create", http.MethodPost, "/taskgate/accounts", `{"name":"x","disabled":true}`, "BAD_REQUEST", 400},
			{"empty body", http.MethodPost, "/taskgate/accounts", ``, "BAD_REQUEST", 400},
			{"PATCH bad CIDR", http.MethodPatch, "/taskgate/accounts/acme", `{"allow":["nope"]}`, "BAD_REQUEST", 400},
			{"PATCH unknown field", http.MethodPatch, "/taskgate/accounts/acme", `{"api_key":"tg_mine"}`, "BAD_REQUEST", 400},
			{"PATCH id", http.MethodPatch, "/taskgate/accounts/acme", `{"id":"other"}`, "BAD_REQUEST", 400},
			{"bad expire_others_in", http.MethodPost, "/taskgate/accounts/acme/keys", `{"expire_others_in":"tomorrow"}`, "BAD_REQUEST", 400},
			{"negative expire_others_in", http.MethodPost, "/taskgate/accounts/acme/keys", `{"expire_others_in":"-1h"}`, "BAD_REQUEST", 400},
			{"bad usage day", http.MethodGet, "/taskgate/accounts/acme/usage?from=26-11-2026", ``, "BAD_REQUEST", 400},
			{"usage from after to", http.MethodGet, "/taskgate/accounts/acme/usage?from=2026-11-02&to=2026-11-01", ``, "BAD_REQUEST", 400},
			{"usage over 366 days", http.MethodGet, "/taskgate/accounts/acme/usage?from=2024-01-01&to=2025-12-31", ``, "BAD_REQUEST", 400},
			{"unknown account", http.MethodGet, "/taskgate/accounts/nobody", ``, "NOT_FOUND", 404},
			{"PATCH unknown account", http.MethodPatch, "/taskgate/accounts/nobody", `{"name":"x"}`, "NOT_FOUND", 404},
			{"usage of an unknown account", http.MethodGet, "/taskgate/accounts/nobody/usage", ``, "NOT_FOUND", 404},
			{"unknown key", http.MethodDelete, "/taskgate/accounts/acme/keys/key_nope", ``, "NOT_FOUND", 404},
			{"unknown route", http.MethodGet, "/taskgate/nothing", ``, "NOT_FOUND", 404},
			{"wrong method", http.MethodPut, "/taskgate/accounts/acme", `{"name":"x"}`, "METHOD_NOT_ALLOWED", 405},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, adminCall(t, s, tc.method, tc.path, tc.body), tc.status, tc.code)
			})
		}
		r := s.admin(t, http.MethodPost, "/taskgate/accounts", "text/plain", []byte(`{"name":"x"}`))
		wantError(t, r, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
		// Writes must say they are JSON, even without a body.
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodPost, "/taskgate/accounts", `{"name":"x"}`},
			{http.MethodPatch, "/taskgate/accounts/acme", `{"name":"x"}`},
			{http.MethodPost, "/taskgate/accounts/acme/keys", ``},
		} {
			wantError(t, s.admin(t, rq.method, rq.path, "", []byte(rq.body)), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
		}
		big := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
		wantError(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts", big), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
		// None of them changed acme.
		if a := getAccount(t, s, "acme"); a.Name != "Acme Ltd" || len(a.Keys) != 1 || len(a.Allow) != 2 {
			t.Errorf("acme after bad input: %+v", a)
		}
	})
}

// TestAdminAccountRestart checks, with bolt, that accounts and their keys
// outlive the process: after a clean stop (SIGTERM) and, for changes
// acknowledged just before, after a kill (SIGKILL).
func TestAdminAccountRestart(t *testing.T) {
	t.Parallel()
	s, port := startAdminServer(t, "bolt")
	client := func(id, key string) taskClient { return taskClient{s: s, port: port, auth: creds(id, key)} }
	create := func(c taskClient) response {
		t.Helper()
		c.s = s
		return c.post(t, "async", "adm/echo", createBody("restart-task", "restart-group", `{}`), nil)
	}

	kept := createAccount(t, s, `{"id":"kept","name":"Kept","rate_limit":"1000/s","allow":["127.0.0.0/8"],"task_types":["adm/echo"]}`)
	first := client("kept", kept.APIKey)
	wantAccepted(t, create(first))
	before := adminCall(t, s, http.MethodGet, "/taskgate/accounts/kept", "")

	s.stop(t, syscall.SIGTERM)
	if !s.cmd.ProcessState.Success() {
		t.Errorf("after SIGTERM: %v, want a clean exit", s.cmd.ProcessState)
	}
	s = s.restart(t)
	if after := adminCall(t, s, http.MethodGet, "/taskgate/accounts/kept", ""); after.status != http.StatusOK || !bytes.Equal(after.body, before.body) {
		t.Errorf("account after restart:\n got %d %s\nwant %s", after.status, after.body, before.body)
	}
	wantAccepted(t, create(first))
	var list struct {
		Accounts []adminAccount `json:"accounts"`
	}
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts", ""), http.StatusOK, &list)
	var ids []string
	for _, a := range list.Accounts {
		ids = append(ids, a.ID)
	}
	if !slices.Equal(ids, []string{"fixed", "kept"}) {
		t.Errorf("accounts after restart: %q, want fixed and kept", ids)
	}

	// Changes answered just before a kill are kept: a new key, a revoked
	// key, a new account.
	second := client("kept", addKey(t, s, "kept", "").APIKey)
	var changed adminAccount
	decodeAnswer(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/kept/keys/"+kept.Keys[0].ID, ""), http.StatusOK, &changed)
	sudden := createAccount(t, s, `{"id":"sudden","name":"Sudden"}`)
	s.stop(t, os.Kill)
	s = s.restart(t)
	wantError(t, create(first), http.StatusForbidden, "INVALID_CREDENTIALS")
	wantAccepted(t, create(second))
	wantAccepted(t, create(client("sudden", sudden.APIKey)))
	if got := getAccount(t, s, "sudden"); got.Name != "Sudden" || len(got.Keys) != 1 || got.Keys[0].ID != sudden.Keys[0].ID {
		t.Errorf("account created before the kill: %+v", got)
	}
	if got := getAccount(t, s, "kept"); len(got.Keys) != 1 || got.Keys[0].ID != changed.Keys[0].ID {
		t.Errorf("keys after the kill: %+v, want %+v", got.Keys, changed.Keys)
	}
}

// TestAdminUsage makes a known mix of requests for an account, with each
// storage, and reads its usage: every request counted once, by task type,
// with its rejections, and the tasks created and, once the source
// answers, completed. With bolt, counts made just before a clean stop are
// all there after the restart.
func TestAdminUsage(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testAdminUsage)
}

func testAdminUsage(t *testing.T, storage string) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, `{"status":"done"}`)
		}
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: adminGlobal(s.storageOption(storage), src.url), Sites: taskSite(port)})
	// A rate per minute, so that the 429s are exact: 3 creates and a poll
	// pass, the next 2 creates do not.
	a := createAccount(t, s, `{"id":"metered","name":"Metered","rate_limit":"4/m","burst":4}`)
	c := taskClient{s: s, port: port, auth: creds("metered", a.APIKey)}
	wrong := taskClient{s: s, port: port, auth: creds("metered", "tg_not_the_key")}
	const created, limited = 3, 2
	var ids []string
	for i := range created {
		ids = append(ids, c.createAsync(t, "adm/echo", fmt.Sprintf("usage-%d", i), "usage", `{}`))
	}
	c.task(t, ids[0], 0)
	for range limited {
		wantError(t, c.post(t, "async", "adm/echo", createBody("usage-x", "usage", `{}`), nil), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	}
	wantError(t, wrong.post(t, "async", "adm/echo", createBody("usage-x", "usage", `{}`), nil), http.StatusForbidden, "INVALID_CREDENTIALS")
	// Another account's requests are not this one's.
	other := createAccount(t, s, `{"id":"bystander","name":"Bystander"}`)
	taskClient{s: s, port: port, auth: creds("bystander", other.APIKey)}.createAsync(t, "adm/echo", "other", "usage", `{}`)

	// Every request is counted, rejected ones too; the poll names no task
	// type.
	echo := usageCounts{
		Requests:     created + limited + 1,
		Rejected:     map[string]int64{"too_many_requests": limited, "invalid_credentials": 1},
		TasksCreated: created,
	}
	want := map[string]usageCounts{"adm/echo": echo, "": {Requests: 1}}
	src.waitCalls(t, created+1)
	waitUsage(t, s, "metered", want)
	src.open()
	echo.TasksCompleted = created
	want["adm/echo"] = echo
	dayBefore := time.Now().UTC().Format(time.DateOnly)
	u := waitUsage(t, s, "metered", want)
	dayAfter := time.Now().UTC().Format(time.DateOnly)
	if u.AccountID != "metered" || (u.To != dayBefore && u.To != dayAfter) {
		t.Errorf("usage answer for %q up to %q, want metered up to today (%s)", u.AccountID, u.To, dayAfter)
	}
	for _, r := range u.Usage {
		if r.Day < u.From || r.Day > u.To {
			t.Errorf("row of %s outside %s..%s", r.Day, u.From, u.To)
		}
	}
	waitUsage(t, s, "bystander", map[string]usageCounts{"adm/echo": {Requests: 1, TasksCreated: 1, TasksCompleted: 1}})
	var past adminUsage
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/metered/usage?from=2000-01-01&to=2000-01-31", ""), http.StatusOK, &past)
	if past.From != "2000-01-01" || past.To != "2000-01-31" || past.Usage == nil || len(past.Usage) != 0 || past.Total.Requests != 0 {
		t.Errorf("usage of days before the account: %+v, want no rows", past)
	}

	if storage != "bolt" {
		return
	}
	// A clean stop right after more requests, refused and accepted: the
	// last counts are written on the way out, none is lost. (metered has
	// spent its allowance for the minute.)
	const refused, accepted = 4, 3
	for range refused {
		wantError(t, c.post(t, "async", "adm/echo", createBody("usage-x", "usage", `{}`), nil), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	}
	bystander := taskClient{s: s, port: port, auth: creds("bystander", other.APIKey)}
	for i := range accepted {
		bystander.createAsync(t, "adm/echo", fmt.Sprintf("more-%d", i), "usage", `{}`)
	}
	s.stop(t, syscall.SIGTERM)
	if !s.cmd.ProcessState.Success() {
		t.Errorf("after SIGTERM: %v, want a clean exit", s.cmd.ProcessState)
	}
	s = s.restart(t)
	echo.Requests += refused
	echo.Rejected["too_many_requests"] += refused
	want["adm/echo"] = echo
	// Read at once, no polling.
	if got := getUsage(t, s, "metered").byTaskType(); !sameCounts(got, want) {
		t.Errorf("usage of metered right after a clean stop and restart:\n got %v\nwant %v", got, want)
	}
	// Tasks cut short by the stop run again after the restart: their
	// completions are waited for.
	others := usageCounts{Requests: 1 + accepted, TasksCreated: 1 + accepted}
	got := getUsage(t, s, "bystander").byTaskType()
	if done := got["adm/echo"].TasksCompleted; done < 1 || done > 1+accepted {
		t.Errorf("tasks of bystander completed right after the restart: %d, want 1 to %d", done, 1+accepted)
	}
	g := got["adm/echo"]
	g.TasksCompleted = 0
	if !sameCounts(map[string]usageCounts{"adm/echo": g}, map[string]usageCounts{"adm/echo": others}) || len(got) != 1 {
		t.Errorf("usage of bystander right after a clean stop and restart:\n got %v\nwant %v (tasks completed aside)", got, others)
	}
	others.TasksCompleted = 1 + accepted
	waitUsage(t, s, "bystander", map[string]usageCounts{"adm/echo": others})
}
