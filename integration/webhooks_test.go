package integration

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookWait bounds how long a test waits for a delivery, an attempt or a
// delivery's end.
const hookWait = 20 * time.Second

// dispatcherPoll is how often taskgate's dispatcher looks for deliveries
// coming due when nothing wakes it (webhook.DefaultPoll): a retry may come
// that much after its delay.
const dispatcherPoll = 500 * time.Millisecond

// timingSlack absorbs a loaded test machine in checks of when attempts
// came.
const timingSlack = 750 * time.Millisecond

// webhookIDPattern matches a webhook-id as taskgate makes them.
var webhookIDPattern = regexp.MustCompile(`^msg_[0-9A-Za-z]{16,}$`)

// The test vector published with the Standard Webhooks reference
// libraries, to check the test's own verifier.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = "1614265330"
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// newSecret returns a fresh Standard Webhooks secret of n random bytes.
func newSecret(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// verifySignature checks a webhook-signature header as a receiver would,
// written from the Standard Webhooks spec and sharing no code with
// taskgate: the key is the base64 after "whsec_" (padded or not), the
// signed content is "id.timestamp.body", and any of the space-separated
// "v1,<base64>" signatures may match.
func verifySignature(secret, id, timestamp string, body []byte, header string) error {
	encoded, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return fmt.Errorf("secret without whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		if key, err = base64.RawStdEncoding.DecodeString(encoded); err != nil {
			return fmt.Errorf("secret: %v", err)
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte("."))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature in %q matches", header)
}

// hookRequest is one request a hookReceiver got.
type hookRequest struct {
	At     time.Time
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	// ID is the webhook-id header.
	ID string
	// Status is what the receiver answered, 0 while it holds the request
	// or when it never answered.
	Status int
}

// hookAnswer decides a hookReceiver's answer to a request: n counts the
// requests with the request's webhook-id so far, this one included. A
// status of 0 holds the request until the caller gives up or the test
// ends, and answers nothing.
type hookAnswer func(r *http.Request, n int) int

// always answers every request with status.
func always(status int) hookAnswer {
	return func(*http.Request, int) int { return status }
}

// failFirst answers the first n requests of each webhook-id with status,
// and 200 after.
func failFirst(n, status int) hookAnswer {
	return func(_ *http.Request, i int) int {
		if i <= n {
			return status
		}
		return http.StatusOK
	}
}

// hang holds every request.
func hang(*http.Request, int) int { return 0 }

// hookReceiver is a webhook receiver under the test's control: an HTTP
// server on 127.0.0.1 that records every request and answers as told.
type hookReceiver struct {
	url     string
	srv     *httptest.Server
	answer  hookAnswer
	release chan struct{}

	observed
	got      []hookRequest
	inFlight int
}

func newHookReceiver(t *testing.T, answer hookAnswer) *hookReceiver {
	t.Helper()
	h := &hookReceiver{answer: answer, release: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	h.url = h.srv.URL
	t.Cleanup(func() {
		close(h.release)
		h.srv.Close()
	})
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := hookRequest{
		At: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, ID: r.Header.Get("webhook-id"),
	}
	var i, n int
	h.update(func() {
		for _, g := range h.got {
			if g.ID == req.ID {
				n++
			}
		}
		n++
		i = len(h.got)
		h.got = append(h.got, req)
		h.inFlight++
	})
	status := h.answer(r, n)
	if status == 0 {
		select {
		case <-r.Context().Done():
		case <-h.release:
		}
		h.update(func() { h.inFlight-- })
		return
	}
	if status >= 300 && status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
	h.update(func() {
		h.got[i].Status = status
		h.inFlight--
	})
}

// waitFor waits until cond, called with the receiver locked, holds.
func (h *hookReceiver) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	h.observed.waitFor(t, "receiver: "+what, hookWait, cond)
}

// waitRequests waits until the receiver has got n requests in all.
func (h *hookReceiver) waitRequests(t *testing.T, n int) {
	t.Helper()
	h.waitFor(t, fmt.Sprintf("%d requests", n), func() bool { return len(h.got) >= n })
}

// requests returns the requests so far.
func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// withID returns the requests that carried the webhook-id.
func (h *hookReceiver) withID(id string) []hookRequest {
	var out []hookRequest
	for _, r := range h.requests() {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// deliveryObject is a delivery as the deliveries API shows it.
type deliveryObject struct {
	ID        string          `json:"id"`
	RequestID string          `json:"request_id"`
	URL       string          `json:"webhook_url"`
	Event     string          `json:"event"`
	Status    string          `json:"status"`
	Attempts  []attemptObject `json:"attempts"`
	CreatedAt string          `json:"created_at"`
	NextAt    *string         `json:"next_attempt_at"`

	raw []byte
}

// attemptObject is one attempt of a delivery.
type attemptObject struct {
	At         string  `json:"at"`
	StatusCode *int    `json:"status_code"`
	Error      *string `json:"error"`
	DurationMS int64   `json:"duration_ms"`
}

// code is the attempt's status code, 0 for null.
func (a attemptObject) code() int {
	if a.StatusCode == nil {
		return 0
	}
	return *a.StatusCode
}

// errText is the attempt's error, "" for null.
func (a attemptObject) errText() string {
	if a.Error == nil {
		return ""
	}
	return *a.Error
}

// last is the delivery's latest attempt (zero without attempts).
func (d deliveryObject) last() attemptObject {
	if len(d.Attempts) == 0 {
		return attemptObject{}
	}
	return d.Attempts[len(d.Attempts)-1]
}

// deliveryKeys must be in every delivery object; attemptKeys are all the
// keys of an attempt.
var (
	deliveryKeys = []string{"attempts", "id", "request_id", "status", "webhook_url"}
	attemptKeys  = []string{"at", "duration_ms", "error", "status_code"}
)

// decodeDelivery decodes a delivery object and checks its shape.
func decodeDelivery(t *testing.T, raw []byte) deliveryObject {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("delivery %s: %v", raw, err)
	}
	for _, k := range deliveryKeys {
		if _, ok := fields[k]; !ok {
			t.Errorf("delivery %s lacks %q", raw, k)
		}
	}
	var attempts []map[string]json.RawMessage
	if err := json.Unmarshal(fields["attempts"], &attempts); err != nil {
		t.Fatalf("delivery %s: attempts: %v", raw, err)
	}
	for _, a := range attempts {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range a {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, attemptKeys) {
			t.Errorf("attempt keys %v, want %v (delivery %s)", keys, attemptKeys, raw)
		}
	}
	var d deliveryObject
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("delivery %s: %v", raw, err)
	}
	d.raw = raw
	if !webhookIDPattern.MatchString(d.ID) {
		t.Errorf("delivery id %q is not msg_<base62>", d.ID)
	}
	for _, a := range d.Attempts {
		mustTime(t, a.At)
		if a.DurationMS < 0 {
			t.Errorf("attempt with duration_ms %d: %s", a.DurationMS, raw)
		}
		ok := a.code() >= 200 && a.code() < 300
		if ok != (a.Error == nil) {
			t.Errorf("attempt with status %d and error %v: want an error exactly when not 2xx (%s)", a.code(), a.Error, raw)
		}
	}
	switch d.Status {
	case "pending":
		if d.NextAt == nil {
			t.Errorf("pending delivery without next_attempt_at: %s", raw)
		}
	case "delivered":
		if c := d.last().code(); c < 200 || c > 299 {
			t.Errorf("delivered delivery whose last attempt got %d: %s", c, raw)
		}
	case "failed":
		if len(d.Attempts) == 0 {
			t.Errorf("failed delivery without attempts: %s", raw)
		}
	default:
		t.Errorf("delivery status %q, want pending, delivered or failed", d.Status)
	}
	return d
}

// deliveries lists the client's deliveries: GET /v3/webhooks/deliveries?query.
func (c taskClient) deliveries(t *testing.T, query string) []deliveryObject {
	t.Helper()
	r := c.s.get(t, c.url("/v3/webhooks/deliveries?"+query), c.auth)
	if r.status != http.StatusOK {
		t.Fatalf("GET deliveries?%s: status %d, want 200 (body %s)", query, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(r.body, &raws); err != nil {
		t.Fatalf("GET deliveries?%s: body %s is not a JSON array: %v", query, r.body, err)
	}
	out := make([]deliveryObject, len(raws))
	for i, raw := range raws {
		out[i] = decodeDelivery(t, raw)
	}
	return out
}

// waitDeliveries lists the client's deliveries every 50 ms until cond holds
// of the listing, and returns it.
func (c taskClient) waitDeliveries(t *testing.T, query, what string, cond func([]deliveryObject) bool) []deliveryObject {
	t.Helper()
	deadline := time.NewTimer(hookWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ds := c.deliveries(t, query)
		if cond(ds) {
			return ds
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("deliveries?%s: still waiting for %s after %v; last listing:\n%s", query, what, hookWait, describeDeliveries(ds))
		}
	}
}

// waitDelivery waits until the task's one delivery of the event (of a
// "task.finished" when event is empty) satisfies cond, and returns it.
func (c taskClient) waitDelivery(t *testing.T, requestID, event, what string, cond func(deliveryObject) bool) deliveryObject {
	t.Helper()
	if event == "" {
		event = "task.finished"
	}
	var found deliveryObject
	c.waitDeliveries(t, "request_id="+url.QueryEscape(requestID), what, func(ds []deliveryObject) bool {
		for _, d := range ds {
			if d.Event == event && cond(d) {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

func describeDeliveries(ds []deliveryObject) string {
	var b strings.Builder
	for _, d := range ds {
		b.Write(d.raw)
		b.WriteString("\n")
	}
	return b.String()
}

// ended tells whether a delivery is delivered or failed.
func ended(d deliveryObject) bool { return d.Status == "delivered" || d.Status == "failed" }

// hasStatus returns a condition on a delivery's status.
func hasStatus(status string) func(deliveryObject) bool {
	return func(d deliveryObject) bool { return d.Status == status }
}

// sameJSONValue tells whether a and b are the same JSON value, numbers
// compared as written.
func sameJSONValue(a, b []byte) bool {
	decode := func(raw []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	return okA && okB && reflect.DeepEqual(va, vb)
}

// checkHookHeaders checks the headers every delivery carries, and its
// signature when secret is set (its absence otherwise).
func checkHookHeaders(t *testing.T, r hookRequest, secret string) {
	t.Helper()
	if r.Method != http.MethodPost {
		t.Errorf("method %s, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "taskgate/") {
		t.Errorf("User-Agent = %q, want taskgate/<version>", ua)
	}
	if !webhookIDPattern.MatchString(r.ID) {
		t.Errorf("webhook-id = %q, want msg_<base62>", r.ID)
	}
	ts := r.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Errorf("webhook-timestamp = %q, want Unix seconds", ts)
	} else if d := r.At.Sub(time.Unix(sec, 0)); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("webhook-timestamp %s is %v away from the request's arrival", ts, d)
	}
	sig := r.Header.Get("webhook-signature")
	switch {
	case secret == "" && sig != "":
		t.Errorf("webhook-signature %q on a webhook without a secret", sig)
	case secret != "":
		if err := verifySignature(secret, r.ID, ts, r.Body, sig); err != nil {
			t.Errorf("webhook-signature: %v", err)
		}
	}
}

// hookAccount returns the config of an account with a key and a rate
// limit that polling never hits, followed by the lines of its block.
func hookAccount(id string, lines ...string) string {
	return fmt.Sprintf("account %s {\n\tkey key-%s\n\trate_limit 100000/s\n\t%s\n}", id, id, strings.Join(lines, "\n\t"))
}

// hookClient is the client of an account made by hookAccount.
func hookClient(s *server, port int, id string) taskClient {
	return taskClient{s: s, port: port, auth: creds(id, "key-"+id)}
}

// okSource is a task source that completes every task, but for calls to a
// path ending in /down, which it answers 503 (the task fails SOURCE_DOWN).
func okSource(t *testing.T) *fakeSource {
	t.Helper()
	return newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if strings.HasSuffix(c.Path, "/down") {
			answerJSON(w, http.StatusServiceUnavailable, `{"error":"busy"}`)
			return
		}
		answerJSON(w, http.StatusOK, `{"status":"id_found","source_output":{"name":"Ⅹ <DEMO> & co","n":12345678901234567890}}`)
	})
}

// TestWebhookDelivery checks what a webhook receives: each finished async
// task once per matching webhook of its account, its body the task object
// that GET returns, with the Standard Webhooks headers, a signature a
// receiver can verify, the configured Authorization; failed tasks too,
// sync tasks never.
func TestWebhookDelivery(t *testing.T) {
	t.Parallel()
	if err := verifySignature(specSecret, specID, specTimestamp, []byte(specBody), "v1,bm9wZQ== "+specSignature); err != nil {
		t.Fatalf("the test's verifier rejects the spec's vector: %v", err)
	}
	if err := verifySignature(specSecret, specID, specTimestamp, []byte(specBody+" "), specSignature); err == nil {
		t.Fatal("the test's verifier accepts a changed body")
	}

	src := okSource(t)
	typed := newHookReceiver(t, always(http.StatusNoContent))
	other := newHookReceiver(t, always(http.StatusOK))
	every := newHookReceiver(t, always(http.StatusOK))
	// 32 bytes encode with padding, 24 without: both forms are valid.
	typedSecret, everySecret := newSecret(t, 32), newSecret(t, 24)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	%[1]s
	task_type hook/pan {
		source %[2]s/pan
	}
	task_type hook/down {
		source %[2]s/down
		timeout 2s
	}
	task_type hook/other {
		source %[2]s/other
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 500ms
		retry 100ms 400ms 3s
	}
}`, hookAccount("hooks",
			fmt.Sprintf("webhook %s/typed?tenant=t1 {\n\t\tsecret %s\n\t\tauthorization \"Bearer a-token\"\n\t\ttypes hook/pan\n\t}", typed.url, typedSecret),
			fmt.Sprintf("webhook %s/other {\n\t\tsecret %s\n\t\ttypes hook/other\n\t}", other.url, newSecret(t, 32)),
			fmt.Sprintf("webhook %s/every {\n\t\tsecret %s\n\t}", every.url, everySecret),
		), src.url),
		Sites: taskSite(port),
	})
	c := hookClient(s, port, "hooks")

	// A sync task: its caller has the answer, no webhook is called. Its
	// deliveries would be stored with its end, so none now means none ever.
	r := c.post(t, "sync", "hook/pan", createBody("sync-1", "g", `{}`), nil)
	if r.status != http.StatusOK {
		t.Fatalf("sync task: %d %s", r.status, r.body)
	}
	syncTask := decodeTask(t, r.body)
	if ds := c.deliveries(t, "request_id="+syncTask.RequestID); len(ds) != 0 {
		t.Errorf("sync task has deliveries:\n%s", describeDeliveries(ds))
	}

	completed := c.createAsync(t, "hook/pan", "pan-1", "g", `{"id_number":"ABCDE1234F"}`)
	failed := c.createAsync(t, "hook/down", "down-1", "g", `{}`)
	tasks := map[string]taskObject{}
	for _, id := range []string{completed, failed} {
		tasks[id] = c.waitTerminal(t, id)
	}
	if o := tasks[failed]; o.Status != "failed" || o.Error == nil || *o.Error != "SOURCE_DOWN" {
		t.Fatalf("task of hook/down: %s, want failed with SOURCE_DOWN", o.raw)
	}

	tests := []struct {
		name          string
		requestID     string
		receiver      *hookReceiver
		path, query   string
		secret        string
		authorization string
	}{
		{"completed to its typed webhook", completed, typed, "/typed", "tenant=t1", typedSecret, "Bearer a-token"},
		{"completed to the webhook of every type", completed, every, "/every", "", everySecret, ""},
		{"source down to the webhook of every type", failed, every, "/every", "", everySecret, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := c.waitDelivery(t, tc.requestID, "", "delivered to "+tc.path, func(d deliveryObject) bool {
				return strings.HasSuffix(d.URL, tc.path+queryPart(tc.query)) && ended(d)
			})
			if d.Status != "delivered" || len(d.Attempts) != 1 || d.RequestID != tc.requestID {
				t.Fatalf("delivery: %s, want delivered at the first attempt", d.raw)
			}
			got := tc.receiver.withID(d.ID)
			if len(got) != 1 {
				t.Fatalf("receiver got %d requests with webhook-id %s, want 1", len(got), d.ID)
			}
			req := got[0]
			if req.Path != tc.path || req.Query != tc.query {
				t.Errorf("request to %s?%s, want %s?%s", req.Path, req.Query, tc.path, tc.query)
			}
			checkHookHeaders(t, req, tc.secret)
			if a := req.Header.Get("Authorization"); a != tc.authorization {
				t.Errorf("Authorization = %q, want %q", a, tc.authorization)
			}
			want := tasks[tc.requestID]
			decodeTask(t, req.Body)
			if !sameJSONValue(req.Body, want.raw) {
				t.Errorf("body\n%s\nwant the task as GET shows it\n%s", req.Body, want.raw)
			}
		})
	}

	// Once per matching webhook: the completed task has two deliveries, the
	// failed one (of a type only the webhook without types takes) one.
	for id, n := range map[string]int{completed: 2, failed: 1} {
		if ds := c.deliveries(t, "request_id="+id); len(ds) != n {
			t.Errorf("task %s: %d deliveries, want %d:\n%s", id, len(ds), n, describeDeliveries(ds))
		}
	}
	for h, want := range map[*hookReceiver]int{typed: 1, every: 2, other: 0} {
		if got := len(h.requests()); got != want {
			t.Errorf("receiver %s: %d requests, want %d", h.url, got, want)
		}
	}
	for _, h := range []*hookReceiver{typed, every, other} {
		for _, req := range h.requests() {
			if bytes.Contains(req.Body, []byte(syncTask.RequestID)) {
				t.Errorf("the sync task was delivered to %s", req.Path)
			}
		}
	}
}

// queryPart is "?q", or "" without a query.
func queryPart(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// retryDelay returns the bounds of the delay before retry k (1 for the
// first) of the policy `retry first max …`, jitter ±20 % included, as the
// spec describes it.
func retryDelay(first, maxDelay time.Duration, k int) (lo, hi time.Duration) {
	base := first
	for i := 1; i < k && base < maxDelay; i++ {
		base *= 2
	}
	base = min(base, maxDelay)
	return base * 8 / 10, min(base*12/10, maxDelay)
}

// TestWebhookRetries checks the retry policy, one task type and webhook
// per receiver behaviour: 5xx is retried with growing delays under one
// webhook-id until a 2xx; a 4xx or a 3xx ends the delivery failed at the
// first attempt; a refused connection and a receiver slower than the
// timeout are retried.
func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	const (
		first, maxDelay = 400 * time.Millisecond, 1600 * time.Millisecond
		timeout         = 500 * time.Millisecond
	)
	tests := []struct {
		name   string
		answer hookAnswer // nil: nothing listens at the webhook's port
		// status is how the delivery ends; "pending" is still retried.
		status string
		// attempts is the number of attempts it ends with, or the least
		// to wait for while pending.
		attempts int
		// code and errText describe the first attempt.
		code    int
		errText string
	}{
		{"5xx three times then 2xx", failFirst(3, http.StatusInternalServerError), "delivered", 4, 500, "500 Internal Server Error"},
		{"503", failFirst(1, http.StatusServiceUnavailable), "delivered", 2, 503, "503 Service Unavailable"},
		{"408", failFirst(1, http.StatusRequestTimeout), "delivered", 2, 408, "408 Request Timeout"},
		{"429", failFirst(1, http.StatusTooManyRequests), "delivered", 2, 429, "429 Too Many Requests"},
		{"400", always(http.StatusBadRequest), "failed", 1, 400, "400 Bad Request"},
		{"410", always(http.StatusGone), "failed", 1, 410, "410 Gone"},
		{"302", always(http.StatusFound), "failed", 1, 302, "302 Found (redirects are not followed)"},
		{"connection refused", nil, "pending", 2, 0, "connection refused"},
		{"slower than the timeout", hang, "pending", 2, 0, "timeout after " + timeout.String()},
	}
	src := okSource(t)
	secret := newSecret(t, 32)
	receivers := make([]*hookReceiver, len(tests))
	var hooks, types []string
	for i, tc := range tests {
		u := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		if tc.answer != nil {
			receivers[i] = newHookReceiver(t, tc.answer)
			u = receivers[i].url
		}
		hooks = append(hooks, fmt.Sprintf("webhook %s/case-%d {\n\t\tsecret %s\n\t\ttypes retry/case-%d\n\t}", u, i, secret, i))
		types = append(types, fmt.Sprintf("task_type retry/case-%d {\n\tsource %s/case\n}", i, src.url))
	}
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	%s
	%s
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout %v
		retry %v %v 10s
	}
}`, hookAccount("retry", hooks...), strings.Join(types, "\n"), timeout, first, maxDelay),
		Sites: taskSite(port),
	})
	c := hookClient(s, port, "retry")

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := c.createAsync(t, fmt.Sprintf("retry/case-%d", i), "retry", "retry", `{}`)
			want := func(d deliveryObject) bool { return d.Status == tc.status }
			if tc.status == "pending" {
				want = func(d deliveryObject) bool { return d.Status == "pending" && len(d.Attempts) >= tc.attempts }
			}
			d := c.waitDelivery(t, id, "", fmt.Sprintf("%s after %d attempts", tc.status, tc.attempts), want)
			if tc.status != "pending" && len(d.Attempts) != tc.attempts {
				t.Errorf("%s after %d attempts, want %d: %s", d.Status, len(d.Attempts), tc.attempts, d.raw)
			}
			a := d.Attempts[0]
			if a.code() != tc.code || a.errText() != tc.errText {
				t.Errorf("first attempt: status %d, error %q; want %d, %q", a.code(), a.errText(), tc.code, tc.errText)
			}
			for _, a := range d.Attempts[1:] {
				if ok := a.code() >= 200 && a.code() < 300; !ok && (a.code() != tc.code || a.errText() != tc.errText) {
					t.Errorf("attempt %+v differs from the first, status %d, error %q", a, tc.code, tc.errText)
				}
			}
			if tc.errText == "timeout after "+timeout.String() {
				for _, a := range d.Attempts {
					if got := time.Duration(a.DurationMS) * time.Millisecond; got < timeout-50*time.Millisecond || got > timeout+timingSlack {
						t.Errorf("attempt that timed out took %v, want about %v", got, timeout)
					}
				}
			}

			// The receiver saw every attempt, each with the same
			// webhook-id and a valid signature of its own timestamp.
			if h := receivers[i]; h != nil {
				got := h.requests()
				if tc.status != "pending" && len(got) != tc.attempts {
					t.Errorf("receiver got %d requests, want %d", len(got), tc.attempts)
				}
				if len(got) < len(d.Attempts) {
					t.Errorf("receiver got %d requests for %d attempts", len(got), len(d.Attempts))
				}
				for _, req := range got {
					if req.ID != d.ID {
						t.Errorf("request with webhook-id %s, want %s on every attempt", req.ID, d.ID)
					}
					checkHookHeaders(t, req, secret)
				}
			}

			// Each retry waits its delay of the policy (never less), within
			// the dispatcher's polling, and the delays grow.
			var prev time.Duration
			for k := 1; k < len(d.Attempts); k++ {
				gap := mustTime(t, d.Attempts[k].At).Sub(mustTime(t, d.Attempts[k-1].At))
				lo, hi := retryDelay(first, maxDelay, k)
				if tc.errText == "timeout after "+timeout.String() {
					// The attempt itself lasted the timeout.
					lo, hi = lo+timeout, hi+timeout
				}
				if gap < lo || gap > hi+dispatcherPoll+timingSlack {
					t.Errorf("retry %d came %v after the attempt before, want %v to %v (+%v polling)", k, gap, lo, hi, dispatcherPoll)
				}
				if gap < prev-dispatcherPoll {
					t.Errorf("retry %d came %v after the attempt before, sooner than retry %d (%v)", k, gap, k-1, prev)
				}
				prev = gap
			}
			t.Logf("%s: %d attempts, at %s", tc.name, len(d.Attempts), attemptTimes(t, d))
		})
	}
}

