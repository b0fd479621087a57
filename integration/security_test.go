package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSecurityCrossAccount checks, with each storage, that no account
// reaches another's tasks, webhook deliveries or idempotency keys, between
// a static account (alpha, from the Caddyfile) and a dynamic one (bravo,
// made through the admin API), both ways: every client route that names
// the other's objects answers as if they did not exist, and never with the
// other's data.
func TestSecurityCrossAccount(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testSecurityCrossAccount)
}

func testSecurityCrossAccount(t *testing.T, storage string) {
	src := newFakeSource(t, echoDataSource)
	// Every delivery fails at its first attempt (a 4xx is not retried),
	// so that a retry would show as a second attempt.
	hooks := newHookReceiver(t, always(http.StatusBadRequest))
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage %s
	%s
	task_type sec/echo {
		source %s/echo
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 2s
		retry 100ms 400ms 1m
	}
}`, s.storageOption(storage), hookAccount("alpha", "webhook "+hooks.url+"/alpha"), src.url),
		Sites: taskSite(port),
	})
	b := createAccount(t, s, fmt.Sprintf(`{"id":"bravo","name":"Bravo","rate_limit":"100000/s","webhooks":[{"url":%q}]}`, hooks.url+"/bravo"))
	alpha := hookClient(s, port, "alpha")
	bravo := taskClient{s: s, port: port, auth: creds("bravo", b.APIKey)}

	// Each account's private task, finished (its result echoes the
	// account's marker), and its failed delivery.
	own := func(c taskClient, name string) secOwned {
		t.Helper()
		o := secOwned{
			c: c, name: name,
			taskID:  name + "-private-task",
			groupID: name + "-private-group",
			marker:  name + "-marker-5e0b9d1c",
		}
		o.requestID = c.createAsync(t, "sec/echo", o.taskID, o.groupID, fmt.Sprintf(`{"marker":%q}`, o.marker))
		if got := c.waitTerminal(t, o.requestID); !bytes.Contains(got.raw, []byte(o.marker)) {
			t.Fatalf("%s's own task does not show its marker, the checks would prove nothing: %s", name, got.raw)
		}
		d := c.waitDelivery(t, o.requestID, "", "failed", ended)
		if d.Status != "failed" || len(d.Attempts) != 1 {
			t.Fatalf("%s's delivery: %s, want failed after one attempt", name, d.raw)
		}
		o.deliveryID = d.ID
		return o
	}
	owned := map[string]secOwned{"alpha": own(alpha, "alpha"), "bravo": own(bravo, "bravo")}

	for _, p := range []struct{ owner, intruder secOwned }{
		{owned["alpha"], owned["bravo"]},
		{owned["bravo"], owned["alpha"]},
	} {
		o, in := p.owner, p.intruder
		t.Run(in.name+" on "+o.name+"'s objects", func(t *testing.T) {
			get := func(path string) response {
				t.Helper()
				r := s.get(t, in.c.url(path), in.c.auth)
				o.notIn(t, path, r)
				return r
			}
			for _, path := range []string{
				"/v3/tasks?request_id=" + o.requestID,
				"/v3/tasks?request_id=" + o.requestID + "&wait=1",
			} {
				wantError(t, get(path), http.StatusNotFound, "NOT_FOUND")
			}
			// Listings answer 200 with the caller's own objects: none here.
			for _, path := range []string{
				"/v3/tasks?group_id=" + url.QueryEscape(o.groupID),
				"/v3/tasks?task_id=" + url.QueryEscape(o.taskID),
				"/v3/webhooks/deliveries?request_id=" + o.requestID,
				"/v3/webhooks/deliveries?request_id=" + o.requestID + "&status=failed",
			} {
				if r := get(path); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
					t.Errorf("GET %s: %d %s, want 200 []", path, r.status, r.body)
				}
			}
			// A listing that names nothing shows the caller's deliveries only.
			for _, d := range in.c.deliveries(t, "status=failed") {
				if d.ID == o.deliveryID || d.RequestID == o.requestID || !strings.HasSuffix(d.URL, "/"+in.name) {
					t.Errorf("%s's failed deliveries show %s", in.name, d.raw)
				}
			}
			// Variants of the ids, and parameters given twice: refused or
			// empty, never the owner's objects, never a 5xx.
			for _, path := range []string{
				"/v3/tasks?request_id=" + strings.ToUpper(o.requestID),
				"/v3/tasks?request_id=" + url.QueryEscape(" "+o.requestID+" "),
				"/v3/tasks?request_id=" + o.requestID + "%00",
				"/v3/tasks?request_id=" + in.requestID + "&request_id=" + o.requestID,
				"/v3/tasks?request_id=" + o.requestID + "&request_id=" + in.requestID,
				"/v3/tasks?group_id=" + url.QueryEscape(in.groupID) + "&group_id=" + url.QueryEscape(o.groupID),
				"/v3/tasks?group_id=" + url.QueryEscape(strings.ToUpper(o.groupID)),
				"/v3/tasks?task_id=" + url.QueryEscape(o.taskID+"*"),
				"/v3/tasks?task_id=" + url.QueryEscape(o.taskID[:len(o.taskID)-1]),
				"/v3/webhooks/deliveries?request_id=" + in.requestID + "&request_id=" + o.requestID,
				"/v3/webhooks/deliveries?request_id=" + strings.ToUpper(o.requestID),
			} {
				r := get(path)
				if r.status >= 500 || (r.status < 400 && strings.TrimSpace(string(r.body)) != "[]") {
					t.Errorf("GET %s: %d %s, want a 4xx or 200 []", path, r.status, r.body)
				}
			}

			// A retry of the owner's delivery is refused and changes
			// nothing (checked again at the end of the test).
			for _, id := range []string{o.deliveryID, strings.ToLower(o.deliveryID)} {
				path := "/v3/webhooks/deliveries/" + id + "/retry"
				r := s.do(t, http.MethodPost, in.c.url(path), in.c.auth, nil)
				o.notIn(t, path, r)
				wantError(t, r, http.StatusNotFound, "NOT_FOUND")
			}

			// The owner's account id with the intruder's key.
			inKey := in.c.auth.Get("Api-Key")
			wrong := taskClient{s: s, port: port, auth: creds(o.name, inKey)}
			wantError(t, wrong.get(t, "request_id="+o.requestID), http.StatusForbidden, "INVALID_CREDENTIALS")
			wantError(t, wrong.get(t, "group_id="+url.QueryEscape(o.groupID)), http.StatusForbidden, "INVALID_CREDENTIALS")
			wantError(t, wrong.post(t, "async", "sec/echo", createBody("x", "x", `{}`), nil), http.StatusForbidden, "INVALID_CREDENTIALS")
			wantError(t, s.get(t, in.c.url("/v3/webhooks/deliveries?request_id="+o.requestID), wrong.auth), http.StatusForbidden, "INVALID_CREDENTIALS")

			// The operator's routes for an account's objects exist on the
			// admin endpoint only.
			for _, path := range []string{
				"/taskgate/accounts/" + o.name + "/tasks?request_id=" + o.requestID,
				"/taskgate/accounts/" + o.name + "/deliveries?request_id=" + o.requestID,
			} {
				if r := get(path); r.status < 300 && len(r.body) > 0 {
					t.Errorf("GET %s on the public listener: %d %s", path, r.status, r.body)
				}
			}
			r := s.do(t, http.MethodPost, in.c.url("/taskgate/accounts/"+o.name+"/deliveries/"+o.deliveryID+"/retry"), in.c.auth, nil)
			o.notIn(t, "public POST …/retry", r)
		})
	}

	// An Idempotency-Key belongs to its account: another account using the
	// same value, with the same body or another, makes a task of its own;
	// neither a replay of the other's task nor a 422 tells that the value
	// is in use elsewhere.
	for _, p := range []struct{ first, second secOwned }{
		{owned["alpha"], owned["bravo"]},
		{owned["bravo"], owned["alpha"]},
	} {
		first, second := p.first, p.second
		t.Run("idempotency key of "+first.name+" used by "+second.name, func(t *testing.T) {
			same := http.Header{"Idempotency-Key": {"sec-same-" + first.name}}
			other := http.Header{"Idempotency-Key": {"sec-other-" + first.name}}
			body := createBody("idem-task-"+first.name, "idem-group", `{"n":1}`)
			firstSame := wantAccepted(t, first.c.post(t, "async", "sec/echo", body, same))
			firstOther := wantAccepted(t, first.c.post(t, "async", "sec/echo", createBody("idem-other", "idem-group", `{"n":2}`), other))

			secondSame := wantAccepted(t, second.c.post(t, "async", "sec/echo", body, same))
			if secondSame == firstSame {
				t.Errorf("%s's create with %s's Idempotency-Key and body replayed %s's task %s", second.name, first.name, first.name, firstSame)
			}
			secondOther := wantAccepted(t, second.c.post(t, "async", "sec/echo", createBody("idem-other", "idem-group", `{"n":3}`), other))
			if secondOther == firstOther {
				t.Errorf("%s's create with %s's Idempotency-Key replayed %s's task", second.name, first.name, first.name)
			}
			// Each account's replay gives its own task.
			if again := wantAccepted(t, second.c.post(t, "async", "sec/echo", body, same)); again != secondSame {
				t.Errorf("%s's replay: %s, want its own %s", second.name, again, secondSame)
			}
			if again := wantAccepted(t, first.c.post(t, "async", "sec/echo", body, same)); again != firstSame {
				t.Errorf("%s's replay: %s, want its own %s", first.name, again, firstSame)
			}
			if got := second.c.task(t, secondSame, 0); got.TaskID != "idem-task-"+first.name {
				t.Errorf("%s's task %s: %s", second.name, secondSame, got.raw)
			}
			wantError(t, second.c.get(t, "request_id="+firstSame), http.StatusNotFound, "NOT_FOUND")
			wantError(t, first.c.get(t, "request_id="+secondSame), http.StatusNotFound, "NOT_FOUND")
			for _, c := range []taskClient{first.c, second.c} {
				if l := c.list(t, "task_id", "idem-task-"+first.name); len(l) != 1 {
					t.Errorf("%s: %d tasks idem-task-%s, want its own one", c.auth.Get("Account-Id"), len(l), first.name)
				}
			}
		})
	}

	// The refused retries queued nothing: each owner's delivery still has
	// its one attempt, and the receiver got it once. (Later deliveries of
	// the test have come and gone meanwhile.)
	for _, o := range owned {
		ds := o.c.deliveries(t, "request_id="+o.requestID)
		if len(ds) != 1 || ds[0].ID != o.deliveryID || ds[0].Status != "failed" || len(ds[0].Attempts) != 1 {
			t.Errorf("%s's delivery after the other's retries: %s, want failed after its one attempt", o.name, describeDeliveries(ds))
		}
		if n := len(hooks.withID(o.deliveryID)); n != 1 {
			t.Errorf("receiver got %s's delivery %d times, want once", o.name, n)
		}
	}
}

// TestSecurityDynamicKeysNotLogged is TestAPIKeyNotLoggedWithHeaderFilter
// for keys made at run time: with the log filter the README prescribes,
// debug logging and an access log, an account created through the admin
// API, its key rotated and the old one revoked, both keys used on the
// public listener (accepted, refused, and with a failing upstream). No
// log line, no file the server wrote but its database, no later admin
// answer, metric or CLI output holds either key, its random part, or its
// SHA-256 (hex or base64). The create and rotate answers, which show the
// key once by design, are the only places it may appear.
func TestSecurityDynamicKeysNotLogged(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, echoDataSource)
	port, deadPort := freePort(t), freePort(t)
	s := newServer(t)
	accessLog := filepath.Join(s.dir, "access.log")
	dbPath := filepath.Join(s.dir, "tg.db")
	s.start(config{
		Global: fmt.Sprintf(`
