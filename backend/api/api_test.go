package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
)

type fixture struct {
	api    *API
	store  task.Store
	hub    *task.Hub
	queued chan string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	hub := task.NewHub()
	pan := &task.Type{Action: "verify_with_source", Type: "ind_pan", Source: "http://127.0.0.1:9/pan"}
	other := &task.Type{Action: "verify_with_source", Type: "ind_aadhaar", Source: "http://127.0.0.1:9/a"}
	for _, typ := range []*task.Type{pan, other} {
		if err := typ.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	queued := make(chan string, 100)
	return &fixture{
		queued: queued,
		api: &API{
			Service:     task.NewService(task.ServiceConfig{Store: store, Hub: hub, Created: func(t *task.Task) { queued <- t.TypeName() }}),
			Types:       map[string]*task.Type{pan.Name(): pan, other.Name(): other},
			MaxBody:     1 << 10,
			SyncTimeout: 50 * time.Millisecond,
		},
		store: store,
		hub:   hub,
	}
}

var (
	acme    = &account.Account{ID: "acme"}
	limited = &account.Account{ID: "limited", TaskTypes: []string{"verify_with_source/ind_aadhaar"}}
)

func (f *fixture) do(t *testing.T, acct *account.Account, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.api.Serve(w, r, acct)
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("status %d, body %q: %v", w.Code, w.Body, err)
	}
	return v
}