// attemptTimes describes when a delivery's attempts were made, relative to
// the first.
func attemptTimes(t *testing.T, d deliveryObject) string {
	t.Helper()
	var parts []string
	for _, a := range d.Attempts {
		parts = append(parts, mustTime(t, a.At).Sub(mustTime(t, d.Attempts[0].At)).Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

// failureNotice is the body a failure webhook receives.
type failureNotice struct {
	Event          string `json:"event"`
	DeliveryID     string `json:"delivery_id"`
	RequestID      string `json:"request_id"`
	WebhookURL     string `json:"webhook_url"`
	Attempts       int    `json:"attempts"`
	LastStatusCode *int   `json:"last_status_code"`
	LastError      string `json:"last_error"`
}

// failureKeys are all the keys of a failure notice.
var failureKeys = []string{"attempts", "delivery_id", "event", "last_error", "last_status_code", "request_id", "webhook_url"}

// decodeNotice decodes a failure notice and checks its keys.
func decodeNotice(t *testing.T, body []byte) failureNotice {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("failure notice %s: %v", body, err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, failureKeys) {
		t.Errorf("failure notice keys %v, want %v", keys, failureKeys)
	}
	var n failureNotice
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("failure notice %s: %v", body, err)
	}
	return n
}

// TestWebhookFailureNotification checks the failure webhook: a delivery
// that ends failed, at a 4xx or by giving up after 5xx or network errors,
// is reported to the account's failure_webhook with what went wrong; a
// failure webhook that fails is retried, but its failure is reported to
// nobody.
func TestWebhookFailureNotification(t *testing.T) {
	t.Parallel()
	const (
		maxDelay = 400 * time.Millisecond
		giveUp   = 1500 * time.Millisecond
	)
	src := okSource(t)
	reject := newHookReceiver(t, always(http.StatusUnprocessableEntity))
	down := newHookReceiver(t, always(http.StatusServiceUnavailable))
	refused := fmt.Sprintf("http://127.0.0.1:%d/refused", freePort(t))
	failures := newHookReceiver(t, always(http.StatusOK))
	badFailures := newHookReceiver(t, always(http.StatusInternalServerError))
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	%s
	%s
	task_type fail/reject {
		source %[3]s/reject
	}
	task_type fail/giveup {
		source %[3]s/giveup
	}
	task_type fail/refused {
		source %[3]s/refused
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 500ms
		retry 100ms %[4]v %[5]v
	}
}`,
			hookAccount("notified",
				fmt.Sprintf("webhook %s/reject {\n\t\ttypes fail/reject\n\t}", reject.url),
				fmt.Sprintf("webhook %s/down {\n\t\ttypes fail/giveup\n\t}", down.url),
				fmt.Sprintf("webhook %s {\n\t\ttypes fail/refused\n\t}", refused),
				fmt.Sprintf("failure_webhook %s/failures?from=taskgate", failures.url)),
			hookAccount("unlucky",
				fmt.Sprintf("webhook %s/unlucky", reject.url),
				fmt.Sprintf("failure_webhook %s/failures", badFailures.url)),
			src.url, maxDelay, giveUp),
		Sites: taskSite(port),
	})
	notified := hookClient(s, port, "notified")

	tests := []struct {
		name     string
		taskType string
		url      string
		receiver *hookReceiver // nil: nothing listens
		// attempts is the exact number of attempts, 0 for "more than one".
		attempts int
		code     int // 0 for null
		errText  string
	}{
		{"4xx", "fail/reject", reject.url + "/reject", reject, 1, 422, "422 Unprocessable Entity"},
		{"given up after 5xx", "fail/giveup", down.url + "/down", down, 0, 503, "503 Service Unavailable"},
		{"given up after network errors", "fail/refused", refused, nil, 0, 0, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := notified.createAsync(t, tc.taskType, "fail", "fail", `{}`)
			d := notified.waitDelivery(t, id, "", "failed", ended)
			if d.Status != "failed" || d.URL != tc.url {
				t.Fatalf("delivery %s, want failed, to %s", d.raw, tc.url)
			}
			switch {
			case tc.attempts > 0 && len(d.Attempts) != tc.attempts:
				t.Errorf("%d attempts, want %d", len(d.Attempts), tc.attempts)
			case tc.attempts == 0:
				if len(d.Attempts) < 2 {
					t.Errorf("given up after %d attempts, want retries first", len(d.Attempts))
				}
				// Given up when the next retry, at most maxDelay away, would
				// come after GIVEUP from the delivery's start: not sooner,
				// and no retry planned later (made within the dispatcher's
				// polling of its time).
				late := mustTime(t, d.last().At).Sub(mustTime(t, d.CreatedAt))
				if late < giveUp-maxDelay-50*time.Millisecond || late > giveUp+dispatcherPoll+timingSlack {
					t.Errorf("last attempt %v after the delivery was made, want within %v of the give-up at %v", late, maxDelay, giveUp)
				}
			}
			if tc.receiver != nil {
				if n := len(tc.receiver.withID(d.ID)); n != len(d.Attempts) {
					t.Errorf("receiver got %d requests, the delivery shows %d attempts", n, len(d.Attempts))
				}
			}

			failures.waitFor(t, "the failure notice of "+d.ID, func() bool {
				for _, r := range failures.got {
					if bytes.Contains(r.Body, []byte(d.ID)) && r.Status != 0 {
						return true
					}
				}
				return false
			})
			var notices []hookRequest
			for _, r := range failures.requests() {
				if bytes.Contains(r.Body, []byte(d.ID)) {
					notices = append(notices, r)
				}
			}
			if len(notices) != 1 {
				t.Fatalf("failure webhook got %d notices of %s, want 1", len(notices), d.ID)
			}
			req := notices[0]
			checkHookHeaders(t, req, "")
			if req.Path != "/failures" || req.Query != "from=taskgate" {
				t.Errorf("notice sent to %s?%s, want /failures?from=taskgate", req.Path, req.Query)
			}
			if req.ID == d.ID {
				t.Errorf("the notice has the webhook-id of the failed delivery")
			}
			n := decodeNotice(t, req.Body)
			var code int
			if n.LastStatusCode != nil {
				code = *n.LastStatusCode
				if code == 0 {
					t.Errorf("last_status_code 0, want null when there was no answer")
				}
			}
			if n.Event != "webhook.failed" || n.DeliveryID != d.ID || n.RequestID != id || n.WebhookURL != tc.url ||
				n.Attempts != len(d.Attempts) || code != tc.code || n.LastError != tc.errText {
				t.Errorf("notice %s, want webhook.failed of delivery %s, request %s, %s, %d attempts, last %d %q",
					req.Body, d.ID, id, tc.url, len(d.Attempts), tc.code, tc.errText)
			}
			if n.LastError != d.last().errText() || code != d.last().code() {
				t.Errorf("notice's last attempt %d %q, the delivery's %d %q", code, n.LastError, d.last().code(), d.last().errText())
			}

			// The notice is a delivery of its own, to be seen in the API.
			nd := notified.waitDelivery(t, id, "webhook.failed", "the notice delivered", ended)
			if nd.Status != "delivered" || nd.ID != req.ID || !strings.HasSuffix(nd.URL, "/failures?from=taskgate") {
				t.Errorf("notice delivery %s, want delivered with webhook-id %s", nd.raw, req.ID)
			}
		})
	}

	t.Run("failing failure webhook", func(t *testing.T) {
		t.Parallel()
		unlucky := hookClient(s, port, "unlucky")
		id := unlucky.createAsync(t, "fail/reject", "fail", "fail", `{}`)
		d := unlucky.waitDelivery(t, id, "", "failed", ended)
		if d.Status != "failed" {
			t.Fatalf("delivery %s, want failed", d.raw)
		}
		nd := unlucky.waitDelivery(t, id, "webhook.failed", "the notice failed", ended)
		if nd.Status != "failed" || len(nd.Attempts) < 2 {
			t.Errorf("notice delivery %s: want failed after retries", nd.raw)
		}
		// A notice of the notice would have been stored with its end.
		if ds := unlucky.deliveries(t, "request_id="+id); len(ds) != 2 {
			t.Errorf("%d deliveries of the task, want the delivery and one notice:\n%s", len(ds), describeDeliveries(ds))
		}
		got := badFailures.requests()
		for _, r := range got {
			if r.ID != nd.ID {
				t.Errorf("failure webhook got webhook-id %s, want only the notice's %s", r.ID, nd.ID)
			}
		}
		if len(got) != len(nd.Attempts) {
			t.Errorf("failure webhook got %d requests, the notice shows %d attempts", len(got), len(nd.Attempts))
		}
		if len(got) == 0 {
			t.Fatal("the failure webhook got nothing")
		}
		n := decodeNotice(t, got[0].Body)
		if n.DeliveryID != d.ID || n.Attempts != 1 || n.LastStatusCode == nil || *n.LastStatusCode != 422 {
			t.Errorf("notice %s, want delivery %s's 422 after 1 attempt", got[0].Body, d.ID)
		}
	})
}

// TestWebhookDeliveriesAPI checks the deliveries API with each storage:
// listings by request and by status with every attempt, accounts that see
// only their own deliveries, and a retry that delivers again under the
// same webhook-id.
func TestWebhookDeliveriesAPI(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testWebhookDeliveriesAPI)
}

func testWebhookDeliveriesAPI(t *testing.T, storage string) {
	src := okSource(t)
	// flaky refuses each delivery once, then takes it.
	flaky := newHookReceiver(t, failFirst(1, http.StatusBadRequest))
	stuck := newHookReceiver(t, always(http.StatusServiceUnavailable))
	port := freePort(t)
	s := newServer(t)
	storage = s.storageOption(storage)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage %s
	%s
	%s
	task_type api/flaky {
		source %[4]s/flaky
	}
	task_type api/stuck {
		source %[4]s/stuck
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 500ms
		retry 100ms 400ms 1m
	}
}`, storage,
			hookAccount("alice",
				fmt.Sprintf("webhook %s/alice {\n\t\ttypes api/flaky\n\t}", flaky.url),
				fmt.Sprintf("webhook %s/alice {\n\t\ttypes api/stuck\n\t}", stuck.url)),
			hookAccount("bob", fmt.Sprintf("webhook %s/bob", flaky.url)),
			src.url),
		Sites: taskSite(port),
	})
	alice, bob := hookClient(s, port, "alice"), hookClient(s, port, "bob")

	flakyID := alice.createAsync(t, "api/flaky", "flaky", "api", `{}`)
	stuckID := alice.createAsync(t, "api/stuck", "stuck", "api", `{}`)
	bobID := bob.createAsync(t, "api/flaky", "bob", "api", `{}`)
	failed := alice.waitDelivery(t, flakyID, "", "failed", ended)
	if failed.Status != "failed" || failed.RequestID != flakyID || failed.URL != flaky.url+"/alice" || len(failed.Attempts) != 1 {
		t.Fatalf("delivery %s: want failed after one attempt, of %s to %s/alice", failed.raw, flakyID, flaky.url)
	}
	a := failed.Attempts[0]
	if a.code() != 400 || a.errText() != "400 Bad Request" {
		t.Errorf("attempt %s: want status_code 400, error \"400 Bad Request\"", failed.raw)
	}
	if d := time.Since(mustTime(t, a.At)); d < 0 || d > time.Minute {
		t.Errorf("attempt at %s is not now", a.At)
	}
	pending := alice.waitDelivery(t, stuckID, "", "an attempt", func(d deliveryObject) bool { return len(d.Attempts) >= 1 })
	if pending.Status != "pending" || pending.last().code() != 503 {
		t.Fatalf("delivery %s: want pending after a 503", pending.raw)
	}
	bobs := bob.waitDelivery(t, bobID, "", "failed", ended)

	ids := func(ds []deliveryObject) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = d.ID
		}
		return out
	}
	listings := []struct {
		name  string
		c     taskClient
		query string
		// has and hasNot are delivery ids the listing must and must not
		// show.
		has, hasNot []string
		// exact: the listing shows has and nothing else.
		exact bool
	}{
		{"by request", alice, "request_id=" + flakyID, []string{failed.ID}, nil, true},
		{"by request and status", alice, "request_id=" + flakyID + "&status=failed", []string{failed.ID}, nil, true},
		{"by request, other status", alice, "request_id=" + flakyID + "&status=delivered", nil, nil, true},
		{"failed", alice, "status=failed", []string{failed.ID}, []string{pending.ID, bobs.ID}, false},
		{"pending", alice, "status=pending", []string{pending.ID}, []string{failed.ID, bobs.ID}, false},
		{"delivered", alice, "status=delivered", nil, []string{failed.ID, pending.ID, bobs.ID}, false},
		{"unknown request", alice, "request_id=00000000-0000-4000-8000-000000000000", nil, nil, true},
		{"other account's request", bob, "request_id=" + flakyID, nil, nil, true},
		{"other account, failed", bob, "status=failed", []string{bobs.ID}, []string{failed.ID}, true},
		{"other account, pending", bob, "status=pending", nil, []string{pending.ID}, false},
	}
	for _, l := range listings {
		t.Run(l.name, func(t *testing.T) {
			got := ids(l.c.deliveries(t, l.query))
			for _, id := range l.has {
				if !slices.Contains(got, id) {
					t.Errorf("?%s lacks %s: %v", l.query, id, got)
				}
			}
			for _, id := range l.hasNot {
				if slices.Contains(got, id) {
					t.Errorf("?%s shows %s: %v", l.query, id, got)
				}
			}
			if l.exact && len(got) != len(l.has) {
				t.Errorf("?%s: %v, want exactly %v", l.query, got, l.has)
			}
		})
	}

	t.Run("bad requests", func(t *testing.T) {
		base := alice.url("/v3/webhooks/deliveries")
		tests := []struct {
			name, method, url string
			c                 taskClient
			status            int
			code              string
		}{
			{"unknown status", http.MethodGet, base + "?status=lost", alice, 400, "BAD_REQUEST"},
			{"empty status", http.MethodGet, base + "?status=", alice, 400, "BAD_REQUEST"},
			{"no filter", http.MethodGet, base, alice, 400, "BAD_REQUEST"},
			{"retry of another account's delivery", http.MethodPost, base + "/" + failed.ID + "/retry", bob, 404, "NOT_FOUND"},
			{"retry of an unknown delivery", http.MethodPost, base + "/msg_0000000000000000000000/retry", alice, 404, "NOT_FOUND"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, tc.c.s.do(t, tc.method, tc.url, tc.c.auth, nil), tc.status, tc.code)
			})
		}
	})

	// Bob's failed retry changed nothing; Alice's own retry delivers again.
	if d := alice.deliveries(t, "request_id="+flakyID); len(d) != 1 || d[0].Status != "failed" || len(d[0].Attempts) != 1 {
		t.Fatalf("after another account's retry: %s", describeDeliveries(d))
	}
	r := s.do(t, http.MethodPost, alice.url("/v3/webhooks/deliveries/"+failed.ID+"/retry"), alice.auth, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s, want 202", r.status, r.body)
	}
	if d := decodeDelivery(t, r.body); d.ID != failed.ID || d.Status != "pending" {
		t.Errorf("retry answered %s, want the delivery, pending", r.body)
	}
	done := alice.waitDelivery(t, flakyID, "", "delivered", hasStatus("delivered"))
	if len(done.Attempts) != 2 || done.Attempts[1].code() != 200 || done.Attempts[1].Error != nil {
		t.Errorf("delivery after its retry: %s, want a second attempt answered 200", done.raw)
	}
	got := flaky.withID(failed.ID)
	if len(got) != 2 || got[0].Status != 400 || got[1].Status != 200 || !bytes.Equal(got[0].Body, got[1].Body) {
		t.Errorf("receiver got %d requests with webhook-id %s, want the 400 and the 200 retry with the same body", len(got), failed.ID)
	}
	if ds := alice.deliveries(t, "status=failed"); slices.Contains(ids(ds), failed.ID) {
		t.Errorf("?status=failed still shows the delivered %s", failed.ID)
	}
	if ds := alice.deliveries(t, "status=delivered"); !slices.Contains(ids(ds), failed.ID) {
		t.Errorf("?status=delivered lacks %s", failed.ID)
	}
}