debug
log {
	format filter {
		request>headers>Api-Key delete
	}
}
taskgate {
	storage bolt %s
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account fixed {
		key key-fixed-static
	}
	task_type sec/echo {
		source %s/echo
	}
}`, dbPath, src.url),
		Sites: fmt.Sprintf(`
http://:%d {
	log {
		output file %s
		format filter {
			request>headers>Api-Key delete
		}
	}
	handle /down/* {
		api_key_auth
		reverse_proxy 127.0.0.1:%d
	}
	handle /v3/* {
		api_key_auth
		ip_allowlist
		account_rate_limit
		task_api
	}
}`, port, accessLog, deadPort),
	})

	public := 0
	call := func(method, path string, h http.Header, body string, status int) {
		t.Helper()
		public++
		h = h.Clone()
		h.Set("Content-Type", "application/json")
		if r := s.do(t, method, siteURL(port, path), h, strings.NewReader(body)); r.status != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
		}
	}
	use := func(key string, accepted bool) {
		t.Helper()
		status := http.StatusForbidden
		if accepted {
			status = http.StatusOK
			call(http.MethodPost, "/v3/tasks/async/sec/echo", creds("leaky", key), createBody("leak", "leak", `{}`), http.StatusAccepted)
			call(http.MethodGet, "/down/x", creds("leaky", key), "", http.StatusBadGateway)
		}
		call(http.MethodGet, "/v3/tasks?group_id=leak", creds("leaky", key), "", status)
		// Always refused: another account, no account, the key twice, the
		// key with more after it.
		call(http.MethodGet, "/v3/tasks?group_id=leak", creds("fixed", key), "", http.StatusForbidden)
		call(http.MethodGet, "/v3/tasks?group_id=leak", creds("nobody", key), "", http.StatusForbidden)
		call(http.MethodGet, "/v3/tasks?group_id=leak", http.Header{"Account-Id": {"leaky"}, "Api-Key": {key, key}}, "", http.StatusForbidden)
		call(http.MethodGet, "/v3/tasks?group_id=leak", creds("leaky", key+"x"), "", http.StatusForbidden)
		call(http.MethodGet, "/down/x", creds("leaky", key+"x"), "", http.StatusForbidden)
	}

	created := createAccount(t, s, `{"id":"leaky","name":"Leaky"}`)
	first := created.APIKey
	use(first, true)
	rotated := addKey(t, s, "leaky", `{"expire_others_in":"1h"}`)
	second := rotated.APIKey
	use(second, true)
	use(first, true) // the overlap
	var after adminAccount
	decodeAnswer(t, adminCall(t, s, http.MethodDelete, "/taskgate/accounts/leaky/keys/"+created.Keys[0].ID, ""), http.StatusOK, &after)
	use(first, false)
	use(second, true)

	var secrets []string
	for _, key := range []string{first, second} {
		sum := sha256.Sum256([]byte(key))
		hexSum := sha256Hex(key)
		secrets = append(secrets, key, key[3:35], hexSum, strings.ToUpper(hexSum),
			base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:]))
	}
	leaks := func(where, text string) {
		t.Helper()
		for _, line := range strings.Split(text, "\n") {
			for _, secret := range secrets {
				if strings.Contains(line, secret) {
					t.Errorf("%s holds %q: %s", where, secret, line)
				}
			}
		}
	}

	// Admin answers after the create and rotate answers.
	for _, path := range []string{
		"/taskgate/accounts",
		"/taskgate/accounts/leaky",
		"/taskgate/accounts/leaky/usage",
		"/taskgate/accounts/leaky/tasks?group_id=leak",
		"/taskgate/accounts/leaky/deliveries?status=pending",
		"/config/",
		"/metrics",
	} {
		r := s.get(t, "http://"+s.adminAddr+path, nil)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
		leaks("admin answer "+path, string(r.body))
	}
	if out := s.accountOK(t, "list", "--address", s.adminAddr); !strings.Contains(out, "leaky") {
		t.Errorf("taskgate account list does not show leaky:\n%s", out)
	} else {
		leaks("taskgate account list", out)
	}
	leaks("taskgate account show", s.accountOK(t, "show", "leaky", "--address", s.adminAddr))
	leaks("taskgate account show --json", s.accountOK(t, "show", "leaky", "--json", "--address", s.adminAddr))

	// The access log is written after the answer: wait for every entry,
	// and for the default log's error of the failed upstream, so that the
	// scan is not vacuous.
	waitWritten(t, "access log entries", func() bool {
		b, _ := os.ReadFile(accessLog)
		return strings.Count(string(b), `"msg":"handled request"`) >= public
	})
	waitWritten(t, "the error log of the failed upstream", func() bool {
		return strings.Contains(s.output(), fmt.Sprintf("127.0.0.1:%d", deadPort))
	})
	access, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(access, []byte(`"Account-Id":["leaky"]`)) {
		t.Fatalf("the access log does not show request headers, the scan would prove nothing:\n%s", access)
	}
	output := s.output()
	if !strings.Contains(output, "authentication failed") {
		t.Fatalf("no debug log of refused requests in the output, the scan would prove less than it should:\n%s", output)
	}
	leaks("process output", output)
	// Every file the server wrote, but the database, which keeps the
	// hashes by design.
	scanned := 0
	err = filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(path, dbPath) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		leaks(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 3 {
		t.Errorf("scanned %d files, want at least the Caddyfile, the output and the access log", scanned)
	}
}

// TestSecurityAuthTiming measures many refused requests, interleaved in a
// random order on one keep-alive connection, for an unknown account, a
// static account with one key, a dynamic account with one key and one with
// ten (the most an account may hold), all with the same wrong key, and
// checks that the median answer times differ by no more than the noise:
// the time of a refusal tells neither whether the account exists nor how
// many keys it has. Not parallel: it runs while the other tests of the
// process wait.
func TestSecurityAuthTiming(t *testing.T) {
	port := freePort(t)
	s := startServer(t, config{
		Global: `
taskgate {
	# Thousands of refusals from one address, timed: with the throttle
	# they would be 429s, answered before the credentials are looked at.
	auth_failures off
	account tstatic01 {
		key key-timing-static
	}
}`,
		Sites: taskSite(port),
	})
	one := createAccount(t, s, `{"id":"tdynkey01","name":"One key"}`)
	ten := createAccount(t, s, `{"id":"tdynkey10","name":"Ten keys"}`)
	for range 9 {
		addKey(t, s, "tdynkey10", "")
	}
	if got := getAccount(t, s, "tdynkey10"); len(got.Keys) != 10 {
		t.Fatalf("tdynkey10 holds %d keys, want 10", len(got.Keys))
	}
	wantError(t, adminCall(t, s, http.MethodPost, "/taskgate/accounts/tdynkey10/keys", ""), http.StatusConflict, "TOO_MANY_KEYS")

	// Ids and keys of the same lengths, so that parsing costs the same.
	const wrongKey = "tg_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ_ZZZZZZ"
	classes := []struct{ name, id, rightKey string }{
		{"unknown account", "tnobody01", ""},
		{"static, 1 key", "tstatic01", "key-timing-static"},
		{"dynamic, 1 key", "tdynkey01", one.APIKey},
		{"dynamic, 10 keys", "tdynkey10", ten.APIKey},
	}
	requests := make([][]byte, len(classes))
	for i, c := range classes {
		if c.rightKey != "" {
			wantEmptyList(t, s.get(t, siteURL(port, "/v3/tasks?group_id=timing"), creds(c.id, c.rightKey)))
		}
		wantError(t, s.get(t, siteURL(port, "/v3/tasks?group_id=timing"), creds(c.id, wrongKey)), http.StatusForbidden, "INVALID_CREDENTIALS")
		requests[i] = []byte(fmt.Sprintf("GET /v3/tasks?group_id=timing HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccount-Id: %s\r\nApi-Key: %s\r\n\r\n", port, c.id, wrongKey))
	}

	conn := dialKeepAlive(t, fmt.Sprintf("127.0.0.1:%d", port))
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	// Rounds with more samples each, until one is within the limit: a
	// burst of load elsewhere gets another chance; a real difference
	// fails every round.
	budget := time.Now().Add(20 * time.Second)
	var report []string
	for round, n := range []int{2000, 3000, 4000} {
		samples := measureInterleaved(t, conn, requests, n, rng, budget)
		ref := samples[0]
		ok := true
		report = append(report, fmt.Sprintf("round %d: %d samples per class", round+1, len(ref)))
		for i, c := range classes {
			st := summarizeTimes(samples[i])
			line := fmt.Sprintf("  %-17s median %6.1fµs  p10 %6.1fµs  p90 %6.1fµs  10%%-trimmed mean %6.1fµs",
				c.name, micros(st.median), micros(st.p10), micros(st.p90), micros(st.trimmedMean))
			if i > 0 {
				v := compareTimes(ref, samples[i], rng)
				line += fmt.Sprintf("  | median diff %+6.1fµs (95%% CI %+.1f..%+.1f, A/A noise %.1fµs), limit %.1fµs",
					micros(v.diff), micros(v.ciLow), micros(v.ciHigh), micros(v.aaNoise), micros(v.limit))
				if !v.ok() {
					ok = false
					line += "  OVER"
				}
			}
			report = append(report, line)
		}
		if ok {
			t.Logf("answer times of refused requests:\n%s", strings.Join(report, "\n"))
			return
		}
		if time.Now().After(budget) {
			break
		}
	}
	t.Errorf("answer times of refused requests differ by more than the noise in every round:\n%s", strings.Join(report, "\n"))
}

// TestSecurityTimingComparison checks the comparison TestSecurityAuthTiming
// relies on, on made-up samples shaped like loopback answer times (about
// 100 µs with a long tail): it passes two draws of the same distribution
// and fails a class answered 50 µs sooner, so that the timing test cannot
// pass by asserting nothing.
func TestSecurityTimingComparison(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	draw := func(n int, shift time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			d := 90*time.Microsecond + time.Duration(rng.ExpFloat64()*float64(25*time.Microsecond))
			if rng.IntN(50) == 0 {
				d += time.Duration(rng.IntN(2000)) * time.Microsecond
			}
			out[i] = d + shift
		}
		return out
	}
	for _, n := range []int{2000, 4000} {
		ref := draw(n, 0)
		if v := compareTimes(ref, draw(n, 0), rng); !v.ok() {
			t.Errorf("n=%d: the same distribution judged different: %+v", n, v)
		}
		for _, shift := range []time.Duration{-50 * time.Microsecond, 50 * time.Microsecond} {
			if v := compareTimes(ref, draw(n, shift), rng); v.ok() {
				t.Errorf("n=%d: a shift of %v judged within the noise: %+v", n, shift, v)
			}
		}
	}
}

// TestSecurityAdminOnlyOnAdminEndpoint sends the admin API's routes, and
// Caddy's own (/config/, /load, /stop), to public listeners (one that
// serves only /v3/*, one whose edge chain takes every path), with and
// without valid credentials: none acts, the config and the accounts stay
// as they were. Then it checks that the admin endpoint keeps Caddy's
// defaults for a loopback address: a foreign Origin or Host is refused,
// on taskgate's routes too.
func TestSecurityAdminOnlyOnAdminEndpoint(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, echoDataSource)
	port, catchAll := freePort(t), freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account alpha {
		key key-admin-alpha
	}
	task_type sec/echo {
		source %s/echo
	}
}`, src.url),
		Sites: taskSite(port) + fmt.Sprintf(`
http://:%d {
	api_key_auth
	ip_allowlist
	account_rate_limit
	task_api
}`, catchAll),
	})
	b := createAccount(t, s, `{"id":"bravo","name":"Bravo"}`)
	admin := func(path string) []byte {
		t.Helper()
		r := s.get(t, "http://"+s.adminAddr+path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		return r.body
	}
	configBefore, accountsBefore := admin("/config/"), admin("/taskgate/accounts")

	sneaky := `{
	admin off
}
http://:` + fmt.Sprint(port) + ` {
	respond "taken over"
}`
	const sneakyJSON = `{"apps":{"taskgate":{"accounts":[{"id":"sneaky","keys":[{"key":"key-sneaky"}]}]}}}`
	requests := []struct{ method, path, contentType, body string }{
		{http.MethodGet, "/taskgate/accounts", "", ""},
		{http.MethodPost, "/taskgate/accounts", "application/json", `{"id":"sneaky","name":"Sneaky"}`},
		{http.MethodGet, "/taskgate/accounts/bravo", "", ""},
		{http.MethodPatch, "/taskgate/accounts/bravo", "application/json", `{"disabled":true}`},
		{http.MethodDelete, "/taskgate/accounts/bravo", "", ""},
		{http.MethodPost, "/taskgate/accounts/bravo/keys", "application/json", `{"expire_others_in":"0s"}`},
		{http.MethodPost, "/taskgate/accounts/alpha/keys", "", ""},
		{http.MethodDelete, "/taskgate/accounts/bravo/keys/" + b.Keys[0].ID, "", ""},
		{http.MethodGet, "/taskgate/accounts/bravo/usage", "", ""},
		{http.MethodGet, "/config/", "", ""},
		{http.MethodGet, "/config/apps/taskgate", "", ""},
		{http.MethodPost, "/config/apps/taskgate/accounts", "application/json", `{"id":"sneaky","keys":[{"key":"key-sneaky"}]}`},
		{http.MethodDelete, "/config/apps/http", "", ""},
		{http.MethodPost, "/load", "application/json", sneakyJSON},
		{http.MethodPost, "/load", "text/caddyfile", sneaky},
		{http.MethodPost, "/stop", "", ""},
		{http.MethodGet, "/metrics", "", ""},
		{http.MethodGet, "/pki/ca/local", "", ""},
		{http.MethodGet, "/reverse_proxy/upstreams", "", ""},
		// The same through paths a router might clean.
		{http.MethodPost, "//taskgate/accounts", "application/json", `{"id":"sneaky","name":"Sneaky"}`},
		{http.MethodPost, "/v3/../taskgate/accounts", "application/json", `{"id":"sneaky","name":"Sneaky"}`},
		{http.MethodPost, "/v3/%2e%2e/load", "application/json", sneakyJSON},
		{http.MethodGet, "/v3/..%2fconfig/", "", ""},
	}
	// What an admin answer would show.
	adminMarks := []string{`"api_key"`, `"accounts"`, `"static"`, `"apps"`, `"admin"`, "taskgate_edge_decisions_total", "BEGIN CERTIFICATE", "key_"}
	for _, p := range []int{port, catchAll} {
		for _, auth := range []http.Header{nil, creds("alpha", "key-admin-alpha"), creds("bravo", b.APIKey)} {
			for _, rq := range requests {
				h := auth.Clone()
				if h == nil {
					h = http.Header{}
				}
				if rq.contentType != "" {
					h.Set("Content-Type", rq.contentType)
				}
				r := s.do(t, rq.method, siteURL(p, rq.path), h, strings.NewReader(rq.body))
				bad := r.status == http.StatusCreated || r.status >= 500
				for _, m := range adminMarks {
					bad = bad || bytes.Contains(r.body, []byte(m))
				}
				if bad {
					t.Errorf("%s %s on public port %d (credentials of %q): %d %s", rq.method, rq.path, p, auth.Get("Account-Id"), r.status, r.body)
				}
			}
		}
	}
	if !s.alive() {
		t.Fatal("taskgate stopped after requests on its public listeners")
	}
	if got := admin("/config/"); !bytes.Equal(got, configBefore) {
		t.Errorf("config changed by requests on the public listeners:\nbefore %s\nafter  %s", configBefore, got)
	}
	if got := admin("/taskgate/accounts"); !bytes.Equal(got, accountsBefore) {
		t.Errorf("accounts changed by requests on the public listeners:\nbefore %s\nafter  %s", accountsBefore, got)
	}
	wantError(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/sneaky", ""), http.StatusNotFound, "NOT_FOUND")
	wantEmptyList(t, s.get(t, siteURL(port, "/v3/tasks?group_id=g"), creds("bravo", b.APIKey)))
	wantError(t, s.get(t, siteURL(port, "/v3/tasks?group_id=g"), creds("sneaky", "key-sneaky")), http.StatusForbidden, "INVALID_CREDENTIALS")

	t.Run("origin and host checks", func(t *testing.T) {
		adminPort := s.adminAddr[strings.LastIndex(s.adminAddr, ":")+1:]
		tests := []struct {
			name, method, path, host, origin, secFetchMode, body string
			status                                               int
		}{
			// Caddy's admin endpoint checks Origin whenever a request has one
			// (403), and Host always on a loopback address (403, against DNS
			// rebinding); it refuses Origin null and no-cors fetches (400).
			{"foreign origin, create", http.MethodPost, "/taskgate/accounts", "", "http://evil.example", "", `{"id":"evil1","name":"Evil"}`, 403},
			{"foreign origin, list", http.MethodGet, "/taskgate/accounts", "", "http://evil.example", "", "", 403},
			{"foreign origin, new key", http.MethodPost, "/taskgate/accounts/bravo/keys", "", "http://evil.example", "", "", 403},
			{"foreign origin, config", http.MethodGet, "/config/", "", "http://evil.example", "", "", 403},
			{"foreign origin, load", http.MethodPost, "/load", "", "http://evil.example", "", sneakyJSON, 403},
			{"origin of another port", http.MethodPost, "/taskgate/accounts", "", "http://127.0.0.1:1", "", `{"id":"evil2","name":"Evil"}`, 403},
			{"origin under a foreign domain", http.MethodPost, "/taskgate/accounts", "", "http://127.0.0.1." + adminPort + ".evil.example", "", `{"id":"evil3","name":"Evil"}`, 403},
			{"null origin", http.MethodPost, "/taskgate/accounts", "", "null", "", `{"id":"evil4","name":"Evil"}`, 400},
			{"no-cors fetch", http.MethodPost, "/taskgate/accounts", "", "", "no-cors", `{"id":"evil5","name":"Evil"}`, 400},
			{"cross-site fetch without origin", http.MethodPost, "/taskgate/accounts", "", "", "cors", `{"id":"evil6","name":"Evil"}`, 403},
			{"foreign host", http.MethodPost, "/taskgate/accounts", "evil.example:" + adminPort, "", "", `{"id":"evil7","name":"Evil"}`, 403},
			{"foreign host, list", http.MethodGet, "/taskgate/accounts", "evil.example", "", "", "", 403},
			// The endpoint's own origins pass, so the refusals above are the
			// checks and not something else.
			{"own origin 127.0.0.1", http.MethodGet, "/taskgate/accounts", "", "http://127.0.0.1:" + adminPort, "", "", 200},
			{"own origin localhost", http.MethodGet, "/taskgate/accounts", "", "http://localhost:" + adminPort, "", "", 200},
			{"host localhost", http.MethodGet, "/taskgate/accounts", "localhost:" + adminPort, "", "", "", 200},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h := http.Header{}
				if tc.body != "" {
					h.Set("Content-Type", "application/json")
				}
				if tc.origin != "" {
					h.Set("Origin", tc.origin)
				}
				if tc.secFetchMode != "" {
					h.Set("Sec-Fetch-Mode", tc.secFetchMode)
				}
				r := doWithHost(t, s.client, tc.method, "http://"+s.adminAddr+tc.path, tc.host, h, tc.body)
				if r.status != tc.status {
					t.Errorf("status %d, want %d (body %s)", r.status, tc.status, r.body)
				}
				if tc.status != http.StatusOK && bytes.Contains(r.body, []byte(`"accounts"`)) {
					t.Errorf("a refused request got the accounts: %s", r.body)
				}
				if acao := r.header.Get("Access-Control-Allow-Origin"); tc.status != http.StatusOK && acao != "" {
					t.Errorf("Access-Control-Allow-Origin %q on a refused request", acao)
				}
			})
		}
		if got := admin("/config/"); !bytes.Equal(got, configBefore) {
			t.Errorf("config changed by refused admin requests:\nbefore %s\nafter  %s", configBefore, got)
		}
		if got := admin("/taskgate/accounts"); !bytes.Equal(got, accountsBefore) {
			t.Errorf("accounts changed by refused admin requests:\nbefore %s\nafter  %s", accountsBefore, got)
		}
	})
}

// TestSecurityHostileCredentials complements TestHostileInput (static
// accounts, a 1 MB header limit, a bare respond): with Caddy's default
// header limit, in front of the task API, against a dynamic account as
// well as a static one, credentials as long as the limit allows, with
// bytes outside ASCII, look-alikes of the right ones and repeated headers
// are all refused with the JSON 401/403, never a 5xx; what Go's server
// refuses before any handler is a 4xx.
func TestSecurityHostileCredentials(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, echoDataSource)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account alpha {
		key key-hostile-alpha
		rate_limit 100000/s
	}
	task_type sec/echo {
		source %s/echo
	}
}`, src.url),
		Sites: taskSite(port),
	})
	b := createAccount(t, s, `{"id":"bravo","name":"Bravo","rate_limit":"100000/s"}`)
	key := b.APIKey
	const alphaKey = "key-hostile-alpha"
	// Caddy's default header limit is 16 KiB (Go adds 4 KiB of slack).
	near := 15 << 10

	tests := []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"account-id near the header limit", creds(strings.Repeat("b", near), key), 403, "INVALID_CREDENTIALS"},
		{"api-key near the header limit", creds("bravo", key+strings.Repeat("k", near)), 403, "INVALID_CREDENTIALS"},
		{"both at half the limit", creds("bravo"+strings.Repeat("b", near/2), key+strings.Repeat("k", near/2)), 403, "INVALID_CREDENTIALS"},
		{"10 KiB of UTF-8 key", creds("bravo", strings.Repeat("é", 5<<10)), 403, "INVALID_CREDENTIALS"},
		{"right-to-left overrides as account-id", creds(strings.Repeat("\u202e", 3<<10), key), 403, "INVALID_CREDENTIALS"},
		{"key with a non-ASCII suffix", creds("bravo", key+"é"), 403, "INVALID_CREDENTIALS"},
		{"key in full-width letters", creds("bravo", "ｔｇ"+key[2:]), 403, "INVALID_CREDENTIALS"},
		{"key with a tab inside", creds("bravo", key[:10]+"\t"+key[10:]), 403, "INVALID_CREDENTIALS"},
		{"key with invalid UTF-8", creds("bravo", key[:10]+"\xc3\x28"+key[10:]), 403, "INVALID_CREDENTIALS"},
		{"account-id with a zero-width space", creds("bravo\u200b", key), 403, "INVALID_CREDENTIALS"},
		{"account-id in capitals", creds("BRAVO", key), 403, "INVALID_CREDENTIALS"},
		{"account-id with invalid UTF-8", creds("bravo\xff", key), 403, "INVALID_CREDENTIALS"},
		{"account-id with JSON and HTML syntax", creds(`bravo","error":"OK"}</script><script>`, key), 403, "INVALID_CREDENTIALS"},
		{"account-id with a path", creds("../bravo", key), 403, "INVALID_CREDENTIALS"},
		{"static account, key with a suffix", creds("alpha", alphaKey+"\u00a0"), 403, "INVALID_CREDENTIALS"},
		{"200 copies of the right key", http.Header{"Account-Id": {"bravo"}, "Api-Key": repeat(key, 200)}, 403, "INVALID_CREDENTIALS"},
		{"two account-ids, the right one first", http.Header{"Account-Id": {"bravo", "alpha"}, "Api-Key": {key}}, 403, "INVALID_CREDENTIALS"},
		{"two account-ids, the right one last", http.Header{"Account-Id": {"alpha", "bravo"}, "Api-Key": {key}}, 403, "INVALID_CREDENTIALS"},
		{"keys of two accounts", http.Header{"Account-Id": {"bravo"}, "Api-Key": {alphaKey, key}}, 403, "INVALID_CREDENTIALS"},
		{"account-ids as a comma list", creds("bravo, alpha", key), 403, "INVALID_CREDENTIALS"},
		{"keys as a comma list", creds("bravo", key+", "+alphaKey), 403, "INVALID_CREDENTIALS"},
		{"empty key after a right one", http.Header{"Account-Id": {"bravo"}, "Api-Key": {key, ""}}, 403, "INVALID_CREDENTIALS"},
		{"empty key before a right one", http.Header{"Account-Id": {"bravo"}, "Api-Key": {"", key}}, 401, "MISSING_CREDENTIALS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := taskClient{s: s, port: port, auth: tc.header}
			wantError(t, c.get(t, "group_id=g"), tc.status, tc.code)
			wantError(t, c.post(t, "async", "sec/echo", createBody("hostile", "g", `{}`), nil), tc.status, tc.code)
		})
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	raw := func(headers string) string {
		return "GET /v3/tasks?group_id=g HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n"
	}
	rawTests := []struct {
		name, request string
		status        int
	}{
		// Header names are case-insensitive: two spellings are two values.
		{"account-id in two spellings", raw("Account-Id: bravo\r\naccount-id: alpha\r\nApi-Key: " + key + "\r\n"), 403},
		{"api-key in two spellings", raw("Account-Id: bravo\r\nApi-Key: " + key + "\r\nAPI-KEY: " + alphaKey + "\r\n"), 403},
		{"the right request, as a control", raw("Account-Id: bravo\r\nApi-Key: " + key + "\r\n"), 200},
		{"DEL in api-key", raw("Account-Id: bravo\r\nApi-Key: " + key + "\x7f\r\n"), 400},
		{"ESC in account-id", raw("Account-Id: bra\x1bvo\r\nApi-Key: " + key + "\r\n"), 400},
		{"bare CR in api-key", raw("Account-Id: bravo\r\nApi-Key: " + key[:5] + "\r" + key[5:] + "\r\n"), 400},
		{"space in the header name", raw("Account-Id: bravo\r\nApi Key: " + key + "\r\n"), 400},
		{"over the header limit", raw("Account-Id: bravo\r\nApi-Key: " + strings.Repeat("k", 40<<10) + "\r\n"), 431},
	}
	for _, tc := range rawTests {
		t.Run("raw/"+tc.name, func(t *testing.T) {
			if got := rawRequest(t, addr, []byte(tc.request)); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
		})
	}

	if !s.alive() {
		t.Fatal("taskgate exited")
	}
	wantEmptyList(t, s.get(t, siteURL(port, "/v3/tasks?group_id=g"), creds("bravo", key)))
	wantEmptyList(t, s.get(t, siteURL(port, "/v3/tasks?group_id=g"), creds("alpha", alphaKey)))
	if out := s.output(); strings.Contains(out, "panic") {
		t.Errorf("the output mentions a panic:\n%s", out)
	}
}

// secOwned is what one account owns in TestSecurityCrossAccount: a task
// and its webhook delivery, and a marker that only its task shows.
type secOwned struct {
	c    taskClient
	name string

	taskID, groupID, marker string
	requestID, deliveryID   string
}

// notIn checks that an answer to another account shows none of o's
// objects, and is not a 5xx.
func (o secOwned) notIn(t *testing.T, what string, r response) {
	t.Helper()
	if r.status >= 500 {
		t.Errorf("%s: %d %s", what, r.status, r.body)
	}
	for _, s := range []string{o.marker, o.requestID, strings.ToUpper(o.requestID), o.deliveryID, o.taskID, o.groupID} {
		if bytes.Contains(r.body, []byte(s)) {
			t.Errorf("%s: the answer shows %s's %q: %d %s", what, o.name, s, r.status, r.body)
		}
	}
}

// wantEmptyList checks that r is a 200 with an empty JSON array.
func wantEmptyList(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("got %d %q, want 200 []", r.status, r.body)
	}
}

// echoDataSource is a source answer that completes each task with its
// data: {"echo": data}.
func echoDataSource(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
	var in struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(c.Body, &in) != nil || len(in.Data) == 0 {
		answerJSON(w, http.StatusOK, `{"echo":null}`)
		return
	}
	answerJSON(w, http.StatusOK, `{"echo":`+string(in.Data)+`}`)
}

// waitWritten polls cond every 20 ms until it holds, for at most 10 s: for
// what the server writes to files after answering.
func waitWritten(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("still waiting for %s after 10s", what)
		}
	}
}

// doWithHost is doWith with a Host header of its own (empty: the URL's)
// and a string body.
func doWithHost(t *testing.T, c *http.Client, method, u, host string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// keepAlive is one HTTP/1.1 connection that sends prepared requests one at
// a time.
type keepAlive struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &keepAlive{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
}

// roundTrip sends req and reads the whole answer; it returns the status.
func (k *keepAlive) roundTrip(req []byte) (int, error) {
	if err := k.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := k.conn.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// measureInterleaved sends n of each request in a random order (after a
// warm-up), one at a time on conn, and returns each request's answer
// times. It stops early at the budget's end, with what it has.
func measureInterleaved(t *testing.T, conn *keepAlive, requests [][]byte, n int, rng *rand.Rand, budget time.Time) [][]time.Duration {
	t.Helper()
	order := make([]int, 0, n*len(requests))
	for i := range requests {
		for range n {
			order = append(order, i)
		}
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i := range 300 {
		if _, err := conn.roundTrip(requests[i%len(requests)]); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	out := make([][]time.Duration, len(requests))
	for i, c := range order {
		start := time.Now()
		status, err := conn.roundTrip(requests[c])
		d := time.Since(start)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if status != http.StatusForbidden {
			t.Fatalf("request %d: status %d, want 403", i, status)
		}
		out[c] = append(out[c], d)
		if i%256 == 0 && time.Now().After(budget) && fewest(out) >= 200 {
			break
		}
	}
	return out
}

// fewest is the length of the shortest of samples.
func fewest(samples [][]time.Duration) int {
	n := math.MaxInt
	for _, s := range samples {
		n = min(n, len(s))
	}
	return n
}

// timeSummary describes a sample of answer times.
type timeSummary struct {
	median, p10, p90, trimmedMean time.Duration
}

func summarizeTimes(d []time.Duration) timeSummary {
	s := slices.Clone(d)
	slices.Sort(s)
	cut := len(s) / 10
	var sum time.Duration
	for _, v := range s[cut : len(s)-cut] {
		sum += v
	}
	return timeSummary{
		median:      medianSorted(s),
		p10:         s[len(s)/10],
		p90:         s[len(s)*9/10],
		trimmedMean: sum / time.Duration(len(s)-2*cut),
	}
}

func medianSorted(s []time.Duration) time.Duration {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianTime(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return medianSorted(s)
}

// timeVerdict compares a class's answer times with the reference class.
type timeVerdict struct {
	// diff is the difference of the medians (class minus reference);
	// ciLow and ciHigh bound it (bootstrap, 95 %).
	diff, ciLow, ciHigh time.Duration
	// aaNoise is the difference of the medians of the reference's two
	// halves: how far apart two draws of one class come out.
	aaNoise time.Duration
	// limit is what diff may reach: 20 µs or 10 % of the reference's
	// median, widened to the measured noise, but never to 45 µs, so that
	// a class answered 50 µs sooner or later always fails.
	limit time.Duration
}

func (v timeVerdict) ok() bool { return v.diff.Abs() <= v.limit }

func compareTimes(ref, x []time.Duration, rng *rand.Rand) timeVerdict {
	var v timeVerdict
	mRef := medianTime(ref)
	v.diff = medianTime(x) - mRef
	var even, odd []time.Duration
	for i, d := range ref {
		if i%2 == 0 {
			even = append(even, d)
		} else {
			odd = append(odd, d)
		}
	}
	v.aaNoise = (medianTime(even) - medianTime(odd)).Abs()
	const resamples = 200
	diffs := make([]time.Duration, resamples)
	a, b := make([]time.Duration, len(ref)), make([]time.Duration, len(x))
	for i := range diffs {
		for j := range a {
			a[j] = ref[rng.IntN(len(ref))]
		}
		for j := range b {
			b[j] = x[rng.IntN(len(x))]
		}
		diffs[i] = medianTime(b) - medianTime(a)
	}
	slices.Sort(diffs)
	v.ciLow, v.ciHigh = diffs[resamples*25/1000], diffs[resamples*975/1000-1]
	base := max(20*time.Microsecond, mRef/10)
	noise := max(3*v.aaNoise, v.ciHigh-v.ciLow)
	v.limit = min(max(base, noise), 45*time.Microsecond)
	return v
}

// micros is d in microseconds, for reports.
func micros(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }
