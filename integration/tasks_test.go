package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// taskWait bounds how long a test waits for a task to end or for a source
// to be called.
const taskWait = 20 * time.Second

// uuidPattern matches a UUID in its canonical lowercase form.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// taskKeys are the keys of a task object: all of them, and no other.
var taskKeys = []string{"action", "completed_at", "created_at", "error", "group_id", "message",
	"request_id", "result", "status", "task_id", "type"}

// sourceKeys are the keys of the body a source receives.
var sourceKeys = []string{"action", "data", "group_id", "request_id", "task_id", "type"}

// taskSite is a site on port serving the task API behind the edge chain,
// as the demo Caddyfile does.
func taskSite(port int) string {
	return fmt.Sprintf(`
http://:%d {
	route /v3/* {
		api_key_auth
		ip_allowlist
		account_rate_limit
		task_api
	}
}`, port)
}

// sourceCall is one call a fakeSource received.
type sourceCall struct {
	Method      string
	Path        string
	ContentType string
	Body        []byte
	// RequestID is the body's request_id, "" when it has none.
	RequestID string
}

// fakeSource is a task source under the test's control: an HTTP server on
// 127.0.0.1 that records every call, counts the calls in flight and can
// hold calls until the test lets them through.
type fakeSource struct {
	url string
	srv *httptest.Server

	// pass hands one held call its turn; opened, once closed, lets every
	// held call and every later one go on.
	pass     chan struct{}
	opened   chan struct{}
	openOnce sync.Once

	observed
	calls       []sourceCall
	inFlight    int
	maxInFlight int
	// answered counts the calls whose answer is written.
	answered int
}

// sourceAnswer answers one call of a fakeSource; it may hold the call with
// f.hold.
type sourceAnswer func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall)

func newFakeSource(t *testing.T, answer sourceAnswer) *fakeSource {
	t.Helper()
	f := &fakeSource{
		pass:   make(chan struct{}),
		opened: make(chan struct{}),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		c := sourceCall{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body}
		var ids struct {
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(body, &ids) == nil {
			c.RequestID = ids.RequestID
		}
		f.update(func() {
			f.calls = append(f.calls, c)
			f.inFlight++
			f.maxInFlight = max(f.maxInFlight, f.inFlight)
		})
		defer f.update(func() {
			f.inFlight--
			f.answered++
		})
		answer(f, w, r, c)
	}))
	f.url = f.srv.URL
	t.Cleanup(func() {
		f.open()
		f.srv.Close()
	})
	return f
}

// hold blocks a call until the test lets it through (passOne, open) or its
// caller gives up, and tells whether the call may answer.
func (f *fakeSource) hold(r *http.Request) bool {
	select {
	case <-f.pass:
		return true
	case <-f.opened:
		return true
	case <-r.Context().Done():
		return false
	}
}

// passOne lets exactly one held call go on.
func (f *fakeSource) passOne(t *testing.T) {
	t.Helper()
	timer := time.NewTimer(taskWait)
	defer timer.Stop()
	select {
	case f.pass <- struct{}{}:
	case <-timer.C:
		t.Fatalf("source: no call held after %v", taskWait)
	}
}

// open lets every held call and every later one go on.
func (f *fakeSource) open() { f.openOnce.Do(func() { close(f.opened) }) }

// waitFor waits until cond, called with the source locked, holds.
func (f *fakeSource) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	f.observed.waitFor(t, "source: "+what, taskWait, cond)
}

// waitCalls waits until the source has received n calls in all.
func (f *fakeSource) waitCalls(t *testing.T, n int) {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("%d calls", n), func() bool { return len(f.calls) >= n })
}

// received returns the calls so far.
func (f *fakeSource) received() []sourceCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// hits returns how many calls carried the request id.
func (f *fakeSource) hits(requestID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.RequestID == requestID {
			n++
		}
	}
	return n
}