func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	e := decode[struct{ Error, Message string }](t, w)
	if w.Code != status || e.Error != code || e.Message == "" {
		t.Fatalf("got %d %s (%s), want %d %s", w.Code, e.Error, e.Message, status, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}

const panBody = `{"task_id":"t1","group_id":"g1","data":{"id_number":"ABCDE1234F"}}`

func TestAsyncCreateAndPoll(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, acme, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody)
	if w.Code != http.StatusAccepted {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	created := decode[map[string]string](t, w)
	rid := created["request_id"]
	if len(created) != 1 || len(rid) != 36 {
		t.Fatalf("create answered %v, want only a uuid request_id", created)
	}

	w = f.do(t, acme, "GET", "/v3/tasks?request_id="+rid, "")
	views := decode[[]map[string]any](t, w)
	if w.Code != 200 || len(views) != 1 {
		t.Fatalf("poll: %d %s", w.Code, w.Body)
	}
	v := views[0]
	for _, k := range []string{"action", "type", "status", "task_id", "group_id", "request_id", "created_at", "completed_at", "result", "error", "message"} {
		if _, ok := v[k]; !ok {
			t.Errorf("task object lacks %q", k)
		}
	}
	if len(v) != 11 || v["status"] != "in_progress" || v["completed_at"] != nil || v["result"] != nil || v["task_id"] != "t1" || v["action"] != "verify_with_source" || v["type"] != "ind_pan" {
		t.Fatalf("task object %v", v)
	}
	if _, err := time.Parse(time.RFC3339, v["created_at"].(string)); err != nil {
		t.Fatalf("created_at: %v", err)
	}

	// Other accounts never see it.
	wantError(t, f.do(t, limited, "GET", "/v3/tasks?request_id="+rid, ""), 404, "NOT_FOUND")
	wantError(t, f.do(t, acme, "GET", "/v3/tasks?request_id=nope", ""), 404, "NOT_FOUND")
}

func TestListings(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 3 {
		body := `{"task_id":"t` + string(rune('a'+i)) + `","group_id":"g","data":{}}`
		w := f.do(t, acme, "POST", "/v3/tasks/async/verify_with_source/ind_pan", body)
		ids = append(ids, decode[map[string]string](t, w)["request_id"])
	}
	f.do(t, limited, "POST", "/v3/tasks/async/verify_with_source/ind_aadhaar", `{"task_id":"ta","group_id":"g","data":{}}`)

	byGroup := decode[[]map[string]any](t, f.do(t, acme, "GET", "/v3/tasks?group_id=g", ""))
	if len(byGroup) != 3 || byGroup[0]["request_id"] != ids[2] || byGroup[2]["request_id"] != ids[0] {
		t.Fatalf("group listing %v, want 3 tasks newest first", byGroup)
	}
	byTask := decode[[]map[string]any](t, f.do(t, acme, "GET", "/v3/tasks?task_id=ta", ""))
	if len(byTask) != 1 || byTask[0]["request_id"] != ids[0] {
		t.Fatalf("task id listing %v", byTask)
	}
	if w := f.do(t, acme, "GET", "/v3/tasks?group_id=none", ""); w.Code != 200 || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Fatalf("empty listing: %d %s", w.Code, w.Body)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	const path = "/v3/tasks/async/verify_with_source/ind_pan"
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	for _, tc := range []struct {
		name, method, target, body string
		header                     []string
		status                     int
		code                       string
	}{
		{"malformed JSON", "POST", path, `{"task_id":`, nil, 400, "BAD_REQUEST"},
		{"not an object", "POST", path, `[1,2]`, nil, 400, "BAD_REQUEST"},
		{"data not an object", "POST", path, `{"task_id":"t","group_id":"g","data":[1]}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"data null", "POST", path, `{"task_id":"t","group_id":"g","data":null}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"no data", "POST", path, `{"task_id":"t","group_id":"g"}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"no task_id", "POST", path, `{"group_id":"g","data":{}}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"empty group_id", "POST", path, `{"task_id":"t","group_id":"","data":{}}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"long task_id", "POST", path, `{"task_id":"` + strings.Repeat("x", 257) + `","group_id":"g","data":{}}`, nil, 422, "UNPROCESSABLE_ENTITY"},
		{"numeric task_id", "POST", path, `{"task_id":5,"group_id":"g","data":{}}`, nil, 400, "BAD_REQUEST"},
		{"invalid UTF-8", "POST", path, "{\"task_id\":\"\xff\",\"group_id\":\"g\",\"data\":{}}", nil, 400, "BAD_REQUEST"},
		{"deep nesting", "POST", path, `{"task_id":"t","group_id":"g","data":` + deep + `}`, nil, 400, "BAD_REQUEST"},
		{"too large", "POST", path, `{"task_id":"t","group_id":"g","data":{"x":"` + strings.Repeat("x", 2000) + `"}}`, nil, 413, "PAYLOAD_TOO_LARGE"},
		{"not JSON", "POST", path, `task_id=t`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"unknown type", "POST", "/v3/tasks/async/verify_with_source/nope", panBody, nil, 404, "NOT_FOUND"},
		{"unknown mode", "POST", "/v3/tasks/later/verify_with_source/ind_pan", panBody, nil, 404, "NOT_FOUND"},
		{"type not allowed", "POST", path, panBody, nil, 404, "NOT_FOUND"},
		{"GET on create", "GET", path, "", nil, 405, "METHOD_NOT_ALLOWED"},
		{"POST on poll", "POST", "/v3/tasks", "{}", nil, 405, "METHOD_NOT_ALLOWED"},
		{"unknown path", "GET", "/v3/other", "", nil, 404, "NOT_FOUND"},
		{"no query", "GET", "/v3/tasks", "", nil, 400, "BAD_REQUEST"},
		{"two ids", "GET", "/v3/tasks?request_id=a&group_id=b", "", nil, 400, "BAD_REQUEST"},
		{"repeated id", "GET", "/v3/tasks?request_id=a&request_id=b", "", nil, 400, "BAD_REQUEST"},
		{"bad escape", "GET", "/v3/tasks?request_id=%zz", "", nil, 400, "BAD_REQUEST"},
		{"wait too long", "GET", "/v3/tasks?request_id=a&wait=31", "", nil, 400, "BAD_REQUEST"},
		{"wait past int64 nanoseconds", "GET", "/v3/tasks?request_id=a&wait=9223372037", "", nil, 400, "BAD_REQUEST"},
		{"wait wrapping to a short one", "GET", "/v3/tasks?request_id=a&wait=18446744074", "", nil, 400, "BAD_REQUEST"},
		{"wait not a number", "GET", "/v3/tasks?request_id=a&wait=x", "", nil, 400, "BAD_REQUEST"},
		{"wait on a group", "GET", "/v3/tasks?group_id=a&wait=1", "", nil, 400, "BAD_REQUEST"},
		{"bad idempotency key", "POST", path, panBody, []string{"Idempotency-Key", "a\x01b"}, 400, "BAD_REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acct := acme
			if tc.name == "type not allowed" {
				acct = limited
			}
			wantError(t, f.do(t, acct, tc.method, tc.target, tc.body, tc.header...), tc.status, tc.code)
		})
	}
}

// TestKeysAreCaseSensitive checks that a key differing from a known one
// only in case is refused, naming it, while unknown keys are ignored and
// the keys inside data are the client's.
func TestKeysAreCaseSensitive(t *testing.T) {
	f := newFixture(t)
	const path = "/v3/tasks/async/verify_with_source/ind_pan"
	for _, body := range []string{
		`{"TASK_ID":"t","group_id":"g","data":{}}`,
		`{"task_id":"t","Group_Id":"g","data":{}}`,
		`{"task_id":"t","group_id":"g","Data":{}}`,
		`{"task_id":"t","group_id":"g","data":{},"TASK_ID":"u"}`,
		`{"taſk_id":"t","group_id":"g","data":{}}`,
		`{"\u0054ASK_ID":"t","group_id":"g","data":{}}`,
	} {
		w := f.do(t, acme, "POST", path, body)
		wantError(t, w, 400, "BAD_REQUEST")
		if e := decode[struct{ Message string }](t, w); !strings.Contains(e.Message, "case") {
			t.Errorf("%s: message %q does not say why", body, e.Message)
		}
	}
	if w := f.do(t, acme, "POST", path, `{"TASK_ID":"t","group_id":"g","data":{}}`); !strings.Contains(w.Body.String(), `\"TASK_ID\"`) {
		t.Errorf("the message does not name the key: %s", w.Body)
	}
	for _, body := range []string{
		`{"task_id":"t","group_id":"g","data":{"TASK_ID":1,"Data":2}}`,
		`{"task_id":"t","group_id":"g","data":{},"colour":"red"}`,
		`{"task\u005fid":"t","group_id":"g","data":{}}`,
	} {
		if w := f.do(t, acme, "POST", path, body); w.Code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", body, w.Code, w.Body)
		}
	}
}

func TestTooLargeIsNotReadWhole(t *testing.T) {
	f := newFixture(t)
	for _, length := range []int64{1 << 20, -1} {
		body := &countingReader{r: strings.NewReader(strings.Repeat("x", 1<<20))}
		r := httptest.NewRequest("POST", "/v3/tasks/async/verify_with_source/ind_pan", body)
		r.ContentLength = length // -1: chunked, length unknown
		w := httptest.NewRecorder()
		f.api.Serve(w, r, acme)
		wantError(t, w, 413, "PAYLOAD_TOO_LARGE")
		if body.n > 64<<10 {
			t.Fatalf("content length %d: read %d bytes of a refused body", length, body.n)
		}
	}
}

// TestSlowBodyTimesOut sends a create whose body never ends over a real
// connection: it is answered 408 REQUEST_TIMEOUT once BodyTimeout has
// passed, while other requests are served meanwhile.
func TestSlowBodyTimesOut(t *testing.T) {
	f := newFixture(t)
	f.api.BodyTimeout = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.api.Serve(w, r, acme) }))
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "POST /v3/tasks/async/verify_with_source/ind_pan HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"task_id\":"); err != nil {
		t.Fatal(err)
	}
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Error(err)
			close(answered)
			return
		}
		answered <- resp
	}()
	// Served meanwhile.
	resp, err := http.Post(srv.URL+"/v3/tasks/async/verify_with_source/ind_pan", "application/json", strings.NewReader(panBody))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("another create while one body is stalled: %v, %v", resp, err)
	}
	resp.Body.Close()

	select {
	case resp, ok := <-answered:
		if !ok {
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e struct{ Error, Message string }
		if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal(body, &e) != nil || e.Error != "REQUEST_TIMEOUT" || e.Message == "" {
			t.Fatalf("stalled body answered %d %s, want 408 REQUEST_TIMEOUT", resp.StatusCode, body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to a stalled body within 10s")
	}
}

// TestBodyTimeoutIsLiftedOnceTheBodyIsIn checks that a sync call waits its
// whole sync timeout although that is longer than the body timeout: the
// request is not taken for one whose client went away.
func TestBodyTimeoutIsLiftedOnceTheBodyIsIn(t *testing.T) {
	f := newFixture(t)
	f.api.BodyTimeout = 20 * time.Millisecond
	f.api.SyncTimeout = 300 * time.Millisecond
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.api.Serve(w, r, acme)
		ended <- r.Context().Err()
	}))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/v3/tasks/sync/verify_with_source/ind_pan", "application/json", strings.NewReader(panBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), `"TIMEOUT"`) {
		t.Fatalf("sync call: %d %s, want 504 TIMEOUT after the sync timeout", resp.StatusCode, body)
	}
	if err := <-ended; err != nil {
		t.Fatalf("the request's context ended during the wait: %v", err)
	}
}