// TestWebhookSlowReceiver checks that a receiver that never answers holds
// only its own deliveries: another webhook of the same tasks gets all of
// its deliveries while the slow one's are still hanging.
func TestWebhookSlowReceiver(t *testing.T) {
	t.Parallel()
	const tasks = 20
	src := okSource(t)
	slow := newHookReceiver(t, hang)
	fast := newHookReceiver(t, always(http.StatusOK))
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	%s
	task_type slow/pan {
		source %s/pan
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 30s
		retry 100ms 400ms 1m
	}
}`, hookAccount("slow", "webhook "+slow.url+"/slow", "webhook "+fast.url+"/fast"), src.url),
		Sites: taskSite(port),
	})
	c := hookClient(s, port, "slow")
	// The slow receiver holds its first delivery before the load starts.
	c.createAsync(t, "slow/pan", "first", "slow", `{}`)
	slow.waitRequests(t, 1)
	start := time.Now()
	for i := range tasks {
		c.createAsync(t, "slow/pan", fmt.Sprintf("t-%d", i), "slow", `{}`)
	}
	fast.waitFor(t, fmt.Sprintf("%d deliveries", tasks+1), func() bool {
		seen := map[string]bool{}
		for _, r := range fast.got {
			if r.Status == http.StatusOK {
				seen[r.ID] = true
			}
		}
		return len(seen) == tasks+1
	})
	took := time.Since(start)
	slow.mu.Lock()
	held, slowGot := slow.inFlight, len(slow.got)
	answered := 0
	for _, r := range slow.got {
		if r.Status != 0 {
			answered++
		}
	}
	slow.mu.Unlock()
	t.Logf("%d fast deliveries in %v while the slow receiver holds %d of the %d requests it got", tasks+1, took.Round(time.Millisecond), held, slowGot)
	if held == 0 || answered != 0 {
		t.Errorf("slow receiver: %d requests held, %d answered; want it still holding every one", held, answered)
	}
	if slowGot >= tasks+1 {
		t.Errorf("slow receiver got %d requests at once: want its deliveries capped while it hangs", slowGot)
	}
	c.waitDeliveries(t, "status=delivered", fmt.Sprintf("%d delivered", tasks+1), func(ds []deliveryObject) bool {
		return len(ds) == tasks+1
	})
	if ds := c.deliveries(t, "status=pending"); len(ds) != tasks+1 {
		t.Errorf("%d deliveries pending, want the slow receiver's %d", len(ds), tasks+1)
	}
}

// forwardProxy is an HTTP forward proxy on 127.0.0.1: it takes requests in
// absolute form, forwards them with a Via header and passes the answer
// back.
type forwardProxy struct {
	url string

	mu        sync.Mutex
	forwarded []string
}

func newForwardProxy(t *testing.T) *forwardProxy {
	t.Helper()
	p := &forwardProxy{}
	transport := &http.Transport{Proxy: nil}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() || r.Method == http.MethodConnect {
			http.Error(w, "this proxy forwards absolute-form http requests only", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.forwarded = append(p.forwarded, r.Method+" "+r.URL.String())
		p.mu.Unlock()
		out, err := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out.Header = r.Header.Clone()
		for _, h := range []string{"Connection", "Proxy-Connection", "Proxy-Authorization", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
			out.Header.Del(h)
		}
		out.Header.Add("Via", "1.1 test-proxy")
		out.ContentLength = r.ContentLength
		resp, err := transport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	p.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		transport.CloseIdleConnections()
	})
	return p
}

func (p *forwardProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.forwarded)
}

// TestWebhookProxy checks `webhooks { proxy … }`: every delivery, failure
// notices too, goes through the egress proxy, signed as without it.
func TestWebhookProxy(t *testing.T) {
	t.Parallel()
	const tasks = 5
	src := okSource(t)
	proxy := newForwardProxy(t)
	ok := newHookReceiver(t, always(http.StatusOK))
	reject := newHookReceiver(t, always(http.StatusBadRequest))
	failures := newHookReceiver(t, always(http.StatusNoContent))
	secret := newSecret(t, 32)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	%s
	task_type proxy/ok {
		source %[2]s/ok
	}
	task_type proxy/reject {
		source %[2]s/reject
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 2s
		retry 100ms 400ms 1m
		proxy %[3]s
	}
}`, hookAccount("proxied",
			fmt.Sprintf("webhook %s/ok {\n\t\tsecret %s\n\t\ttypes proxy/ok\n\t}", ok.url, secret),
			fmt.Sprintf("webhook %s/reject {\n\t\ttypes proxy/reject\n\t}", reject.url),
			"failure_webhook "+failures.url+"/failures"),
			src.url, proxy.url),
		Sites: taskSite(port),
	})
	c := hookClient(s, port, "proxied")
	var ids []string
	for i := range tasks {
		ids = append(ids, c.createAsync(t, "proxy/ok", fmt.Sprintf("ok-%d", i), "proxy", `{}`))
	}
	rejected := c.createAsync(t, "proxy/reject", "reject", "proxy", `{}`)
	for _, id := range ids {
		if d := c.waitDelivery(t, id, "", "delivered", ended); d.Status != "delivered" {
			t.Errorf("delivery %s, want delivered through the proxy", d.raw)
		}
	}
	if d := c.waitDelivery(t, rejected, "webhook.failed", "the failure notice delivered", ended); d.Status != "delivered" {
		t.Errorf("failure notice %s, want delivered through the proxy", d.raw)
	}

	total := 0
	for _, h := range []*hookReceiver{ok, reject, failures} {
		for _, r := range h.requests() {
			total++
			if via := r.Header.Get("Via"); via != "1.1 test-proxy" {
				t.Errorf("request to %s came with Via %q: not through the proxy", r.Path, via)
			}
			if h == ok {
				checkHookHeaders(t, r, secret)
			}
		}
	}
	forwarded := proxy.requests()
	if want := tasks + 2; total != want || len(forwarded) != want {
		t.Errorf("receivers got %d requests and the proxy forwarded %d, want %d each:\n%s", total, len(forwarded), want, strings.Join(forwarded, "\n"))
	}
}