// answerJSON writes a source's answer.
func answerJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// taskObject is a task as the client API shows it.
type taskObject struct {
	Action      string          `json:"action"`
	Type        string          `json:"type"`
	Status      string          `json:"status"`
	TaskID      string          `json:"task_id"`
	GroupID     string          `json:"group_id"`
	RequestID   string          `json:"request_id"`
	CreatedAt   string          `json:"created_at"`
	CompletedAt *string         `json:"completed_at"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	Message     *string         `json:"message"`

	// raw is the object as it came.
	raw []byte
}

func (o taskObject) terminal() bool { return o.Status == "completed" || o.Status == "failed" }

// took is how long the task ran, from creation to completion.
func (o taskObject) took(t *testing.T) time.Duration {
	t.Helper()
	if o.CompletedAt == nil {
		t.Fatalf("task %s has not ended", o.RequestID)
	}
	return mustTime(t, *o.CompletedAt).Sub(mustTime(t, o.CreatedAt))
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q is not RFC 3339: %v", s, err)
	}
	return ts
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// decodeTask decodes a task object and checks its shape: exactly the keys
// of the contract, RFC 3339 times, and null fields until they are set.
func decodeTask(t *testing.T, raw []byte) taskObject {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("task %s: %v", raw, err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, taskKeys) {
		t.Errorf("task keys %v, want %v", keys, taskKeys)
	}
	var o taskObject
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("task %s: %v", raw, err)
	}
	o.raw = raw
	created := mustTime(t, o.CreatedAt)
	if !uuidPattern.MatchString(o.RequestID) {
		t.Errorf("request_id %q is not a UUID", o.RequestID)
	}
	switch o.Status {
	case "in_progress":
		if o.CompletedAt != nil || !isNull(o.Result) || o.Error != nil || o.Message != nil {
			t.Errorf("task in progress with completed_at, result, error or message set: %s", raw)
		}
	case "completed", "failed":
		if o.CompletedAt == nil {
			t.Errorf("task %s without completed_at: %s", o.Status, raw)
		} else if done := mustTime(t, *o.CompletedAt); done.Before(created) {
			t.Errorf("completed_at %s before created_at %s", *o.CompletedAt, o.CreatedAt)
		}
		if o.Status == "completed" && (o.Error != nil || o.Message != nil || !bytes.HasPrefix(o.Result, []byte("{"))) {
			t.Errorf("completed task with an error or without an object result: %s", raw)
		}
		if o.Status == "failed" && (o.Error == nil || o.Message == nil || *o.Error == "" || *o.Message == "") {
			t.Errorf("failed task without error and message: %s", raw)
		}
	default:
		t.Errorf("status %q, want in_progress, completed or failed", o.Status)
	}
	return o
}

// wantTasks checks that r is a 200 JSON array of task objects and returns
// them.
func wantTasks(t *testing.T, r response) []taskObject {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200 (body %s)", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(r.body, &raws); err != nil {
		t.Fatalf("body %s is not a JSON array: %v", r.body, err)
	}
	tasks := make([]taskObject, len(raws))
	for i, raw := range raws {
		tasks[i] = decodeTask(t, raw)
	}
	return tasks
}

// wantAccepted checks that r is 202 {"request_id":"<uuid>"} and nothing
// else, and returns the request id.
func wantAccepted(t *testing.T, r response) string {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202 (body %s)", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	id, ok := fields["request_id"].(string)
	if len(fields) != 1 || !ok || !uuidPattern.MatchString(id) {
		t.Fatalf("body %s, want exactly {\"request_id\":\"<uuid>\"}", r.body)
	}
	return id
}

// sameJSON tells whether got is want as the API writes JSON: compact, with
// <, > and & escaped, and otherwise byte for byte (key order, numbers).
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, []byte(want)); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return bytes.Equal(got, escaped.Bytes())
}

// createBody is the body of a create call.
func createBody(taskID, groupID, data string) string {
	b, err := json.Marshal(map[string]any{"task_id": taskID, "group_id": groupID, "data": json.RawMessage(data)})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// taskClient calls the task API of a server as one account.
type taskClient struct {
	s    *server
	port int
	auth http.Header
}

func (c taskClient) url(path string) string { return siteURL(c.port, path) }

// header returns the account's headers, a JSON content type and extra.
func (c taskClient) header(extra http.Header) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range c.auth {
		h[k] = v
	}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// post sends body to POST /v3/tasks/{mode}/{taskType}.
func (c taskClient) post(t *testing.T, mode, taskType, body string, extra http.Header) response {
	t.Helper()
	return c.s.do(t, http.MethodPost, c.url("/v3/tasks/"+mode+"/"+taskType), c.header(extra), strings.NewReader(body))
}

// createAsync creates a task and returns its request id.
func (c taskClient) createAsync(t *testing.T, taskType, taskID, groupID, data string) string {
	t.Helper()
	return wantAccepted(t, c.post(t, "async", taskType, createBody(taskID, groupID, data), nil))
}

// get sends GET /v3/tasks?query.
func (c taskClient) get(t *testing.T, query string) response {
	t.Helper()
	return c.s.get(t, c.url("/v3/tasks?"+query), c.auth)
}

// task returns the task with the request id, waiting up to wait seconds
// for it to end.
func (c taskClient) task(t *testing.T, requestID string, wait int) taskObject {
	t.Helper()
	q := "request_id=" + url.QueryEscape(requestID)
	if wait > 0 {
		q += fmt.Sprintf("&wait=%d", wait)
	}
	tasks := wantTasks(t, c.get(t, q))
	if len(tasks) != 1 || tasks[0].RequestID != requestID {
		t.Fatalf("GET request_id=%s: %d tasks, want the one asked for", requestID, len(tasks))
	}
	return tasks[0]
}

// list returns the tasks of a listing, by group_id or task_id.
func (c taskClient) list(t *testing.T, param, id string) []taskObject {
	t.Helper()
	return wantTasks(t, c.get(t, param+"="+url.QueryEscape(id)))
}

// waitTerminal long-polls the task until it has ended and returns it.
func (c taskClient) waitTerminal(t *testing.T, requestID string) taskObject {
	t.Helper()
	deadline := time.Now().Add(taskWait)
	for {
		o := c.task(t, requestID, 5)
		if o.terminal() {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after %v", requestID, o.Status, taskWait)
		}
	}
}

// stop sends sig to the process and waits for it to exit.
func (s *server) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("taskgate did not exit within 15s of %v", sig)
	}
}

// restart runs a new process on s's config file, directory and ports once
// s's process has exited, and returns it once it serves.
func (s *server) restart(t *testing.T) *server {
	t.Helper()
	if s.alive() {
		t.Fatal("restart: the process is still running")
	}
	log, err := os.CreateTemp(s.dir, "taskgate-*.log")
	if err != nil {
		t.Fatal(err)
	}
	log.Close()
	n := &server{
		t:         t,
		dir:       s.dir,
		storage:   s.storage,
		adminAddr: s.adminAddr,
		httpPort:  s.httpPort,
		httpsPort: s.httpsPort,
		env:       s.env,
		logPath:   log.Name(),
		client:    s.client,
	}
	n.run("--config", filepath.Join(s.dir, "Caddyfile"), "--adapter", "caddyfile")
	return n
}

// TestTaskLifecycle creates an asynchronous task and follows it: the 202,
// the task in progress while its source holds the call, what the source
// receives, and the completed task carrying the source's object.
func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	// Numbers as written, nesting, Unicode and characters JSON encoders
	// like to escape: the result must come back as the source wrote it.
	const result = `{"status": "id_found", "source_output": {"name_on_card": "Ⅹ <DEMO> & co", "pan": "ABCDE1234F",
		"big": 12345678901234567890, "ratio": 1.50, "tiny": 1e-7, "list": [1, "two", null, true, {}]}, "empty": {}}`
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, result)
		}
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	storage memory
	account alpha {
		key key-alpha
	}
	task_type verify_with_source/ind_pan {
		source %s/pan
		timeout 10s
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	const data = `{"id_number":"ABCDE1234F","name":"Demo User","dob":"1990-01-31","n":12345678901234567890}`
	id := c.createAsync(t, "verify_with_source/ind_pan", "task-1", "group-1", data)

	// Until the source answers, the task is in progress.
	o := c.task(t, id, 0)
	if o.Status != "in_progress" || o.Action != "verify_with_source" || o.Type != "ind_pan" ||
		o.TaskID != "task-1" || o.GroupID != "group-1" {
		t.Errorf("task in progress: %s", o.raw)
	}
	createdAt := o.CreatedAt
	if d := time.Since(mustTime(t, createdAt)); d < -time.Minute || d > time.Minute {
		t.Errorf("created_at %s is not now", o.CreatedAt)
	}

	src.waitCalls(t, 1)
	call := src.received()[0]
	if call.Method != http.MethodPost || call.Path != "/pan" || call.ContentType != "application/json" {
		t.Errorf("source call: %s %s, Content-Type %q; want POST /pan, application/json", call.Method, call.Path, call.ContentType)
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal(call.Body, &sent); err != nil {
		t.Fatalf("source body %s: %v", call.Body, err)
	}
	keys := make([]string, 0, len(sent))
	for k := range sent {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, sourceKeys) {
		t.Errorf("source body keys %v, want %v", keys, sourceKeys)
	}
	for k, v := range map[string]string{"request_id": id, "task_id": "task-1", "group_id": "group-1",
		"action": "verify_with_source", "type": "ind_pan"} {
		var got string
		if err := json.Unmarshal(sent[k], &got); err != nil || got != v {
			t.Errorf("source body %s = %s, want %q", k, sent[k], v)
		}
	}
	if !sameJSON(t, sent["data"], data) {
		t.Errorf("source body data = %s, want %s", sent["data"], data)
	}

	src.passOne(t)
	o = c.waitTerminal(t, id)
	if o.Status != "completed" || o.RequestID != id || o.TaskID != "task-1" || o.GroupID != "group-1" ||
		o.CreatedAt != createdAt {
		t.Errorf("completed task: %s", o.raw)
	}
	if !sameJSON(t, o.Result, result) {
		t.Errorf("result = %s, want the source's object %s", o.Result, result)
	}
	if src.hits(id) != 1 {
		t.Errorf("source called %d times for the task, want 1", src.hits(id))
	}

	// The listings show the same object.
	for _, param := range []string{"group_id=group-1", "task_id=task-1"} {
		name, val, _ := strings.Cut(param, "=")
		got := c.list(t, name, val)
		if len(got) != 1 || !bytes.Equal(got[0].raw, o.raw) {
			t.Errorf("GET ?%s: %d tasks, want the task as by request_id", param, len(got))
		}
	}
}

// TestTaskLongPoll checks `wait=N`: a poll answers as soon as the task
// ends, and after N seconds when it is still running.
func TestTaskLongPoll(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
		}
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	account alpha {
		key key-alpha
	}
	task_type poll/held {
		source %s/held
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	id := c.createAsync(t, "poll/held", "t", "g", `{}`)
	src.waitCalls(t, 1)

	t.Run("still running", func(t *testing.T) {
		start := time.Now()
		o := c.task(t, id, 1)
		took := time.Since(start)
		if o.Status != "in_progress" {
			t.Errorf("status %s, want in_progress", o.Status)
		}
		if took < time.Second || took > 4*time.Second {
			t.Errorf("wait=1 answered after %v, want about 1s", took)
		}
	})

	t.Run("ends during the poll", func(t *testing.T) {
		const wait = 10
		client := &http.Client{Timeout: 3 * wait * time.Second}
		defer client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, c.url(fmt.Sprintf("/v3/tasks?request_id=%s&wait=%d", id, wait)), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = c.header(nil)
		wrote := make(chan struct{})
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) },
		}))
		type answer struct {
			r   response
			at  time.Time
			err error
		}
		done := make(chan answer, 1)
		go func() {
			resp, err := client.Do(req)
			if err != nil {
				done <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			done <- answer{response{resp.StatusCode, resp.Header, b}, time.Now(), err}
		}()
		select {
		case <-wrote:
		case <-time.After(taskWait):
			t.Fatal("the poll was not sent")
		}
		select {
		case a := <-done:
			t.Fatalf("the poll answered before the task ended: %v %s", a.err, a.r.body)
		default:
		}
		released := time.Now()
		src.passOne(t)
		var a answer
		select {
		case a = <-done:
		case <-time.After(taskWait):
			t.Fatal("the poll did not answer")
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		tasks := wantTasks(t, a.r)
		if len(tasks) != 1 || tasks[0].Status != "completed" {
			t.Fatalf("poll answer %s, want the completed task", a.r.body)
		}
		if after := a.at.Sub(released); after < 0 || after > wait*time.Second/2 {
			t.Errorf("the poll answered %v after the source did, want at once", after)
		}
	})

	t.Run("already ended", func(t *testing.T) {
		start := time.Now()
		if o := c.task(t, id, 30); o.Status != "completed" {
			t.Errorf("status %s, want completed", o.Status)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("wait=30 on an ended task answered after %v, want at once", took)
		}
	})
}

// TestTaskSync checks synchronous calls: the task object when the task
// ends within sync_timeout, else 504 TIMEOUT naming the task, which goes on
// and can be polled.
func TestTaskSync(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		switch r.URL.Path {
		case "/slow":
			if !f.hold(r) {
				return
			}
			answerJSON(w, http.StatusOK, `{"status":"late"}`)
		case "/reject":
			answerJSON(w, http.StatusBadRequest, `{"error":"INVALID_PAN","message":"no such PAN"}`)
		default:
			answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
		}
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	sync_timeout 1s
	account alpha {
		key key-alpha
	}
	task_type sync/fast {
		source %[1]s/fast
	}
	task_type sync/reject {
		source %[1]s/reject
	}
	task_type sync/slow {
		source %[1]s/slow
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}

	done := []struct {
		taskType, status, result, error string
	}{
		{"sync/fast", "completed", `{"status":"id_found"}`, ""},
		{"sync/reject", "failed", "null", "INVALID_PAN"},
	}
	for _, tc := range done {
		t.Run(tc.taskType, func(t *testing.T) {
			r := c.post(t, "sync", tc.taskType, createBody("t-"+tc.taskType, "g", `{"x":1}`), nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200 (body %s)", r.status, r.body)
			}
			o := decodeTask(t, r.body)
			if o.Status != tc.status || string(o.Result) != tc.result || (tc.error != "" && *o.Error != tc.error) {
				t.Errorf("sync answer %s, want %s with result %s", r.body, tc.status, tc.result)
			}
			if polled := c.task(t, o.RequestID, 0); !bytes.Equal(polled.raw, bytes.TrimSpace(r.body)) {
				t.Errorf("polled %s, want the sync answer %s", polled.raw, r.body)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r := c.post(t, "sync", "sync/slow", createBody("t-slow", "g", `{}`), nil)
		took := time.Since(start)
		if r.status != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504 (body %s)", r.status, r.body)
		}
		if took < time.Second || took > 5*time.Second {
			t.Errorf("504 after %v, want after sync_timeout 1s", took)
		}
		var fields map[string]any
		if err := json.Unmarshal(r.body, &fields); err != nil {
			t.Fatalf("body %s: %v", r.body, err)
		}
		id, _ := fields["request_id"].(string)
		msg, _ := fields["message"].(string)
		if len(fields) != 3 || fields["error"] != "TIMEOUT" || msg == "" || !uuidPattern.MatchString(id) {
			t.Fatalf("body %s, want exactly {\"error\":\"TIMEOUT\",\"message\",\"request_id\"}", r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if o := c.task(t, id, 0); o.Status != "in_progress" {
			t.Errorf("after the 504 the task is %s, want in_progress", o.Status)
		}
		src.passOne(t)
		o := c.waitTerminal(t, id)
		if o.Status != "completed" || string(o.Result) != `{"status":"late"}` {
			t.Errorf("task after the 504: %s", o.raw)
		}
	})
}

// TestTaskSourceOutcomes maps every kind of source answer to the task's end
// over real HTTP: a result, a rejection with the source's error, and the
// many ways of being down; then opens the circuit of a source that keeps
// failing.
func TestTaskSourceOutcomes(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		switch p := strings.TrimPrefix(r.URL.Path, "/"); p {
		case "created":
			answerJSON(w, http.StatusCreated, `{"status":"id_found"}`)
		case "reject_json":
			answerJSON(w, http.StatusBadRequest, `{"error":"INVALID_PAN","message":"the PAN does not exist"}`)
		case "reject_code_only":
			answerJSON(w, http.StatusUnprocessableEntity, `{"error":"BAD_DOB"}`)
		case "reject_html":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "<html>nope</html>")
		case "s500", "s503", "s408", "s429":
			code, _ := strconv.Atoi(p[1:])
			answerJSON(w, code, `{"error":"X","message":"not a verdict"}`)
		case "not_json":
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>maintenance</html>")
		case "array":
			answerJSON(w, http.StatusOK, `[{"status":"id_found"}]`)
		case "redirect":
			http.Redirect(w, r, "/created", http.StatusFound)
		case "hang", "breaker":
			<-r.Context().Done()
		default:
			answerJSON(w, http.StatusOK, `{"unexpected":true}`)
		}
	})
	refused := freePort(t) // nothing listens there
	sourceDown := `{"pan_result":{"status":"source_down"}}`
	tests := []struct {
		name    string
		source  string
		extra   string // more task_type options
		status  string
		error   string
		message string // "" for any
		result  string
	}{
		{"created", src.url + "/created", "", "completed", "", "", `{"status":"id_found"}`},
		{"reject_json", src.url + "/reject_json", "", "failed", "INVALID_PAN", "the PAN does not exist", "null"},
		{"reject_code_only", src.url + "/reject_code_only", "", "failed", "BAD_DOB", "Unprocessable Entity", "null"},
		{"reject_html", src.url + "/reject_html", "", "failed", "UNPROCESSABLE_ENTITY", "Not Found", "null"},
		{"s500", src.url + "/s500", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"s503", src.url + "/s503", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"s408", src.url + "/s408", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"s429", src.url + "/s429", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"not_json", src.url + "/not_json", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"array", src.url + "/array", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"redirect", src.url + "/redirect", "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"refused", fmt.Sprintf("http://127.0.0.1:%d/refused", refused), "", "failed", "SOURCE_DOWN", "", sourceDown},
		{"timeout", src.url + "/hang", "timeout 500ms", "failed", "SOURCE_DOWN", "", sourceDown},
		{"default_key", src.url + "/s500", "", "failed", "SOURCE_DOWN", "", `{"source_output":{"status":"source_down"}}`},
	}
	var types strings.Builder
	for _, tc := range tests {
		outputKey := "output_key pan_result"
		if tc.name == "default_key" {
			outputKey = ""
		}
		fmt.Fprintf(&types, "\ttask_type outcome/%s {\n\t\tsource %s\n\t\t%s\n\t\t%s\n\t}\n", tc.name, tc.source, tc.extra, outputKey)
	}
	// The breaker's source hangs until the call times out: five calls in
	// flight at once fail together and open its circuit.
	fmt.Fprintf(&types, "\ttask_type outcome/breaker {\n\t\tsource %s/breaker\n\t\ttimeout 1s\n\t\tconcurrency 5\n\t\toutput_key pan_result\n\t}\n", src.url)
	port := freePort(t)
	s := startServer(t, config{
		Global: `
taskgate {
	account alpha {
		key key-alpha
		rate_limit 1000/s
	}
` + types.String() + `}`,
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}

	t.Run("mapping", func(t *testing.T) {
		ids := make([]string, len(tests))
		for i, tc := range tests {
			ids[i] = c.createAsync(t, "outcome/"+tc.name, "t-"+tc.name, "g-outcomes", `{"pan":"ABCDE1234F"}`)
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				o := c.waitTerminal(t, ids[i])
				switch {
				case o.Status != tc.status:
					t.Errorf("status %s, want %s (%s)", o.Status, tc.status, o.raw)
				case tc.error != "" && *o.Error != tc.error:
					t.Errorf("error %s, want %s (%s)", *o.Error, tc.error, o.raw)
				case tc.message != "" && *o.Message != tc.message:
					t.Errorf("message %q, want %q (%s)", *o.Message, tc.message, o.raw)
				case string(o.Result) != tc.result:
					t.Errorf("result %s, want %s", o.Result, tc.result)
				}
			})
		}
	})

	t.Run("circuit breaker", func(t *testing.T) {
		calls := func() int {
			n := 0
			for _, call := range src.received() {
				if call.Path == "/breaker" {
					n++
				}
			}
			return n
		}
		var first []string
		for i := range 5 {
			first = append(first, c.createAsync(t, "outcome/breaker", fmt.Sprintf("b-%d", i), "g-breaker", `{}`))
		}
		for _, id := range first {
			if o := c.waitTerminal(t, id); o.Error == nil || *o.Error != "SOURCE_DOWN" {
				t.Fatalf("task %s: %s, want SOURCE_DOWN", id, o.raw)
			}
		}
		if n := calls(); n != 5 {
			t.Fatalf("source called %d times for 5 tasks, want 5", n)
		}
		// The circuit is open: tasks fail at once, without the 1s timeout
		// a call would take, and the source is not called.
		var later []string
		for i := range 5 {
			later = append(later, c.createAsync(t, "outcome/breaker", fmt.Sprintf("b-later-%d", i), "g-breaker", `{}`))
		}
		for _, id := range later {
			o := c.waitTerminal(t, id)
			if o.Status != "failed" || o.Error == nil || *o.Error != "SOURCE_DOWN" || string(o.Result) != sourceDown {
				t.Errorf("task with the circuit open: %s, want failed SOURCE_DOWN", o.raw)
			}
			if took := o.took(t); took >= time.Second {
				t.Errorf("task with the circuit open took %v, want less than the source timeout", took)
			}
		}
		if n := calls(); n != 5 {
			t.Errorf("source called %d times after its circuit opened, want still 5", n)
		}
	})
}

// TestTaskConcurrency holds every source call and lets them through one at
// a time: a task type with concurrency 2 never has more than 2 calls in
// flight, and always 2 while tasks are queued.
func TestTaskConcurrency(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
		}
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	account alpha {
		key key-alpha
	}
	task_type limited/two {
		source %s/two
		timeout 60s
		concurrency 2
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	const tasks = 10
	ids := make([]string, tasks)
	for i := range ids {
		ids[i] = c.createAsync(t, "limited/two", fmt.Sprintf("t-%d", i), "g", `{}`)
	}
	for passed := 0; passed < tasks; passed++ {
		started, inFlight := min(tasks, passed+2), min(2, tasks-passed)
		src.waitFor(t, fmt.Sprintf("%d calls started, %d in flight", started, inFlight), func() bool {
			return src.answered >= passed && len(src.calls) >= started && src.inFlight >= inFlight
		})
		src.mu.Lock()
		gotStarted, gotInFlight := len(src.calls), src.inFlight
		src.mu.Unlock()
		if gotStarted != started || gotInFlight != inFlight {
			t.Fatalf("after %d calls let through: %d calls started, %d in flight; want %d and %d",
				passed, gotStarted, gotInFlight, started, inFlight)
		}
		src.passOne(t)
	}
	for _, id := range ids {
		if o := c.waitTerminal(t, id); o.Status != "completed" {
			t.Errorf("task %s: %s", id, o.raw)
		}
	}
	src.mu.Lock()
	calls, most := len(src.calls), src.maxInFlight
	src.mu.Unlock()
	if calls != tasks || most != 2 {
		t.Errorf("%d calls, at most %d at once; want %d calls, at most 2", calls, most, tasks)
	}
}

// TestTaskAccounts checks what accounts see, with each storage: only the
// task types they may use, only their own tasks, and listings newest
// first, at most 100.
func TestTaskAccounts(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testTaskAccounts)
}

func testTaskAccounts(t *testing.T, storage string) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	port := freePort(t)
	s := newServer(t)
	storage = s.storageOption(storage)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage %[2]s
	account alpha {
		key key-alpha
		rate_limit 10000/s
		task_types acct/one
	}
	account beta {
		key key-beta
		rate_limit 10000/s
	}
	task_type acct/one {
		source %[1]s/one
	}
	task_type acct/two {
		source %[1]s/two
	}
}`, src.url, storage),
		Sites: taskSite(port),
	})
	alpha := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	beta := taskClient{s: s, port: port, auth: creds("beta", "key-beta")}

	t.Run("task types", func(t *testing.T) {
		tests := []struct {
			name   string
			c      taskClient
			mode   string
			typ    string
			status int
		}{
			{"alpha one", alpha, "async", "acct/one", http.StatusAccepted},
			{"alpha two", alpha, "async", "acct/two", http.StatusNotFound},
			{"alpha two sync", alpha, "sync", "acct/two", http.StatusNotFound},
			{"alpha undefined", alpha, "async", "acct/three", http.StatusNotFound},
			{"beta one", beta, "async", "acct/one", http.StatusAccepted},
			{"beta two", beta, "async", "acct/two", http.StatusAccepted},
			{"beta undefined", beta, "async", "nope/nope", http.StatusNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := tc.c.post(t, tc.mode, tc.typ, createBody("types", "types", `{}`), nil)
				if tc.status == http.StatusAccepted {
					wantAccepted(t, r)
				} else {
					wantError(t, r, tc.status, "NOT_FOUND")
				}
			})
		}
	})

	t.Run("isolation", func(t *testing.T) {
		// Both accounts use the same task and group ids.
		a := alpha.createAsync(t, "acct/one", "shared-task", "shared-group", `{"who":"alpha"}`)
		b := beta.createAsync(t, "acct/two", "shared-task", "shared-group", `{"who":"beta"}`)
		alpha.waitTerminal(t, a)
		beta.waitTerminal(t, b)
		// Ids that extend others or are their prefixes, and ids with
		// characters that need escaping, are ids of their own.
		odd := []string{"shared-group-more", "shared-task-more", "shared", "g & ü/☃ ?=%", "nul\x00byte"}
		for _, id := range odd {
			alpha.createAsync(t, "acct/one", id, id, `{}`)
		}
		for _, tc := range []struct {
			c        taskClient
			own, not string
		}{{alpha, a, b}, {beta, b, a}} {
			wantError(t, tc.c.get(t, "request_id="+tc.not), http.StatusNotFound, "NOT_FOUND")
			wantError(t, tc.c.get(t, "request_id="+tc.not+"&wait=1"), http.StatusNotFound, "NOT_FOUND")
			for _, param := range []string{"group_id", "task_id"} {
				got := tc.c.list(t, param, "shared-"+strings.TrimSuffix(param, "_id"))
				if len(got) != 1 || got[0].RequestID != tc.own {
					t.Errorf("%s listing by %s: %d tasks, want only its own", tc.c.auth.Get("Account-Id"), param, len(got))
				}
			}
		}
		for _, id := range odd {
			for _, param := range []string{"group_id", "task_id"} {
				if got := alpha.list(t, param, id); len(got) != 1 || (param == "group_id" && got[0].GroupID != id) ||
					(param == "task_id" && got[0].TaskID != id) {
					t.Errorf("listing by %s %q: %d tasks, want the one with that id", param, id, len(got))
				}
			}
		}
		wantError(t, alpha.get(t, "request_id=no-such-task"), http.StatusNotFound, "NOT_FOUND")
		if got := alpha.list(t, "group_id", "no-such-group"); len(got) != 0 {
			t.Errorf("unknown group: %d tasks, want none", len(got))
		}
	})

	t.Run("newest first, at most 100", func(t *testing.T) {
		const n = 105
		ids := make([]string, n)
		for i := range ids {
			ids[i] = alpha.createAsync(t, "acct/one", "many-task", "many-group", fmt.Sprintf(`{"i":%d}`, i))
		}
		// The other account's tasks with the same ids change nothing.
		beta.createAsync(t, "acct/two", "many-task", "many-group", `{}`)
		for _, param := range []string{"group_id", "task_id"} {
			got := alpha.list(t, param, "many-"+strings.TrimSuffix(param, "_id"))
			if len(got) != 100 {
				t.Fatalf("listing by %s: %d tasks, want 100", param, len(got))
			}
			for i, o := range got {
				if want := ids[n-1-i]; o.RequestID != want {
					t.Fatalf("listing by %s: task %d is %s, want %s (newest first)", param, i, o.RequestID, want)
				}
				if i > 0 && mustTime(t, o.CreatedAt).After(mustTime(t, got[i-1].CreatedAt)) {
					t.Errorf("listing by %s: created_at %s after %s", param, o.CreatedAt, got[i-1].CreatedAt)
				}
			}
		}
	})
}