type countingReader struct {
	r *strings.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestIdempotency(t *testing.T) {
	f := newFixture(t)
	const path = "/v3/tasks/async/verify_with_source/ind_pan"
	first := decode[map[string]string](t, f.do(t, acme, "POST", path, panBody, "Idempotency-Key", "k1"))
	again := f.do(t, acme, "POST", path, panBody, "Idempotency-Key", "k1")
	if again.Code != 202 || decode[map[string]string](t, again)["request_id"] != first["request_id"] {
		t.Fatalf("replay: %d %s, want 202 with %s", again.Code, again.Body, first["request_id"])
	}
	wantError(t, f.do(t, acme, "POST", path, strings.Replace(panBody, "t1", "t2", 1), "Idempotency-Key", "k1"), 422, "IDEMPOTENCY_MISMATCH")
	wantError(t, f.do(t, acme, "POST", "/v3/tasks/sync/verify_with_source/ind_pan", panBody, "Idempotency-Key", "k1"), 422, "IDEMPOTENCY_MISMATCH")
	// Another account's key space is its own.
	other := f.do(t, &account.Account{ID: "other"}, "POST", path, panBody, "Idempotency-Key", "k1")
	if other.Code != 202 || decode[map[string]string](t, other)["request_id"] == first["request_id"] {
		t.Fatalf("other account: %d %s", other.Code, other.Body)
	}
	if group := decode[[]any](t, f.do(t, acme, "GET", "/v3/tasks?group_id=g1", "")); len(group) != 1 {
		t.Fatalf("replays created tasks: %d in the group", len(group))
	}
}

// finishAll claims and completes every queued task of the type, as a
// worker would.
func (f *fixture) finishAll(t *testing.T, typ string) []string {
	t.Helper()
	ctx := context.Background()
	tasks, err := f.store.Claim(ctx, typ, 100, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range tasks {
		now := time.Now().UTC()
		tk.Status, tk.CompletedAt, tk.Result = task.Completed, &now, json.RawMessage(`{"ok":true}`)
		if err := f.store.Finish(ctx, tk, nil, nil); err != nil {
			t.Fatal(err)
		}
		f.hub.Notify(tk.RequestID)
		ids = append(ids, tk.RequestID)
	}
	return ids
}

func TestSyncTimesOutWithRequestID(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, acme, "POST", "/v3/tasks/sync/verify_with_source/ind_pan", panBody)
	e := decode[map[string]string](t, w)
	if w.Code != 504 || e["error"] != "TIMEOUT" || len(e["request_id"]) != 36 {
		t.Fatalf("sync without a worker: %d %s", w.Code, w.Body)
	}
	// The task goes on.
	if ids := f.finishAll(t, "verify_with_source/ind_pan"); len(ids) != 1 || ids[0] != e["request_id"] {
		t.Fatalf("finished %v", ids)
	}
}

// failingGets is a store whose reads of a task fail.
type failingGets struct{ task.Store }

func (failingGets) Get(context.Context, string, string) (*task.Task, error) {
	return nil, errors.New("store out of reach")
}

// TestSyncNamesTheTaskWhoseEndCannotBeRead: a sync call whose task was
// stored, but whose end cannot be read, is answered 504 TIMEOUT with the
// request id to poll, not an error that would have the client create it
// again.
func TestSyncNamesTheTaskWhoseEndCannotBeRead(t *testing.T) {
	f := newFixture(t)
	f.api.Service = task.NewService(task.ServiceConfig{Store: failingGets{f.store}, Hub: f.hub})
	w := f.do(t, acme, "POST", "/v3/tasks/sync/verify_with_source/ind_pan", panBody)
	e := decode[map[string]string](t, w)
	if w.Code != 504 || e["error"] != "TIMEOUT" || len(e["request_id"]) != 36 {
		t.Fatalf("sync whose end cannot be read: %d %s, want 504 TIMEOUT with the request id", w.Code, w.Body)
	}
	if _, err := f.store.Get(t.Context(), acme.ID, e["request_id"]); err != nil {
		t.Fatalf("the task named was not stored: %v", err)
	}
}

func TestSyncAnswersWhenTheTaskEnds(t *testing.T) {
	f := newFixture(t)
	f.api.SyncTimeout = 30 * time.Second
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- f.do(t, acme, "POST", "/v3/tasks/sync/verify_with_source/ind_pan", panBody) }()
	select {
	case <-f.queued:
	case <-time.After(10 * time.Second):
		t.Fatal("the sync task was never queued")
	}
	finished := f.finishAll(t, "verify_with_source/ind_pan")
	w := <-done
	views := decode[map[string]any](t, w)
	if w.Code != 200 || views["status"] != "completed" || views["request_id"] != finished[0] {
		t.Fatalf("sync answer %d %s", w.Code, w.Body)
	}
}

