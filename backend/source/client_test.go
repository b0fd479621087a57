package source

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// patience bounds every wait for a signal; tests never sleep.
const patience = 10 * time.Second

var testRequest = Request{
	RequestID: "8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11",
	TaskID:    "task-1",
	GroupID:   "group-1",
	Action:    "verify_with_source",
	Type:      "ind_pan",
	Data:      json.RawMessage(`{"id_number":"ABCDE1234F","name":"Ravi"}`),
}

// receive returns the next value of ch, failing the test after patience.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatal("no signal within", patience)
		panic("unreachable")
	}
}

// newTestClient returns a client on a fake clock.
func newTestClient(opts ClientConfig) (*Client, *fakeClock) {
	clock := newFakeClock()
	opts.Clock = clock.Now
	return NewClient(opts), clock
}

// newServer starts a loopback server that the test closes.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newHeldServer starts a loopback server whose handler may hold a call:
// hold blocks until the test ends or the client goes away.
func newHeldServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, hold func())) *httptest.Server {
	gate := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		// The server notices a client going away only once the request
		// body is consumed.
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r, func() {
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		})
	})
	// Cleanups run last-registered first: the gate opens before Close waits
	// for the handlers.
	t.Cleanup(func() { close(gate) })
	return srv
}

func TestCallMapsAnswers(t *testing.T) {
	object4K := `{"pad":"` + strings.Repeat("x", 4<<10) + `"}`
	tests := []struct {
		name        string
		status      int
		contentType string
		header      http.Header
		body        string
		want        Outcome
	}{
		{name: "200 object", status: 200, body: `{"status":"id_found","name":"Ravi"}`,
			want: Outcome{Kind: Completed, Result: json.RawMessage(`{"status":"id_found","name":"Ravi"}`), StatusCode: 200}},
		{name: "201 object", status: 201, body: `{"a":{"b":[1,2,3]}}`,
			want: Outcome{Kind: Completed, Result: json.RawMessage(`{"a":{"b":[1,2,3]}}`), StatusCode: 201}},
		{name: "200 large object", status: 200, body: object4K,
			want: Outcome{Kind: Completed, Result: json.RawMessage(object4K), StatusCode: 200}},
		{name: "200 object as text/plain", status: 200, contentType: "text/plain", body: ` {"a":1}`,
			want: Outcome{Kind: Completed, Result: json.RawMessage(`{"a":1}`), StatusCode: 200}},
		{name: "200 array", status: 200, body: `[{"a":1}]`,
			want: Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{name: "200 null", status: 200, body: `null`,
			want: Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{name: "200 invalid JSON", status: 200, body: `{"a":1,}`,
			want: Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{name: "200 text/html", status: 200, contentType: "text/html", body: `<html><body>OK</body></html>`,
			want: Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{name: "204 no content", status: 204,
			want: Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 204}},
		{name: "302 not followed", status: 302, header: http.Header{"Location": {"/200-object"}},
			want: Outcome{Kind: Down, Message: "source answered 302", StatusCode: 302}},
		{name: "400 with error and message", status: 400, body: `{"error":"INVALID_ID","message":"id_number is malformed"}`,
			want: Outcome{Kind: Rejected, Error: "INVALID_ID", Message: "id_number is malformed", StatusCode: 400}},
		{name: "404 with no body", status: 404,
			want: Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Not Found", StatusCode: 404}},
		{name: "422 with non-string error", status: 422, body: `{"error":7,"message":["m"]}`,
			want: Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Unprocessable Entity", StatusCode: 422}},
		{name: "408", status: 408, body: `{"error":"SLOW"}`,
			want: Outcome{Kind: Down, Message: "source answered 408", StatusCode: 408}},
		{name: "429", status: 429, header: http.Header{"Retry-After": {"1"}},
			want: Outcome{Kind: Down, Message: "source answered 429", StatusCode: 429}},
		{name: "500", status: 500, contentType: "text/html", body: `<h1>Internal Server Error</h1>`,
			want: Outcome{Kind: Down, Message: "source answered 500", StatusCode: 500}},
		{name: "503", status: 503, body: `{"error":"MAINTENANCE","message":"back soon"}`,
			want: Outcome{Kind: Down, Message: "source answered 503", StatusCode: 503}},
	}
	answers := make(map[string]int)
	for i, tt := range tests {
		answers["/"+strings.ReplaceAll(tt.name, " ", "-")] = i
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		tt := tests[answers[r.URL.Path]]
		for k, v := range tt.header {
			w.Header()[k] = v
		}
		ct := tt.contentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(tt.status)
		_, _ = io.WriteString(w, tt.body)
	})
	c, _ := newTestClient(ClientConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := srv.URL + "/" + strings.ReplaceAll(tt.name, " ", "-")
			wantOutcome(t, c.Call(t.Context(), url, time.Minute, testRequest), tt.want)
		})
	}
}

func TestCallRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/pan"
	_ = ln.Close()
	c, _ := newTestClient(ClientConfig{})
	out := c.Call(t.Context(), url, time.Minute, testRequest)
	wantOutcome(t, out, Outcome{Kind: Down, Message: "source unreachable"})
	if out.Err == nil {
		t.Error("Err is nil, want the dial error")
	}
}

func TestCallInvalidURL(t *testing.T) {
	c, _ := newTestClient(ClientConfig{})
	out := c.Call(t.Context(), "http://[::1", time.Minute, testRequest)
	wantOutcome(t, out, Outcome{Kind: Down, Message: "source URL is not valid"})
}

func TestCallTimesOutWaitingForAnswer(t *testing.T) {
	srv := newHeldServer(t, func(w http.ResponseWriter, r *http.Request, hold func()) { hold() })
	c, _ := newTestClient(ClientConfig{})
	out := c.Call(t.Context(), srv.URL, 50*time.Millisecond, testRequest)
	wantOutcome(t, out, Outcome{Kind: Down, Message: "source timed out after 50ms"})
}

func TestCallTimesOutReadingAnswer(t *testing.T) {
	srv := newHeldServer(t, func(w http.ResponseWriter, r *http.Request, hold func()) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":`)
		_ = http.NewResponseController(w).Flush()
		hold()
	})
	c, _ := newTestClient(ClientConfig{})
	out := c.Call(t.Context(), srv.URL, 50*time.Millisecond, testRequest)
	wantOutcome(t, out, Outcome{Kind: Down, Message: "source timed out after 50ms", StatusCode: 200})
}