// TestTaskIdempotency replays creates with an Idempotency-Key, with each
// storage: the same request gets the original request id and makes no
// task, another request with the key gets 422, concurrent first uses make
// one task, and keys are per account.
func TestTaskIdempotency(t *testing.T) {
	t.Parallel()
	forEachStorage(t, testTaskIdempotency)
}

func testTaskIdempotency(t *testing.T, storage string) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	port := freePort(t)
	s := newServer(t)
	storage = s.storageOption(storage)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage %[2]s
	account alpha {
		key key-alpha
		rate_limit 1000/s
	}
	account beta {
		key key-beta
	}
	task_type idem/one {
		source %[1]s/one
	}
	task_type idem/two {
		source %[1]s/two
	}
}`, src.url, storage),
		Sites: taskSite(port),
	})
	alpha := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	beta := taskClient{s: s, port: port, auth: creds("beta", "key-beta")}
	key := http.Header{"Idempotency-Key": {"order-7f3a"}}
	body := createBody("idem-task", "idem-group", `{"pan":"ABCDE1234F"}`)

	first := wantAccepted(t, alpha.post(t, "async", "idem/one", body, key))
	alpha.waitTerminal(t, first)
	if again := wantAccepted(t, alpha.post(t, "async", "idem/one", body, key)); again != first {
		t.Errorf("replay: request_id %s, want the original %s", again, first)
	}

	mismatches := []struct {
		name, mode, typ, body string
	}{
		{"other data", "async", "idem/one", createBody("idem-task", "idem-group", `{"pan":"ZZZZZ9999Z"}`)},
		{"other task_id", "async", "idem/one", createBody("idem-task-2", "idem-group", `{"pan":"ABCDE1234F"}`)},
		{"other type", "async", "idem/two", body},
		{"sync", "sync", "idem/one", body},
	}
	for _, tc := range mismatches {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, alpha.post(t, tc.mode, tc.typ, tc.body, key), http.StatusUnprocessableEntity, "IDEMPOTENCY_MISMATCH")
		})
	}

	// Another account's key of the same name is its own.
	other := wantAccepted(t, beta.post(t, "async", "idem/one", body, key))
	if other == first {
		t.Error("another account's replay got alpha's request id")
	}
	beta.waitTerminal(t, other)

	// Concurrent first uses of a key make one task.
	const racers = 10
	racing := http.Header{"Idempotency-Key": {"race-1"}}
	raceBody := createBody("race-task", "race-group", `{}`)
	got := make([]string, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, alpha.url("/v3/tasks/async/idem/one"), strings.NewReader(raceBody))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header = alpha.header(racing)
			resp, err := s.client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var out struct {
				RequestID string `json:"request_id"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted {
				errs[i] = fmt.Errorf("status %d: %v", resp.StatusCode, err)
			}
			got[i] = out.RequestID
		})
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("racers got request ids %v, want one", got)
			break
		}
	}
	alpha.waitTerminal(t, got[0])

	// One task each, each run once.
	for _, tc := range []struct {
		c      taskClient
		taskID string
		id     string
	}{{alpha, "idem-task", first}, {alpha, "race-task", got[0]}, {beta, "idem-task", other}} {
		if l := tc.c.list(t, "task_id", tc.taskID); len(l) != 1 || l[0].RequestID != tc.id {
			t.Errorf("task_id %s: %d tasks, want the one task %s", tc.taskID, len(l), tc.id)
		}
		if n := src.hits(tc.id); n != 1 {
			t.Errorf("task %s: source called %d times, want 1", tc.id, n)
		}
	}
	if n := len(src.received()); n != 3 {
		t.Errorf("source called %d times in all, want 3", n)
	}
}