func TestLongPollAnswersWhenTheTaskEnds(t *testing.T) {
	f := newFixture(t)
	rid := decode[map[string]string](t, f.do(t, acme, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody))["request_id"]
	done := make(chan *httptest.ResponseRecorder)
	start := time.Now()
	go func() { done <- f.do(t, acme, "GET", "/v3/tasks?wait=30&request_id="+rid, "") }()
	// The task ends only once the poll waits on it.
	for deadline := time.Now().Add(10 * time.Second); f.hub.Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the long poll never waited")
		}
		runtime.Gosched()
	}
	f.finishAll(t, "verify_with_source/ind_pan")
	w := <-done
	if views := decode[[]map[string]any](t, w); views[0]["status"] != "completed" {
		t.Fatalf("long poll answered %s", w.Body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("long poll took %v", took)
	}
}

func FuzzCreateBody(f *testing.F) {
	f.Add([]byte(panBody), "application/json")
	f.Add([]byte(`{"task_id":"t","group_id":"g","data":{"a":[1,{"b":null}]}}`), "")
	f.Add([]byte("{\"task_id\":\"\\ud800\",\"group_id\":\"g\",\"data\":{}}"), "application/json; charset=utf-8")
	f.Add([]byte(`[[[[[[`), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		fx := newFixture(t)
		r := httptest.NewRequest("POST", "/v3/tasks/async/verify_with_source/ind_pan", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		fx.api.Serve(w, r, acme)
		switch w.Code {
		case 202:
			if len(decode[map[string]string](t, w)["request_id"]) != 36 {
				t.Fatalf("202 without a request_id: %s", w.Body)
			}
		case 400, 413, 415, 422:
			decode[struct{ Error, Message string }](t, w)
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}

func FuzzQuery(f *testing.F) {
	for _, q := range []string{"request_id=a", "group_id=g&wait=1", "task_id=%zz", "request_id=a&wait=-1", "wait=5", "request_id=" + strings.Repeat("a", 300)} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		fx := newFixture(t)
		r := httptest.NewRequest("GET", "/v3/tasks", nil)
		r.URL.RawQuery = query
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Millisecond)
		defer cancel()
		w := httptest.NewRecorder()
		fx.api.Serve(w, r.WithContext(ctx), acme)
		if w.Code != 200 && w.Code != 400 && w.Code != 404 {
			t.Fatalf("status %d for %q", w.Code, query)
		}
	})
}

func TestTaskType(t *testing.T) {
	a := &API{Types: map[string]*task.Type{"verify_with_source/ind_pan": {Action: "verify_with_source", Type: "ind_pan"}}}
	for path, want := range map[string]string{
		"/v3/tasks/async/verify_with_source/ind_pan":   "verify_with_source/ind_pan",
		"/v3/tasks/sync/verify_with_source/ind_pan":    "verify_with_source/ind_pan",
		"/v3/tasks/async/verify_with_source/ind_other": "",
		"/v3/tasks/async/verify_with_source/ind_pan/x": "",
		"/v3/tasks":                         "",
		"/other/verify_with_source/ind_pan": "",
		"":                                  "",
	} {
		if got := a.TaskType(path); got != want {
			t.Errorf("TaskType(%q) = %q, want %q", path, got, want)
		}
	}
}