func TestCallAnswerSizeLimit(t *testing.T) {
	// object returns a JSON object of exactly n bytes.
	object := func(n int) string { return `{"p":"` + strings.Repeat("x", n-8) + `"}` }
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		var n int
		switch r.URL.Path {
		case "/small-exact", "/small-over", "/small-over-chunked":
			n = 1024
		default:
			n = DefaultMaxResponseBytes
		}
		if strings.HasSuffix(r.URL.Path, "-over") || strings.HasSuffix(r.URL.Path, "-over-chunked") {
			n++
		}
		if strings.HasSuffix(r.URL.Path, "-chunked") {
			// Flushing before writing the body leaves out Content-Length.
			_ = http.NewResponseController(w).Flush()
		}
		_, _ = io.WriteString(w, object(n))
	})
	tests := []struct {
		name string
		max  int64
		path string
		kind Kind
	}{
		{"exactly the limit", 1024, "/small-exact", Completed},
		{"over the limit", 1024, "/small-over", Down},
		{"over the limit without Content-Length", 1024, "/small-over-chunked", Down},
		{"exactly the default limit", 0, "/default-exact", Completed},
		{"over the default limit", 0, "/default-over", Down},
		{"over the default limit without Content-Length", 0, "/default-over-chunked", Down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(ClientConfig{MaxResponseBytes: tt.max})
			out := c.Call(t.Context(), srv.URL+tt.path, time.Minute, testRequest)
			if out.Kind != tt.kind || out.StatusCode != 200 {
				t.Fatalf("outcome %v %d %q, want %v 200", out.Kind, out.StatusCode, out.Message, tt.kind)
			}
			if tt.kind == Down && out.Message != "source answer too large" {
				t.Fatalf("Message = %q, want %q", out.Message, "source answer too large")
			}
		})
	}
}