// TestWebhookConfigErrors checks that bad webhook settings fail `taskgate
// validate` with a message that names the line, and never repeat a bad
// secret.
func TestWebhookConfigErrors(t *testing.T) {
	t.Parallel()
	const (
		badSecret   = "whsec_not*base64*at*all"
		plainSecret = "c3VwZXItc2VjcmV0LXZhbHVlLW9mLWF0LWxlYXN0LTI0"
	)
	tests := []struct {
		name  string
		lines string // in an account block
		// phrase must appear in the output; secret must not.
		phrase, secret string
		global         bool // lines go in the taskgate block instead
		// noLine is set for errors found when the config is provisioned,
		// after adapting: they cannot name a line.
		noLine bool
	}{
		{name: "relative webhook URL", lines: "webhook /hooks # <- error", phrase: `webhook URL "/hooks": must be an absolute http:// or https:// URL`},
		{name: "webhook URL without scheme", lines: "webhook hooks.example.com/tasks # <- error", phrase: `webhook URL "hooks.example.com/tasks": must be an absolute`},
		{name: "ftp webhook URL", lines: "webhook ftp://hooks.example.com/tasks # <- error", phrase: `webhook URL "ftp://hooks.example.com/tasks": must be an absolute`},
		{name: "webhook URL without host", lines: "webhook http:///tasks # <- error", phrase: `must be an absolute http:// or https:// URL`},
		{name: "secret not base64", lines: "webhook https://hooks.example.com {\n\tsecret " + badSecret + " # <- error\n}",
			phrase: "webhook secret is not whsec_ followed by base64", secret: badSecret},
		{name: "secret without whsec_", lines: "webhook https://hooks.example.com {\n\tsecret " + plainSecret + " # <- error\n}",
			phrase: "webhook secret must start with whsec_", secret: plainSecret},
		{name: "secret too short", lines: "webhook https://hooks.example.com {\n\tsecret whsec_c2hvcnQtc2VjcmV0 # <- error\n}",
			phrase: "webhook secret is 12 bytes, want 24 to 64", secret: "c2hvcnQtc2VjcmV0"},
		{name: "unknown webhook option", lines: "webhook https://hooks.example.com {\n\tretries 3 # <- error\n}", phrase: `unknown option "retries"`},
		{name: "bad webhook type", lines: "webhook https://hooks.example.com {\n\ttypes pan # <- error\n}", phrase: `task type "pan": want action/type`},
		{name: "bad failure webhook", lines: "failure_webhook mailto:ops@example.com # <- error", phrase: `failure_webhook: webhook URL "mailto:ops@example.com"`},
		{name: "bad proxy", global: true, lines: "webhooks {\n\tproxy socks5://127.0.0.1:1080 # <- error\n}", phrase: `proxy: webhook URL "socks5://127.0.0.1:1080"`},
		{name: "retry first above max", global: true, lines: "webhooks {\n\tretry 2m 1m 1h # <- error\n}", phrase: "retry: the first delay must not exceed the max delay"},
		{name: "retry without give-up", global: true, lines: "webhooks {\n\tretry 2s 1h # <- error\n}", phrase: "retry: want <first delay> <max delay> <give up after>"},
		{name: "secret from an unset environment variable", noLine: true,
			lines:  "webhook https://hooks.example.com {\n\tsecret {env.TG_TEST_SURELY_UNSET_SECRET}\n}",
			phrase: "account a: webhook https://hooks.example.com: secret is empty (is its environment variable set?)"},
		{name: "authorization from an unset environment variable", noLine: true,
			lines:  "webhook https://hooks.example.com {\n\tauthorization {env.TG_TEST_SURELY_UNSET_TOKEN}\n}",
			phrase: "account a: webhook https://hooks.example.com: authorization is empty (is its environment variable set?)"},
		{name: "zero timeout", global: true, lines: "webhooks {\n\ttimeout 0s # <- error\n}", phrase: `timeout "0s": want a positive duration`},
		{name: "webhook of a type not defined", noLine: true,
			lines:  "webhook https://hooks.example.com {\n\ttypes verify/pann\n}",
			phrase: "account a: webhook https://hooks.example.com: task type verify/pann is not defined by a task_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			account, global := "\t\t\t"+strings.ReplaceAll(tc.lines, "\n", "\n\t\t\t"), ""
			if tc.global {
				account, global = "", "\t\t"+strings.ReplaceAll(tc.lines, "\n", "\n\t\t")
			}
			caddyfile := fmt.Sprintf("{\n\ttaskgate {\n\t\taccount a {\n\t\t\tkey key-a\n%s\n\t\t}\n%s\n\t}\n}\n", account, global)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "Caddyfile"), caddyfile)
			out, errOut, code := taskgateCmd(t, dir, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
			all := logText(out + errOut)
			if code == 0 {
				t.Fatalf("validate succeeded, want an error:\n%s\n%s", caddyfile, all)
			}
			if !strings.Contains(all, tc.phrase) {
				t.Errorf("output lacks %q:\n%s", tc.phrase, all)
			}
			if tc.secret != "" && strings.Contains(out+errOut, tc.secret) {
				t.Errorf("output repeats the secret:\n%s", all)
			}
			if tc.noLine {
				return
			}
			line := 0
			for i, l := range strings.Split(caddyfile, "\n") {
				if strings.Contains(l, errorMark) {
					line = i + 1
				}
			}
			if want := fmt.Sprintf("Caddyfile:%d", line); !containsLineRef(all, want) {
				t.Errorf("output does not name %s:\n%s\n%s", want, caddyfile, all)
			}
		})
	}

	t.Run("valid config", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "Caddyfile"), fmt.Sprintf(`{
	taskgate {
		account a {
			key key-a
			webhook https://hooks.example.com/tasks?tenant=a {
				secret %s
				authorization "Bearer s3cret"
				types verify_with_source/ind_pan
			}
			webhook http://127.0.0.1:9/all {
				secret whsec_c3VwZXItc2VjcmV0LXZhbHVlLW9mLWF0LWxlYXN0LTI0
			}
			failure_webhook https://hooks.example.com/failures
		}
		task_type verify_with_source/ind_pan {
			source http://127.0.0.1:9/pan
		}
		webhooks {
			allow_private 127.0.0.1/32 ::1/128
			timeout 15s
			retry 2s 1h 24h
			proxy http://127.0.0.1:3128
		}
	}
}
`, specSecret))
		out, errOut, code := taskgateCmd(t, dir, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
		if code != 0 || !strings.Contains(out+errOut, "Valid configuration") {
			t.Errorf("validate: exit %d, want 0 and \"Valid configuration\":\n%s%s", code, out, errOut)
		}
	})
}