// hiddenLength reads like its reader but hides the length, so that the
// HTTP client sends the body chunked.
type hiddenLength struct{ r io.Reader }

func (h hiddenLength) Read(p []byte) (int, error) { return h.r.Read(p) }

// TestTaskBadInput sends what a client should not, and checks that every
// answer is a 4xx JSON error, never a 5xx, and that the process serves on.
func TestTaskBadInput(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	max_body 1KiB
	account alpha {
		key key-alpha
		rate_limit 1000/s
	}
	task_type bad/input {
		source %s/input
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	const create = "/v3/tasks/async/bad/input"
	id256, id257 := strings.Repeat("i", 256), strings.Repeat("i", 257)
	deep := func(levels int) string {
		return `{"task_id":"t","group_id":"g","data":` + strings.Repeat(`{"a":`, levels-1) + "1" + strings.Repeat("}", levels-1) + "}"
	}
	// A body of exactly max_body is taken; one byte more is not.
	exact := createBody("t", "g", `{"pad":""}`)
	exact = createBody("t", "g", `{"pad":"`+strings.Repeat("p", 1024-len(exact))+`"}`)
	if len(exact) != 1024 {
		t.Fatalf("exact body is %d bytes", len(exact))
	}
	over := strings.Replace(exact, `"pad":"`, `"pad":"p`, 1)
	big := bytes.Repeat([]byte("x"), 10<<20)
	plain := http.Header{"Content-Type": {"text/plain"}}

	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   io.Reader
		status int
		code   string
	}{
		{"empty body", "POST", create, nil, strings.NewReader(""), 400, "BAD_REQUEST"},
		{"malformed JSON", "POST", create, nil, strings.NewReader(`{"task_id":"t",`), 400, "BAD_REQUEST"},
		{"trailing garbage", "POST", create, nil, strings.NewReader(createBody("t", "g", `{}`) + "x"), 400, "BAD_REQUEST"},
		{"array body", "POST", create, nil, strings.NewReader(`[]`), 400, "BAD_REQUEST"},
		{"string body", "POST", create, nil, strings.NewReader(`"task"`), 400, "BAD_REQUEST"},
		{"null body", "POST", create, nil, strings.NewReader(`null`), 422, "UNPROCESSABLE_ENTITY"},
		{"number task_id", "POST", create, nil, strings.NewReader(`{"task_id":1,"group_id":"g","data":{}}`), 400, "BAD_REQUEST"},
		{"task_id in upper case", "POST", create, nil, strings.NewReader(`{"TASK_ID":"t","group_id":"g","data":{}}`), 400, "BAD_REQUEST"},
		{"data in another case", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","Data":{}}`), 400, "BAD_REQUEST"},
		{"group_id twice, in two cases", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","Group_ID":"h","data":{}}`), 400, "BAD_REQUEST"},
		{"unknown keys are ignored", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","data":{"TASK_ID":1},"colour":"red"}`), 202, ""},
		{"data array", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","data":[]}`), 422, "UNPROCESSABLE_ENTITY"},
		{"data string", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","data":"{}"}`), 422, "UNPROCESSABLE_ENTITY"},
		{"data null", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","data":null}`), 422, "UNPROCESSABLE_ENTITY"},
		{"no data", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g"}`), 422, "UNPROCESSABLE_ENTITY"},
		{"no task_id", "POST", create, nil, strings.NewReader(`{"group_id":"g","data":{}}`), 422, "UNPROCESSABLE_ENTITY"},
		{"no group_id", "POST", create, nil, strings.NewReader(`{"task_id":"t","data":{}}`), 422, "UNPROCESSABLE_ENTITY"},
		{"empty task_id", "POST", create, nil, strings.NewReader(createBody("", "g", `{}`)), 422, "UNPROCESSABLE_ENTITY"},
		{"257-byte task_id", "POST", create, nil, strings.NewReader(createBody(id257, "g", `{}`)), 422, "UNPROCESSABLE_ENTITY"},
		{"257-byte group_id", "POST", create, nil, strings.NewReader(createBody("t", id257, `{}`)), 422, "UNPROCESSABLE_ENTITY"},
		{"256-byte ids", "POST", create, nil, strings.NewReader(createBody(id256, id256, `{}`)), 202, ""},
		{"invalid UTF-8", "POST", create, nil, strings.NewReader("{\"task_id\":\"t\xff\xfe\",\"group_id\":\"g\",\"data\":{}}"), 400, "BAD_REQUEST"},
		{"nested 64 levels", "POST", create, nil, strings.NewReader(deep(64)), 202, ""},
		{"nested 100 levels", "POST", create, nil, strings.NewReader(deep(100)), 400, "BAD_REQUEST"},
		{"arrays nested 100 levels", "POST", create, nil, strings.NewReader(`{"task_id":"t","group_id":"g","data":{"a":` +
			strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`), 400, "BAD_REQUEST"},
		{"max_body exactly", "POST", create, nil, strings.NewReader(exact), 202, ""},
		{"max_body plus one", "POST", create, nil, strings.NewReader(over), 413, "PAYLOAD_TOO_LARGE"},
		{"10 MiB with Content-Length", "POST", create, nil, bytes.NewReader(big), 413, "PAYLOAD_TOO_LARGE"},
		{"10 MiB chunked", "POST", create, nil, hiddenLength{bytes.NewReader(big)}, 413, "PAYLOAD_TOO_LARGE"},
		{"text/plain", "POST", create, plain, strings.NewReader(createBody("t", "g", `{}`)), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"malformed content type", "POST", create, http.Header{"Content-Type": {"application/"}}, strings.NewReader(createBody("t", "g", `{}`)), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"JSON with charset", "POST", create, http.Header{"Content-Type": {"application/json; charset=utf-8"}}, strings.NewReader(createBody("t", "g", `{}`)), 202, ""},
		{"no content type", "POST", create, http.Header{"Content-Type": nil}, strings.NewReader(createBody("t", "g", `{}`)), 202, ""},
		{"bad Idempotency-Key", "POST", create, http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}, strings.NewReader(createBody("t", "g", `{}`)), 400, "BAD_REQUEST"},
		{"unknown path", "GET", "/v3/nothing", nil, nil, 404, "NOT_FOUND"},
		{"unknown task path", "GET", "/v3/tasks/", nil, nil, 404, "NOT_FOUND"},
		{"no mode", "POST", "/v3/tasks/bad/input", nil, nil, 404, "NOT_FOUND"},
		{"extra segment", "POST", create + "/more", nil, strings.NewReader(createBody("t", "g", `{}`)), 404, "NOT_FOUND"},
		{"GET a create path", "GET", create, nil, nil, 405, "METHOD_NOT_ALLOWED"},
		{"PUT a create path", "PUT", create, nil, strings.NewReader(createBody("t", "g", `{}`)), 405, "METHOD_NOT_ALLOWED"},
		{"POST the task list", "POST", "/v3/tasks", nil, strings.NewReader(`{}`), 405, "METHOD_NOT_ALLOWED"},
		{"DELETE the task list", "DELETE", "/v3/tasks?request_id=x", nil, nil, 405, "METHOD_NOT_ALLOWED"},
		{"no query", "GET", "/v3/tasks", nil, nil, 400, "BAD_REQUEST"},
		{"two ids", "GET", "/v3/tasks?request_id=a&group_id=b", nil, nil, 400, "BAD_REQUEST"},
		{"repeated id", "GET", "/v3/tasks?request_id=a&request_id=b", nil, nil, 400, "BAD_REQUEST"},
		{"bad escape", "GET", "/v3/tasks?request_id=%zz", nil, nil, 400, "BAD_REQUEST"},
		{"257-byte request_id", "GET", "/v3/tasks?request_id=" + id257, nil, nil, 400, "BAD_REQUEST"},
		{"wait 31", "GET", "/v3/tasks?request_id=a&wait=31", nil, nil, 400, "BAD_REQUEST"},
		{"wait negative", "GET", "/v3/tasks?request_id=a&wait=-1", nil, nil, 400, "BAD_REQUEST"},
		{"wait not a number", "GET", "/v3/tasks?request_id=a&wait=1s", nil, nil, 400, "BAD_REQUEST"},
		{"wait on a group", "GET", "/v3/tasks?group_id=g&wait=1", nil, nil, 400, "BAD_REQUEST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.s.do(t, tc.method, c.url(tc.path), c.header(tc.header), tc.body)
			if r.status >= 500 {
				t.Fatalf("status %d (body %s)", r.status, r.body)
			}
			if tc.status == http.StatusAccepted {
				wantAccepted(t, r)
				return
			}
			wantError(t, r, tc.status, tc.code)
		})
	}
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
	id := c.createAsync(t, "bad/input", "after", "g", `{}`)
	if o := c.waitTerminal(t, id); o.Status != "completed" {
		t.Errorf("after the bad input: %s", o.raw)
	}
}

// TestTaskSlowBody sends, over a raw connection, a create whose body stops
// short of its Content-Length: with body_timeout 1s it is answered 408
// REQUEST_TIMEOUT within a few seconds, and the connection is closed,
// while other requests are served meanwhile.
func TestTaskSlowBody(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	body_timeout 1s
	account slow {
		key key-slow
		rate_limit 1000/s
	}
	task_type slow/body {
		source %s/body
	}
}`, src.url),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("slow", "key-slow")}

	type answer struct {
		r    response
		conn net.Conn
		err  error
	}
	answered := make(chan answer, 1)
	start := time.Now()
	go func() {
		r, conn, err := stalledBody(fmt.Sprintf("127.0.0.1:%d", port), http.MethodPost, "/v3/tasks/async/slow/body",
			c.header(nil), 100, `{"task_id":"slow","group_id":"g","da`)
		answered <- answer{r, conn, err}
	}()

	// Served meanwhile.
	id := c.createAsync(t, "slow/body", "other", "g", `{}`)
	if o := c.waitTerminal(t, id); o.Status != "completed" {
		t.Errorf("a task created while a body is stalled: %s", o.raw)
	}

	var a answer
	select {
	case a = <-answered:
	case <-time.After(15 * time.Second):
		t.Fatal("no answer to the stalled body within 15s")
	}
	if a.conn != nil {
		defer a.conn.Close()
	}
	if a.err != nil {
		t.Fatalf("the stalled body: %v", a.err)
	}
	conn := a.conn
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the stalled body was answered after %v, want about 1s", took)
	}
	wantError(t, a.r, http.StatusRequestTimeout, "REQUEST_TIMEOUT")
	// The rest of the body is no request of its own: the connection is
	// closed.
	_, _ = io.WriteString(conn, strings.Repeat(" ", 64))
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if n, err := conn.Read(make([]byte, 1)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("the connection stayed open after the 408: %d bytes, %v", n, err)
	}
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
}

// TestTaskDurability stops a server with bolt storage (SIGTERM) while one
// task is in its source's hands and another is queued, starts it again on
// the same file, and finds every task as it was; the interrupted ones run
// again and end.
func TestTaskDurability(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		switch r.URL.Path {
		case "/held":
			if !f.hold(r) {
				return
			}
			answerJSON(w, http.StatusOK, fmt.Sprintf(`{"status":"id_found","request":%q}`, c.RequestID))
		case "/reject":
			answerJSON(w, http.StatusBadRequest, `{"error":"INVALID_PAN","message":"no such PAN"}`)
		default:
			answerJSON(w, http.StatusOK, `{"status":"id_found","ratio":1.50}`)
		}
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage bolt %[2]s
	account alpha {
		key key-alpha
	}
	task_type durable/fast {
		source %[1]s/fast
	}
	task_type durable/reject {
		source %[1]s/reject
	}
	task_type durable/held {
		source %[1]s/held
		concurrency 1
	}
}`, src.url, filepath.Join(s.dir, "tg.db")),
		Sites: taskSite(port),
	})
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	var ended []string
	for i := range 3 {
		ended = append(ended, c.createAsync(t, "durable/fast", fmt.Sprintf("fast-%d", i), "g-durable", fmt.Sprintf(`{"i":%d}`, i)))
	}
	ended = append(ended, c.createAsync(t, "durable/reject", "reject", "g-durable", `{}`))
	running := c.createAsync(t, "durable/held", "held-running", "g-durable", `{}`)
	queued := c.createAsync(t, "durable/held", "held-queued", "g-durable", `{}`)
	before := map[string][]byte{}
	for _, id := range ended {
		before[id] = c.waitTerminal(t, id).raw
	}
	src.waitFor(t, "the held call", func() bool { return src.inFlight == 1 })
	for _, id := range []string{running, queued} {
		before[id] = c.task(t, id, 0).raw
	}
	group := c.get(t, "group_id=g-durable")

	s.stop(t, syscall.SIGTERM)
	if !s.cmd.ProcessState.Success() {
		t.Errorf("after SIGTERM: %v, want a clean exit", s.cmd.ProcessState)
	}
	if src.hits(queued) != 0 {
		t.Fatalf("the queued task was called with concurrency 1")
	}
	s = s.restart(t)
	c.s = s

	for _, id := range ended {
		if got := c.task(t, id, 0); !bytes.Equal(got.raw, before[id]) {
			t.Errorf("after restart:\n got %s\nwant %s", got.raw, before[id])
		}
	}
	if got := c.get(t, "group_id=g-durable"); !bytes.Equal(got.body, group.body) {
		t.Errorf("group listing after restart:\n got %s\nwant %s", got.body, group.body)
	}
	src.open()
	for _, id := range []string{running, queued} {
		o := c.waitTerminal(t, id)
		var was taskObject
		if err := json.Unmarshal(before[id], &was); err != nil {
			t.Fatal(err)
		}
		if o.Status != "completed" || o.CreatedAt != was.CreatedAt || o.TaskID != was.TaskID ||
			string(o.Result) != fmt.Sprintf(`{"status":"id_found","request":%q}`, id) {
			t.Errorf("interrupted task after restart: %s (was %s)", o.raw, before[id])
		}
	}
	if n := src.hits(running); n != 2 {
		t.Errorf("the task cut short by the stop was called %d times, want 2 (once before, once after)", n)
	}
	if n := src.hits(queued); n != 1 {
		t.Errorf("the queued task was called %d times, want 1", n)
	}
	got := wantTasks(t, c.get(t, "group_id=g-durable"))
	if len(got) != 6 {
		t.Errorf("group listing after restart: %d tasks, want 6", len(got))
	}
}

// TestTaskReload replaces the config through the admin API while tasks
// exist, one of them in its source's hands: the tasks are kept, the
// interrupted one ends, and the new config's task types run.
func TestTaskReload(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if r.URL.Path == "/held" && !f.hold(r) {
			return
		}
		answerJSON(w, http.StatusOK, fmt.Sprintf(`{"path":%q}`, r.URL.Path))
	})
	port := freePort(t)
	s := newServer(t)
	cfg := func(syncTimeout, extra string) config {
		return config{
			Global: fmt.Sprintf(`
taskgate {
	storage memory
	sync_timeout %[2]s
	account alpha {
		key key-alpha
	}
	task_type reload/fast {
		source %[1]s/fast
	}
	task_type reload/held {
		source %[1]s/held
	}
%[3]s}`, src.url, syncTimeout, extra),
			Sites: taskSite(port),
		}
	}
	s.start(cfg("5s", ""))
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}
	done := c.waitTerminal(t, c.createAsync(t, "reload/fast", "before", "g-reload", `{}`))
	held := c.createAsync(t, "reload/held", "held", "g-reload", `{}`)
	src.waitCalls(t, 2)
	wantError(t, c.post(t, "async", "reload/new", createBody("t", "g", `{}`), nil), http.StatusNotFound, "NOT_FOUND")

	if r := s.load(t, cfg("7s", fmt.Sprintf("\ttask_type reload/new {\n\t\tsource %s/new\n\t}\n", src.url))); r.status != http.StatusOK {
		t.Fatalf("POST /load: %d %s", r.status, r.body)
	}
	if got := c.task(t, done.RequestID, 0); !bytes.Equal(got.raw, done.raw) {
		t.Errorf("after reload:\n got %s\nwant %s", got.raw, done.raw)
	}
	if got := c.list(t, "group_id", "g-reload"); len(got) != 2 {
		t.Errorf("group listing after reload: %d tasks, want 2", len(got))
	}
	src.open()
	if o := c.waitTerminal(t, held); o.Status != "completed" || string(o.Result) != `{"path":"/held"}` {
		t.Errorf("task in flight during the reload: %s", o.raw)
	}
	t.Logf("the task in flight during the reload was called %d times", src.hits(held))
	if o := c.waitTerminal(t, c.createAsync(t, "reload/new", "after", "g-reload", `{}`)); o.Status != "completed" ||
		string(o.Result) != `{"path":"/new"}` {
		t.Errorf("task of the new type: %s", o.raw)
	}
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
}