func TestCallSendsTheTask(t *testing.T) {
	type seen struct {
		method, path string
		header       http.Header
		body         []byte
	}
	requests := make(chan seen, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		requests <- seen{r.Method, r.URL.RequestURI(), r.Header.Clone(), body}
		_, _ = io.WriteString(w, `{}`)
	})
	for _, tt := range []struct{ userAgent, want string }{
		{"", "taskgate"},
		{"taskgate/1.2.3", "taskgate/1.2.3"},
	} {
		c, _ := newTestClient(ClientConfig{UserAgent: tt.userAgent})
		if out := c.Call(t.Context(), srv.URL+"/v1/pan?x=1", time.Minute, testRequest); out.Kind != Completed {
			t.Fatalf("outcome %v %q, want completed", out.Kind, out.Message)
		}
		got := receive(t, requests)
		if got.method != http.MethodPost || got.path != "/v1/pan?x=1" {
			t.Errorf("request %s %s, want POST /v1/pan?x=1", got.method, got.path)
		}
		for name, want := range map[string]string{
			"Content-Type": "application/json",
			"Accept":       "application/json",
			"User-Agent":   tt.want,
		} {
			if v := got.header.Get(name); v != want {
				t.Errorf("header %s = %q, want %q", name, v, want)
			}
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(got.body, &fields); err != nil {
			t.Fatalf("body %q: %v", got.body, err)
		}
		want := map[string]string{
			"request_id": `"8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11"`,
			"task_id":    `"task-1"`,
			"group_id":   `"group-1"`,
			"action":     `"verify_with_source"`,
			"type":       `"ind_pan"`,
			"data":       `{"id_number":"ABCDE1234F","name":"Ravi"}`,
		}
		if len(fields) != len(want) {
			t.Errorf("body %s has %d fields, want %d", got.body, len(fields), len(want))
		}
		for k, v := range want {
			if string(fields[k]) != v {
				t.Errorf("body field %s = %s, want %s", k, fields[k], v)
			}
		}
	}
}

func TestCallRejectsDataThatIsNotJSON(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	c, _ := newTestClient(ClientConfig{})
	req := testRequest
	req.Data = json.RawMessage(`{"a":`)
	out := c.Call(t.Context(), srv.URL, time.Minute, req)
	wantOutcome(t, out, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "task data is not valid JSON"})
	if hits.Load() != 0 {
		t.Errorf("source called %d times, want 0", hits.Load())
	}
}

func TestCallReusesConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = io.WriteString(w, `{"a":1}`)
		case "/array":
			_, _ = io.WriteString(w, `[1,2]`)
		case "/rejected":
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":"NOT_FOUND","message":"no such id"}`)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, strings.Repeat("busy ", 100))
		case "/large":
			_, _ = io.WriteString(w, `{"p":"`+strings.Repeat("x", 2048)+`"}`)
		case "/large-chunked":
			_ = http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, `{"p":"`+strings.Repeat("x", 2048)+`"}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	c, _ := newTestClient(ClientConfig{MaxResponseBytes: 1024})
	for range 3 {
		for _, path := range []string{"/ok", "/array", "/rejected", "/down", "/large", "/large-chunked"} {
			c.Call(t.Context(), srv.URL+path, time.Minute, testRequest)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 18 sequential calls, want 1", n)
	}
}

func TestCallCanceledByCaller(t *testing.T) {
	arrived := make(chan struct{}, 1)
	var hits atomic.Int64
	srv := newHeldServer(t, func(w http.ResponseWriter, r *http.Request, hold func()) {
		hits.Add(1)
		arrived <- struct{}{}
		hold()
	})
	// One failure would open the circuit, so none of these may count.
	c, _ := newTestClient(ClientConfig{Breaker: BreakerSettings{FailureThreshold: 1}})

	t.Run("while waiting for the answer", func(t *testing.T) {
		for range 3 {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan Outcome, 1)
			go func() { done <- c.Call(ctx, srv.URL, time.Minute, testRequest) }()
			receive(t, arrived)
			cancel()
			out := receive(t, done)
			wantOutcome(t, out, Outcome{Kind: Canceled, Message: "call canceled before the source answered"})
		}
	})
	t.Run("by its deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		out := c.Call(ctx, srv.URL, time.Minute, testRequest)
		receive(t, arrived)
		if out.Kind != Canceled {
			t.Fatalf("outcome %v %q, want canceled", out.Kind, out.Message)
		}
	})
	t.Run("before the call", func(t *testing.T) {
		before := hits.Load()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if out := c.Call(ctx, srv.URL, time.Minute, testRequest); out.Kind != Canceled {
			t.Fatalf("outcome %v %q, want canceled", out.Kind, out.Message)
		}
		if hits.Load() != before {
			t.Fatal("the source was called with a canceled context")
		}
	})
	if s := c.BreakerState(srv.URL); s != "closed" {
		t.Fatalf("BreakerState = %q after canceled calls, want closed", s)
	}
}

// testSource is a source whose answer the test sets, counting its calls.
type testSource struct {
	*httptest.Server
	hits    atomic.Int64
	status  atomic.Int64
	block   atomic.Bool   // hold each call until release
	arrived chan struct{} // a value per held call
	gate    chan struct{}
	once    sync.Once
}

func newTestSource(t *testing.T) *testSource {
	s := &testSource{arrived: make(chan struct{}, 64), gate: make(chan struct{})}
	s.status.Store(http.StatusOK)
	s.Server = newServer(t, s.serve)
	t.Cleanup(s.release)
	return s
}

// release lets held calls answer.
func (s *testSource) release() { s.once.Do(func() { close(s.gate) }) }

func (s *testSource) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	if s.block.Load() {
		s.arrived <- struct{}{}
		select {
		case <-s.gate:
		case <-r.Context().Done():
			return
		}
	}
	status := int(s.status.Load())
	w.WriteHeader(status)
	switch {
	case status < 300:
		_, _ = io.WriteString(w, `{"ok":true}`)
	case status < 500:
		_, _ = io.WriteString(w, `{"error":"BAD","message":"bad"}`)
	}
}

// call calls the source and checks the kind and message of the outcome.
func (s *testSource) call(t *testing.T, c *Client, kind Kind, message string) {
	t.Helper()
	out := c.Call(t.Context(), s.URL, time.Minute, testRequest)
	if out.Kind != kind || (message != "" && out.Message != message) {
		t.Fatalf("outcome %v %q, want %v %q", out.Kind, out.Message, kind, message)
	}
}

func (s *testSource) wantHits(t *testing.T, n int64) {
	t.Helper()
	if got := s.hits.Load(); got != n {
		t.Fatalf("source called %d times, want %d", got, n)
	}
}

func wantBreakerState(t *testing.T, c *Client, url, want string) {
	t.Helper()
	if got := c.BreakerState(url); got != want {
		t.Fatalf("BreakerState = %q, want %q", got, want)
	}
}

// openCircuit fails the source's first FailureThreshold calls.
func openCircuit(t *testing.T, c *Client, s *testSource) {
	t.Helper()
	s.status.Store(http.StatusServiceUnavailable)
	for range DefaultFailureThreshold {
		s.call(t, c, Down, "source answered 503")
	}
	wantBreakerState(t, c, s.URL, "open")
}

func TestCallOpenCircuitFailsFast(t *testing.T) {
	s := newTestSource(t)
	c, clock := newTestClient(ClientConfig{})
	wantBreakerState(t, c, s.URL, "closed")
	openCircuit(t, c, s)
	for range 10 {
		out := c.Call(t.Context(), s.URL, time.Minute, testRequest)
		wantOutcome(t, out, Outcome{Kind: Down, Message: "circuit open: source failing"})
	}
	s.wantHits(t, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor - time.Nanosecond)
	s.call(t, c, Down, "circuit open: source failing")
	s.wantHits(t, DefaultFailureThreshold)

	// The circuit is per source URL.
	other := s.URL + "/other"
	wantBreakerState(t, c, other, "closed")
	if out := c.Call(t.Context(), other, time.Minute, testRequest); out.Message != "source answered 503" {
		t.Fatalf("other source: outcome %v %q, want a call", out.Kind, out.Message)
	}
}

func TestCallHalfOpenLetsOneProbeThrough(t *testing.T) {
	s := newTestSource(t)
	c, clock := newTestClient(ClientConfig{})
	openCircuit(t, c, s)
	clock.Advance(DefaultOpenFor)
	wantBreakerState(t, c, s.URL, "half_open")

	s.status.Store(http.StatusOK)
	s.block.Store(true)
	const callers = 32
	outcomes := make(chan Outcome, callers)
	for range callers {
		go func() { outcomes <- c.Call(context.Background(), s.URL, time.Minute, testRequest) }()
	}
	// The probe is held at the source; every other caller fails fast.
	receive(t, s.arrived)
	for range callers - 1 {
		wantOutcome(t, receive(t, outcomes), Outcome{Kind: Down, Message: "circuit open: source failing"})
	}
	wantBreakerState(t, c, s.URL, "half_open")
	s.release()
	wantOutcome(t, receive(t, outcomes), Outcome{Kind: Completed, Result: json.RawMessage(`{"ok":true}`), StatusCode: 200})
	s.wantHits(t, DefaultFailureThreshold+1)

	// The probe's success closed the circuit.
	wantBreakerState(t, c, s.URL, "closed")
	s.block.Store(false)
	s.call(t, c, Completed, "")
	s.wantHits(t, DefaultFailureThreshold+2)
}

func TestCallRejectedProbeCloses(t *testing.T) {
	s := newTestSource(t)
	c, clock := newTestClient(ClientConfig{})
	openCircuit(t, c, s)
	clock.Advance(DefaultOpenFor)
	s.status.Store(http.StatusNotFound)
	s.call(t, c, Rejected, "bad")
	wantBreakerState(t, c, s.URL, "closed")
}

func TestCallFailedProbeReopensForLonger(t *testing.T) {
	s := newTestSource(t)
	c, clock := newTestClient(ClientConfig{Breaker: BreakerSettings{OpenFor: 5 * time.Second, MaxOpenFor: 12 * time.Second}})
	openCircuit(t, c, s)
	hits := s.hits.Load()
	for _, openFor := range []time.Duration{5, 10, 12, 12} {
		clock.Advance(openFor*time.Second - time.Nanosecond)
		s.call(t, c, Down, "circuit open: source failing")
		s.wantHits(t, hits)
		clock.Advance(time.Nanosecond)
		s.call(t, c, Down, "source answered 503")
		hits++
		s.wantHits(t, hits)
		wantBreakerState(t, c, s.URL, "open")
	}
}

func TestCallRejectedCountsAsSourceUp(t *testing.T) {
	s := newTestSource(t)
	c, _ := newTestClient(ClientConfig{})
	s.status.Store(http.StatusBadGateway)
	for range DefaultFailureThreshold - 1 {
		s.call(t, c, Down, "source answered 502")
	}
	s.status.Store(http.StatusUnprocessableEntity)
	s.call(t, c, Rejected, "bad")
	s.status.Store(http.StatusBadGateway)
	for range DefaultFailureThreshold - 1 {
		s.call(t, c, Down, "source answered 502")
	}
	wantBreakerState(t, c, s.URL, "closed")
	s.call(t, c, Down, "source answered 502")
	wantBreakerState(t, c, s.URL, "open")
}

func TestCallCanceledProbeHandsOverItsTurn(t *testing.T) {
	s := newTestSource(t)
	c, clock := newTestClient(ClientConfig{})
	openCircuit(t, c, s)
	clock.Advance(DefaultOpenFor)

	s.status.Store(http.StatusOK)
	s.block.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan Outcome, 1)
	go func() { done <- c.Call(ctx, s.URL, time.Minute, testRequest) }()
	receive(t, s.arrived)
	cancel()
	if out := receive(t, done); out.Kind != Canceled {
		t.Fatalf("probe outcome %v %q, want canceled", out.Kind, out.Message)
	}
	wantBreakerState(t, c, s.URL, "half_open")

	s.block.Store(false)
	s.call(t, c, Completed, "")
	wantBreakerState(t, c, s.URL, "closed")
}

func TestDefaultHTTPClient(t *testing.T) {
	hc := defaultHTTPClient()
	tr := hc.Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Error("the default transport uses a proxy from the environment")
	}
	if tr.MaxIdleConnsPerHost < 32 {
		t.Errorf("MaxIdleConnsPerHost = %d, want at least 32", tr.MaxIdleConnsPerHost)
	}
	if hc.Timeout != 0 {
		t.Errorf("Timeout = %v, want none (Call bounds each call)", hc.Timeout)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Completed: "completed", Rejected: "rejected", Down: "down", Canceled: "canceled", Kind(9): "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, clock := newTestClient(ClientConfig{Breaker: BreakerSettings{FailureThreshold: 2, OpenFor: time.Minute, MaxOpenFor: time.Minute}})
	if h := c.Health(srv.URL); h != HealthUp {
		t.Fatalf("Health of a source never called = %q, want up", h)
	}
	call := func() { c.Call(t.Context(), srv.URL, time.Second, testRequest) }
	call()
	if h := c.Health(srv.URL); h != HealthDegraded {
		t.Fatalf("Health after a failure = %q, want degraded", h)
	}
	call()
	if h := c.Health(srv.URL); h != HealthDown {
		t.Fatalf("Health with the circuit open = %q, want down", h)
	}
	clock.Advance(time.Minute)
	if h := c.Health(srv.URL); h != HealthDegraded {
		t.Fatalf("Health when a probe may go = %q, want degraded", h)
	}
}

// panickingTransport panics at every request.
type panickingTransport struct{}

func (panickingTransport) RoundTrip(*http.Request) (*http.Response, error) { panic("transport bug") }

// TestCallThatPanicsGivesBackItsProbe: a probe whose call panics (its
// caller, the runner, recovers) hands its turn on, instead of leaving the
// circuit half-open with a probe out for ever.
func TestCallThatPanicsGivesBackItsProbe(t *testing.T) {
	c, clock := newTestClient(ClientConfig{HTTP: &http.Client{Transport: panickingTransport{}}})
	const url = "http://127.0.0.1:9/src"
	b := c.breaker(url)
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the call did not panic")
			}
		}()
		c.Call(t.Context(), url, time.Second, testRequest)
	}()
	if tk, ok := b.Allow(); !ok || !tk.Probe() {
		t.Fatalf("after a probe whose call panicked: Allow() = probe %v, ok %v; want the next probe", tk.Probe(), ok)
	}
}
