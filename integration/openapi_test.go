package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The tests of this file hold docs/openapi.yaml to the server: every
// request they send and every answer they get is validated against the
// document (and so is every webhook a receiver gets), and between them
// they make each operation answer each status the document gives it.

// openAPIPath is the document under test, from the integration directory.
const openAPIPath = "../docs/openapi.yaml"

// loadOpenAPI loads the document and validates it as OpenAPI.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIPath, err)
	}
	return doc
}

// operations returns the document's operations by "METHOD /path".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	return ops
}

// errorCodes returns the error codes that a response schema allows: the
// enum of its "error" property, through allOf, oneOf and anyOf.
func errorCodes(s *openapi3.SchemaRef) []string {
	if s == nil || s.Value == nil {
		return nil
	}
	var codes []string
	if p := s.Value.Properties["error"]; p != nil && p.Value != nil {
		for _, v := range p.Value.Enum {
			codes = append(codes, fmt.Sprint(v))
		}
	}
	for _, subs := range []openapi3.SchemaRefs{s.Value.AllOf, s.Value.OneOf, s.Value.AnyOf} {
		for _, sub := range subs {
			codes = append(codes, errorCodes(sub)...)
		}
	}
	return codes
}

// TestOpenAPIDocument checks the document itself: it loads and validates
// as OpenAPI 3.1 (its examples against their schemas), names every
// operation, documents the edge chain's answers on every operation, and
// describes both webhooks.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	ops := operations(doc)
	want := []string{
		"POST /v3/tasks/async/{action}/{type}",
		"POST /v3/tasks/sync/{action}/{type}",
		"GET /v3/tasks",
		"GET /v3/webhooks/deliveries",
		"POST /v3/webhooks/deliveries/{id}/retry",
		"GET /v3/account",
		"GET /v3/status",
		"GET /v3/webhooks",
		"POST /v3/webhooks",
		"GET /v3/webhooks/{endpoint_id}",
		"PATCH /v3/webhooks/{endpoint_id}",
		"DELETE /v3/webhooks/{endpoint_id}",
		"POST /v3/webhooks/{endpoint_id}/rotate-secret",
		"POST /v3/webhooks/{endpoint_id}/test",
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range ops {
			if !yield(k) {
				return
			}
		}
	})
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("operations %v, want %v", got, want)
	}
	ids := map[string]bool{}
	for name, op := range ops {
		if op.OperationID == "" || ids[op.OperationID] {
			t.Errorf("%s: operationId %q missing or repeated", name, op.OperationID)
		}
		ids[op.OperationID] = true
		for status, code := range map[int]string{401: "MISSING_CREDENTIALS", 403: "INVALID_CREDENTIALS", 429: "TOO_MANY_REQUESTS", 405: "METHOD_NOT_ALLOWED"} {
			r := op.Responses.Status(status)
			if r == nil || r.Value == nil {
				t.Errorf("%s: no %d response", name, status)
				continue
			}
			mt := r.Value.Content.Get("application/json")
			if mt == nil || !slices.Contains(errorCodes(mt.Schema), code) {
				t.Errorf("%s: the %d response does not allow error %s", name, status, code)
			}
		}
		for status, ref := range op.Responses.Map() {
			if status >= "400" && (ref.Value == nil || ref.Value.Content.Get("application/json") == nil) {
				t.Errorf("%s: response %s has no application/json body", name, status)
			}
		}
		if r := op.Responses.Status(429); r != nil && r.Value != nil && r.Value.Headers["Retry-After"] == nil {
			t.Errorf("%s: the 429 response has no Retry-After", name)
		}
	}
	for _, name := range []string{"taskFinished", "webhookFailed", "webhookTest", "webhookDisabled"} {
		item := doc.Webhooks[name]
		if item == nil || item.Post == nil || item.Post.RequestBody == nil {
			t.Errorf("webhooks: %s is missing or has no POST body", name)
		}
	}
	for _, scheme := range []string{"accountId", "apiKey"} {
		s := doc.Components.SecuritySchemes[scheme]
		if s == nil || s.Value.Type != "apiKey" || s.Value.In != "header" {
			t.Errorf("security scheme %s: want an apiKey in a header", scheme)
		}
	}
}

// contract validates exchanges with the server against the document, and
// records which operation answered which status and which error codes
// came, so that a test can tell what the document says that no exchange
// showed.
type contract struct {
	doc    *openapi3.T
	router routers.Router

	mu sync.Mutex
	// seen holds "operationId status" of every validated answer.
	seen map[string]bool
	// codes holds every error code answered.
	codes map[string]bool
	// hooks holds the webhooks (by name in the document) validated.
	hooks map[string]int
}

func newContract(t *testing.T) *contract {
	t.Helper()
	doc := loadOpenAPI(t)
	// The router matches paths only: the document's server is an example
	// host, and the tests talk to 127.0.0.1 over plain HTTP.
	routed := *doc
	routed.Servers = nil
	router, err := gorillamux.NewRouter(&routed)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router, seen: map[string]bool{}, codes: map[string]bool{}, hooks: map[string]int{}}
}

// credentialHeaders is the AuthenticationFunc of the validation: a request
// fits an apiKey scheme in a header when it carries that header, non-empty.
// Whether the key is good is the server's business.
func credentialHeaders(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "apiKey" || s.In != "header" {
		return fmt.Errorf("security scheme %s: only apiKey in a header is expected", in.SecuritySchemeName)
	}
	if in.RequestValidationInput.Request.Header.Get(s.Name) == "" {
		return fmt.Errorf("no %s header", s.Name)
	}
	return nil
}

// validationOptions makes an undocumented status a failure, and reports
// every problem at once.
func validationOptions() *openapi3filter.Options {
	return &openapi3filter.Options{
		AuthenticationFunc:    credentialHeaders,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
}

// apiCall is one request to the client API and what must come of it.
type apiCall struct {
	name string
	// method and target (path and query) of the request.
	method, target string
	header         http.Header
	body           string
	// fits tells whether the request itself matches the document: false
	// for requests made to break it, which the document must then refuse
	// as the server does.
	fits bool
	// status is the status the server must answer, code its error code
	// ("" for a success).
	status int
	code   string
}

// do sends the call to the site on port, checks its status and code, and
// validates the request and the answer against the document.
func (c *contract) do(t *testing.T, s *server, port int, call apiCall) response {
	t.Helper()
	var body io.Reader
	if call.body != "" || call.method == http.MethodPost {
		body = strings.NewReader(call.body)
	}
	r := s.do(t, call.method, siteURL(port, call.target), call.header, body)
	if r.status != call.status {
		t.Fatalf("%s: %s %s: status %d, want %d (body %s)", call.name, call.method, call.target, r.status, call.status, r.body)
	}
	if call.code != "" {
		var e apiError
		if err := json.Unmarshal(r.body, &e); err != nil || e.Error != call.code {
			t.Errorf("%s: body %s, want error %s", call.name, r.body, call.code)
		}
	}
	c.validate(t, call, r)
	return r
}

// validate checks a request and its answer against the document.
func (c *contract) validate(t *testing.T, call apiCall, r response) {
	t.Helper()
	ctx := context.Background()
	newRequest := func(method string) *http.Request {
		req, err := http.NewRequest(method, siteURL(80, call.target), strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = call.header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		if call.body == "" {
			req.Body, req.ContentLength = http.NoBody, 0
		}
		return req
	}
	req := newRequest(call.method)
	route, params, err := c.router.FindRoute(req)
	if r.status == http.StatusMethodNotAllowed {
		// The document has no operation for the method: the 405 is
		// documented on each of the path's operations, those Allow
		// names; the answer is checked against each.
		if !errors.Is(err, routers.ErrMethodNotAllowed) {
			t.Errorf("%s: %s %s answered 405, but the document routes it: %v", call.name, call.method, call.target, err)
			return
		}
		allow := strings.Split(r.header.Get("Allow"), ",")
		for _, m := range allow[1:] {
			other := call
			other.method = strings.TrimSpace(m)
			c.validateAllowed(t, other, r, newRequest(other.method))
		}
		req = newRequest(strings.TrimSpace(allow[0]))
		route, params, err = c.router.FindRoute(req)
	}
	if err != nil {
		t.Errorf("%s: %s %s: not in the document: %v", call.name, req.Method, call.target, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions()}
	if r.status != http.StatusMethodNotAllowed {
		err := openapi3filter.ValidateRequest(ctx, in)
		switch {
		case call.fits && err != nil:
			t.Errorf("%s: the request does not fit the document: %v", call.name, err)
		case !call.fits && err == nil:
			t.Errorf("%s: the document accepts a request that the server refuses with %d %s", call.name, r.status, r.body)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 r.status,
		Header:                 r.header,
		Options:                validationOptions(),
	}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: %s %s: the answer does not match the document: %v\nstatus %d\nheaders %v\nbody %s",
			call.name, call.method, call.target, err, r.status, r.header, r.body)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[fmt.Sprintf("%s %d", route.Operation.OperationID, r.status)] = true
	if r.status >= 400 {
		var e apiError
		if json.Unmarshal(r.body, &e) == nil {
			c.codes[e.Error] = true
		}
	}
}

// validateAllowed checks a 405 answer against the operation of req's
// method, one that Allow named.
func (c *contract) validateAllowed(t *testing.T, call apiCall, r response, req *http.Request) {
	t.Helper()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: Allow names %s, which the document does not route: %v", call.name, call.method, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions()}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header, Options: validationOptions()}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the 405 does not match %s %s in the document: %v", call.name, call.method, call.target, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[fmt.Sprintf("%s %d", route.Operation.OperationID, r.status)] = true
}

// checkHook validates a request a webhook receiver got against the
// document's webhook of that name.
func (c *contract) checkHook(t *testing.T, name string, got hookRequest) {
	t.Helper()
	item := c.doc.Webhooks[name]
	if item == nil || item.Post == nil {
		t.Fatalf("the document has no webhook %s", name)
	}
	req, err := http.NewRequest(got.Method, "http://receiver.example"+got.Path, bytes.NewReader(got.Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = got.Header.Clone()
	in := &openapi3filter.RequestValidationInput{
		Request: req,
		Route:   &routers.Route{Spec: c.doc, Path: name, PathItem: item, Method: http.MethodPost, Operation: item.Post},
		Options: validationOptions(),
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Errorf("webhook %s to %s does not match the document: %v\nheaders %v\nbody %s", name, got.Path, err, got.Header, got.Body)
		return
	}
	c.mu.Lock()
	c.hooks[name]++
	c.mu.Unlock()
}

// checkCoverage fails the test for every status of every operation, every
// error code and every webhook that the document gives and no exchange
// showed: the document says nothing that the tests did not see.
func (c *contract) checkCoverage(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []string
	codes := map[string]bool{}
	for _, op := range operations(c.doc) {
		for status, ref := range op.Responses.Map() {
			if !c.seen[op.OperationID+" "+status] {
				missing = append(missing, op.OperationID+" "+status)
			}
			if mt := ref.Value.Content.Get("application/json"); mt != nil {
				for _, code := range errorCodes(mt.Schema) {
					codes[code] = true
				}
			}
		}
	}
	for code := range codes {
		if !c.codes[code] {
			missing = append(missing, "error "+code)
		}
	}
	for name := range c.doc.Webhooks {
		if c.hooks[name] == 0 {
			missing = append(missing, "webhook "+name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented but never seen in a validated exchange:\n  %s", strings.Join(missing, "\n  "))
	}
}

// jsonHeader returns the headers of a JSON request of an account (no
// credentials when accountID is empty), plus extra.
func jsonHeader(accountID, key string, extra ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if accountID != "" {
		h.Set("Account-Id", accountID)
		h.Set("Api-Key", key)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

// TestOpenAPIExchanges makes real requests of every operation, their
// successes and their errors, validates each request, answer and webhook
// against docs/openapi.yaml, and then checks that every documented status
// and error code was seen.
func TestOpenAPIExchanges(t *testing.T) {
	t.Parallel()
	c := newContract(t)
	t.Run("exchanges", func(t *testing.T) {
		t.Run("api", func(t *testing.T) {
			t.Parallel()
			testOpenAPIExchanges(t, c)
		})
		t.Run("store down", func(t *testing.T) {
			t.Parallel()
			testOpenAPIStoreDown(t, c)
		})
		t.Run("failed authentications", func(t *testing.T) {
			t.Parallel()
			testOpenAPIAuthFailures(t, c)
		})
		t.Run("endpoints", func(t *testing.T) {
			t.Parallel()
			testOpenAPIEndpoints(t, c)
		})
	})
	if !t.Failed() {
		c.checkCoverage(t)
	}
}

func testOpenAPIExchanges(t *testing.T, c *contract) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, call sourceCall) {
		switch call.Path {
		case "/pan":
			answerJSON(w, http.StatusOK, `{"status":"id_found","source_output":{"name_on_card":"DEMO USER","n":12345678901234567890}}`)
		case "/reject":
			answerJSON(w, http.StatusUnprocessableEntity, `{"error":"ID_INVALID","message":"no such PAN"}`)
		case "/down":
			answerJSON(w, http.StatusServiceUnavailable, `{"error":"busy"}`)
		case "/held":
			if f.hold(r) {
				answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
			}
		}
	})
	// The receiver takes every delivery but those to /reject, which it
	// refuses for good (410): that delivery fails and the failure webhook
	// hears of it.
	recv := newHookReceiver(t, func(r *http.Request, _ int) int {
		if r.URL.Path == "/reject" {
			return http.StatusGone
		}
		return http.StatusNoContent
	})
	secret := newSecret(t, 32)
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage %[1]s
	max_body 1KiB
	sync_timeout 1s
	body_timeout 1s
	# The edge chain's failures below are many: the throttle of failed
	# authentications has its own test.
	auth_failures off
	account oa {
		key key-oa
		rate_limit 100000/s
		webhook %[2]s/hooks {
			secret %[3]s
			authorization "Bearer oa-receiver"
			types oa/pan oa/down oa/held
		}
		webhook %[2]s/reject {
			types oa/reject
		}
		failure_webhook %[2]s/failures
	}
	account fenced {
		key key-fenced
		allow 192.0.2.0/24
	}
	account slow {
		key key-slow
		rate_limit 1/h burst 1
	}
	account narrow {
		key key-narrow
		task_types oa/pan
	}
	account metered {
		key key-metered
		rate_limit 100000/s
		quota 1/day
		quota 100/month oa/pan
	}
	task_type oa/pan {
		source %[4]s/pan
	}
	task_type oa/reject {
		source %[4]s/reject
	}
	task_type oa/down {
		source %[4]s/down
		timeout 2s
	}
	task_type oa/held {
		source %[4]s/held
		timeout 60s
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 2s
		retry 100ms 400ms 3s
	}
}`, s.storageOption("bolt"), recv.url, secret, src.url),
		Sites: taskSite(port),
	})

	oa := func(extra ...string) http.Header { return jsonHeader("oa", "key-oa", extra...) }
	do := func(call apiCall) response {
		t.Helper()
		return c.do(t, s, port, call)
	}
	accepted := func(r response) string {
		t.Helper()
		var a struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(r.body, &a); err != nil || a.RequestID == "" {
			t.Fatalf("202 body %s: no request_id", r.body)
		}
		return a.RequestID
	}
	tasks := func(r response) []taskObject {
		t.Helper()
		var out []taskObject
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatalf("tasks %s: %v", r.body, err)
		}
		return out
	}
	const (
		async = "/v3/tasks/async/"
		sync  = "/v3/tasks/sync/"
	)

	// Tasks of each outcome, created async and read back with a long poll.
	pan := accepted(do(apiCall{name: "async create", method: "POST", target: async + "oa/pan", header: oa(),
		body: createBody("t-pan", "g-oa", `{"id_number":"ABCDE1234F"}`), fits: true, status: 202}))
	reject := accepted(do(apiCall{name: "async create, rejected by its source", method: "POST", target: async + "oa/reject", header: oa(),
		body: createBody("t-reject", "g-oa", `{}`), fits: true, status: 202}))
	down := accepted(do(apiCall{name: "async create, source down", method: "POST", target: async + "oa/down", header: oa(),
		body: createBody("t-down", "g-oa", `{}`), fits: true, status: 202}))
	held := accepted(do(apiCall{name: "async create, held by its source", method: "POST", target: async + "oa/held", header: oa(),
		body: createBody("t-held", "g-oa", `{}`), fits: true, status: 202}))
	want := map[string]string{pan: "completed", reject: "failed", down: "failed"}
	for id, status := range want {
		ts := tasks(do(apiCall{name: "long poll to the end", method: "GET", target: "/v3/tasks?wait=20&request_id=" + id, header: oa(),
			fits: true, status: 200}))
		if len(ts) != 1 || ts[0].Status != status {
			t.Errorf("task %s: %+v, want one %s task", id, ts, status)
		}
	}
	src.waitCalls(t, 4)
	if ts := tasks(do(apiCall{name: "long poll that times out", method: "GET", target: "/v3/tasks?wait=1&request_id=" + held, header: oa(),
		fits: true, status: 200})); len(ts) != 1 || ts[0].Status != "in_progress" {
		t.Errorf("held task: %+v, want in_progress", ts)
	}
	if ts := tasks(do(apiCall{name: "list by group", method: "GET", target: "/v3/tasks?group_id=g-oa", header: oa(),
		fits: true, status: 200})); len(ts) != 4 {
		t.Errorf("group g-oa: %d tasks, want 4", len(ts))
	}
	do(apiCall{name: "list by task id", method: "GET", target: "/v3/tasks?task_id=t-pan", header: oa(), fits: true, status: 200})
	do(apiCall{name: "list of nothing", method: "GET", target: "/v3/tasks?task_id=none", header: oa(), fits: true, status: 200})

	// The account's view of itself and of its sources (the down source's
	// breaker may or may not have opened by now: any state fits).
	do(apiCall{name: "the account", method: "GET", target: "/v3/account", header: oa(), fits: true, status: 200})
	metered := jsonHeader("metered", "key-metered")
	do(apiCall{name: "within the quota", method: "POST", target: "/v3/tasks/async/oa/pan", header: metered, body: `{"task_id":"q1","group_id":"g","data":{}}`, fits: true, status: 202})
	do(apiCall{name: "over the quota", method: "POST", target: "/v3/tasks/async/oa/pan", header: metered, body: `{"task_id":"q2","group_id":"g","data":{}}`, fits: true, status: 429, code: "QUOTA_EXCEEDED"})
	do(apiCall{name: "over the quota, sync", method: "POST", target: "/v3/tasks/sync/oa/pan", header: metered, body: `{"task_id":"q3","group_id":"g","data":{}}`, fits: true, status: 429, code: "QUOTA_EXCEEDED"})
	do(apiCall{name: "the account with quotas", method: "GET", target: "/v3/account", header: metered, fits: true, status: 200})
	do(apiCall{name: "the account, posted", method: "POST", target: "/v3/account", header: oa(), body: "{}", fits: true, status: 405, code: "METHOD_NOT_ALLOWED"})
	do(apiCall{name: "the status", method: "GET", target: "/v3/status", header: oa(), fits: true, status: 200})
	do(apiCall{name: "the status, posted", method: "POST", target: "/v3/status", header: oa(), body: "{}", fits: true, status: 405, code: "METHOD_NOT_ALLOWED"})

	// Sync calls: each outcome, and a timeout.
	do(apiCall{name: "sync, completed", method: "POST", target: sync + "oa/pan", header: oa(),
		body: createBody("s-pan", "g-sync", `{}`), fits: true, status: 200})
	do(apiCall{name: "sync, rejected", method: "POST", target: sync + "oa/reject", header: oa(),
		body: createBody("s-reject", "g-sync", `{}`), fits: true, status: 200})
	do(apiCall{name: "sync, source down", method: "POST", target: sync + "oa/down", header: oa(),
		body: createBody("s-down", "g-sync", `{}`), fits: true, status: 200})
	do(apiCall{name: "sync, timeout", method: "POST", target: sync + "oa/held", header: oa(),
		body: createBody("s-held", "g-sync", `{}`), fits: true, status: 504, code: "TIMEOUT"})

	// Idempotency keys.
	first := accepted(do(apiCall{name: "idempotent create", method: "POST", target: async + "oa/pan", header: oa("Idempotency-Key", "k-1"),
		body: createBody("t-idem", "g-idem", `{}`), fits: true, status: 202}))
	if again := accepted(do(apiCall{name: "idempotent replay", method: "POST", target: async + "oa/pan", header: oa("Idempotency-Key", "k-1"),
		body: createBody("t-idem", "g-idem", `{}`), fits: true, status: 202})); again != first {
		t.Errorf("replay: request_id %s, want %s", again, first)
	}
	do(apiCall{name: "idempotency key with another body", method: "POST", target: async + "oa/pan", header: oa("Idempotency-Key", "k-1"),
		body: createBody("t-other", "g-idem", `{}`), fits: true, status: 422, code: "IDEMPOTENCY_MISMATCH"})
	do(apiCall{name: "idempotency key on the sync endpoint", method: "POST", target: sync + "oa/pan", header: oa("Idempotency-Key", "k-1"),
		body: createBody("t-idem", "g-idem", `{}`), fits: true, status: 422, code: "IDEMPOTENCY_MISMATCH"})

	// Input errors of the task API.
	over := createBody("t", "g", `{"pad":"`+strings.Repeat("p", 1100)+`"}`)
	for _, mode := range []string{async, sync} {
		for _, call := range []apiCall{
			{name: "malformed JSON", body: `{"task_id":"t",`, status: 400, code: "BAD_REQUEST"},
			{name: "a number for task_id", body: `{"task_id":1,"group_id":"g","data":{}}`, status: 400, code: "BAD_REQUEST"},
			{name: "Idempotency-Key too long", header: oa("Idempotency-Key", strings.Repeat("k", 256)), body: createBody("t", "g", `{}`), status: 400, code: "BAD_REQUEST"},
			{name: "no task_id", body: `{"group_id":"g","data":{}}`, status: 422, code: "UNPROCESSABLE_ENTITY"},
			{name: "data an array", body: `{"task_id":"t","group_id":"g","data":[]}`, status: 422, code: "UNPROCESSABLE_ENTITY"},
			{name: "257-byte group_id", body: createBody("t", strings.Repeat("g", 257), `{}`), status: 422, code: "UNPROCESSABLE_ENTITY"},
			{name: "text/plain", header: jsonHeader("oa", "key-oa", "Content-Type", "text/plain"), body: createBody("t", "g", `{}`), status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			{name: "body over max_body", body: over, fits: true, status: 413, code: "PAYLOAD_TOO_LARGE"},
			{name: "unknown task type", target: "oa/nothing", body: createBody("t", "g", `{}`), fits: true, status: 404, code: "NOT_FOUND"},
			{name: "task type the account may not use", header: jsonHeader("narrow", "key-narrow"), target: "oa/down", body: createBody("t", "g", `{}`), fits: true, status: 404, code: "NOT_FOUND"},
		} {
			call.name = mode + ": " + call.name
			call.method = "POST"
			if call.target == "" {
				call.target = "oa/pan"
			}
			call.target = mode + call.target
			if call.header == nil {
				call.header = oa()
			}
			do(call)
		}
	}
	// A body that stops short of its Content-Length, on either endpoint.
	for _, mode := range []string{async, sync} {
		partial := `{"task_id":"t-slow","group_id":"g","da`
		r, conn, err := stalledBody(fmt.Sprintf("127.0.0.1:%d", port), "POST", mode+"oa/pan", oa(), 100, partial)
		if conn != nil {
			conn.Close()
		}
		if err != nil {
			t.Fatalf("%s: a stalled body: %v", mode, err)
		}
		call := apiCall{name: mode + ": a body that stops short", method: "POST", target: mode + "oa/pan", header: oa(),
			body: partial, status: 408, code: "REQUEST_TIMEOUT"}
		if r.status != call.status {
			t.Fatalf("%s: status %d, want %d (body %s)", call.name, r.status, call.status, r.body)
		}
		c.validate(t, call, r)
	}
	for _, call := range []apiCall{
		{name: "GET without an id", target: "/v3/tasks", fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "GET with two ids", target: "/v3/tasks?request_id=a&group_id=b", fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "GET wait 31", target: "/v3/tasks?wait=31&request_id=" + pan, status: 400, code: "BAD_REQUEST"},
		{name: "GET wait not a number", target: "/v3/tasks?wait=1s&request_id=" + pan, status: 400, code: "BAD_REQUEST"},
		{name: "GET an unknown request_id", target: "/v3/tasks?request_id=019abf4e-1c2d-7a3b-9c4d-5e6f708192a3", fits: true, status: 404, code: "NOT_FOUND"},
		{name: "deliveries without a filter", target: "/v3/webhooks/deliveries", fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "deliveries of an unknown status", target: "/v3/webhooks/deliveries?status=lost", status: 400, code: "BAD_REQUEST"},
		{name: "retry an unknown delivery", method: "POST", target: "/v3/webhooks/deliveries/msg_0000000000000000000000/retry", fits: true, status: 404, code: "NOT_FOUND"},
		{name: "GET a create path", target: async + "oa/pan", status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "PUT a sync path", method: "PUT", target: sync + "oa/pan", body: createBody("t", "g", `{}`), status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "POST the task list", method: "POST", target: "/v3/tasks", body: `{}`, status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "DELETE the deliveries", method: "DELETE", target: "/v3/webhooks/deliveries?status=failed", status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "GET a retry path", target: "/v3/webhooks/deliveries/msg_0000000000000000000000/retry", status: 405, code: "METHOD_NOT_ALLOWED"},
	} {
		if call.method == "" {
			call.method = "GET"
		}
		call.header = oa()
		do(call)
	}

	// The edge chain, on every operation: no credentials, a wrong key, an
	// address not allowed, and a rate limit spent by the first request.
	create := createBody("t-edge", "g-edge", `{}`)
	every := []apiCall{
		{method: "POST", target: async + "oa/pan", body: create},
		{method: "POST", target: sync + "oa/pan", body: create},
		{method: "GET", target: "/v3/tasks?group_id=g-edge"},
		{method: "GET", target: "/v3/webhooks/deliveries?status=failed"},
		{method: "POST", target: "/v3/webhooks/deliveries/msg_0000000000000000000000/retry"},
		{method: "GET", target: "/v3/account"},
		{method: "GET", target: "/v3/status"},
	}
	every = append(every, endpointOps...)
	do(apiCall{name: "the slow account's one request", method: "GET", target: "/v3/tasks?group_id=g-edge",
		header: jsonHeader("slow", "key-slow"), fits: true, status: 200})
	for _, call := range every {
		for _, edge := range []apiCall{
			{name: "no credentials", header: jsonHeader("", ""), status: 401, code: "MISSING_CREDENTIALS"},
			{name: "no api-key", header: jsonHeader("", "", "Account-Id", "oa"), status: 401, code: "MISSING_CREDENTIALS"},
			{name: "a wrong key", header: jsonHeader("oa", "key-wrong"), fits: true, status: 403, code: "INVALID_CREDENTIALS"},
			{name: "an unknown account", header: jsonHeader("nobody", "key-oa"), fits: true, status: 403, code: "INVALID_CREDENTIALS"},
			{name: "an address not allowed", header: jsonHeader("fenced", "key-fenced"), fits: true, status: 403, code: "IP_NOT_ALLOWED"},
			{name: "over the rate limit", header: jsonHeader("slow", "key-slow"), fits: true, status: 429, code: "TOO_MANY_REQUESTS"},
		} {
			edge.name = call.method + " " + call.target + ": " + edge.name
			edge.method, edge.target, edge.body = call.method, call.target, call.body
			do(edge)
		}
	}

	// Webhooks: the finished async tasks reach the receiver, signed where
	// the webhook has a secret; the rejected one's delivery fails (410) and
	// the failure webhook is told.
	recv.waitFor(t, "the deliveries of the async tasks and the failure notice", func() bool {
		paths := map[string]int{}
		for _, r := range recv.got {
			paths[r.Path]++
		}
		// /hooks: pan, down and the idempotent task; /reject: the
		// rejected task; /failures: its notice.
		return paths["/hooks"] >= 3 && paths["/reject"] >= 1 && paths["/failures"] >= 1
	})
	failedDelivery := func() string {
		t.Helper()
		var ds []deliveryObject
		r := do(apiCall{name: "the rejected task's deliveries", method: "GET", target: "/v3/webhooks/deliveries?request_id=" + url.QueryEscape(reject),
			header: oa(), fits: true, status: 200})
		if err := json.Unmarshal(r.body, &ds); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Event == "task.finished" && d.Status == "failed" {
				return d.ID
			}
		}
		t.Fatalf("no failed task.finished delivery for %s: %s", reject, r.body)
		return ""
	}()
	do(apiCall{name: "the completed task's deliveries", method: "GET", target: "/v3/webhooks/deliveries?request_id=" + pan,
		header: oa(), fits: true, status: 200})
	do(apiCall{name: "failed deliveries", method: "GET", target: "/v3/webhooks/deliveries?status=failed", header: oa(), fits: true, status: 200})
	do(apiCall{name: "delivered deliveries of a task", method: "GET", target: "/v3/webhooks/deliveries?status=delivered&request_id=" + pan,
		header: oa(), fits: true, status: 200})
	do(apiCall{name: "pending deliveries", method: "GET", target: "/v3/webhooks/deliveries?status=pending", header: oa(), fits: true, status: 200})
	retried := do(apiCall{name: "retry a failed delivery", method: "POST", target: "/v3/webhooks/deliveries/" + failedDelivery + "/retry",
		header: oa(), fits: true, status: 202})
	var d deliveryObject
	if err := json.Unmarshal(retried.body, &d); err != nil || d.ID != failedDelivery || d.Status != "pending" {
		t.Errorf("retry answered %s, want delivery %s pending", retried.body, failedDelivery)
	}
	do(apiCall{name: "another account's delivery", method: "POST", target: "/v3/webhooks/deliveries/" + failedDelivery + "/retry",
		header: jsonHeader("narrow", "key-narrow"), fits: true, status: 404, code: "NOT_FOUND"})

	for _, r := range recv.requests() {
		switch r.Path {
		case "/hooks", "/reject":
			c.checkHook(t, "taskFinished", r)
			if r.Path == "/hooks" && (r.Header.Get("webhook-signature") == "" || r.Header.Get("Authorization") != "Bearer oa-receiver") {
				t.Errorf("delivery to /hooks without its signature or Authorization: %v", r.Header)
			}
		case "/failures":
			c.checkHook(t, "webhookFailed", r)
		default:
			t.Errorf("a delivery to %s", r.Path)
		}
	}
}

// testOpenAPIStoreDown answers every operation with Redis down: 503
// STORAGE_UNAVAILABLE, the rate limit going on locally.
// testOpenAPIAuthFailures spends the one failure an address may make,
// then calls every operation with right credentials: each is refused 429
// TOO_MANY_FAILED_AUTHENTICATIONS.
func testOpenAPIAuthFailures(t *testing.T, c *contract) {
	port := freePort(t)
	s := startServer(t, config{
		Global: `
taskgate {
	auth_failures 1/h burst 1
	account oa {
		key key-oa
	}
	task_type oa/pan {
		source http://127.0.0.1:9/pan
	}
}`,
		Sites: taskSite(port),
	})
	c.do(t, s, port, apiCall{name: "the one failure", method: "GET", target: "/v3/tasks?group_id=g", header: jsonHeader("oa", "key-wrong"),
		fits: true, status: 403, code: "INVALID_CREDENTIALS"})
	create := createBody("t-throttled", "g", `{}`)
	for _, call := range []apiCall{
		{method: "POST", target: "/v3/tasks/async/oa/pan", body: create},
		{method: "POST", target: "/v3/tasks/sync/oa/pan", body: create},
		{method: "GET", target: "/v3/tasks?group_id=g"},
		{method: "GET", target: "/v3/webhooks/deliveries?status=failed"},
		{method: "POST", target: "/v3/webhooks/deliveries/msg_0000000000000000000000/retry"},
		{method: "GET", target: "/v3/account"},
		{method: "GET", target: "/v3/status"},
	} {
		call.name = "after a failure: " + call.method + " " + call.target
		call.header, call.fits = jsonHeader("oa", "key-oa"), true
		call.status, call.code = http.StatusTooManyRequests, "TOO_MANY_FAILED_AUTHENTICATIONS"
		c.do(t, s, port, call)
	}
}

func testOpenAPIStoreDown(t *testing.T, c *contract) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, call sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	rs := startRedis(t)
	port := freePort(t)
	s := startServer(t, config{
		Global: redisGlobal(rs, fmt.Sprintf(`
account oa {
	key key-oa
	rate_limit 100000/s
}
task_type oa/pan {
	source %s/pan
}`, src.url)),
		Sites: taskSite(port),
	})
	oa := jsonHeader("oa", "key-oa")
	id := func() string {
		t.Helper()
		r := c.do(t, s, port, apiCall{name: "create on Redis", method: "POST", target: "/v3/tasks/async/oa/pan", header: oa,
			body: createBody("t-redis", "g-redis", `{}`), fits: true, status: 202})
		var a struct {
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal(r.body, &a)
		return a.RequestID
	}()
	// A dynamic account with an endpoint, for the endpoint writes.
	dyn := createAccount(t, s, `{"id":"dyn","name":"Dyn"}`)
	var ep struct {
		ID string `json:"id"`
	}
	r := c.do(t, s, port, apiCall{name: "an endpoint on Redis", method: "POST", target: "/v3/webhooks", header: jsonHeader(dyn.ID, dyn.APIKey),
		body: `{"url":"https://hooks.example.com/up"}`, fits: true, status: 201})
	_ = json.Unmarshal(r.body, &ep)
	rs.kill()
	for _, call := range storeDownEndpointCalls(ep.ID) {
		call.name = "Redis down: " + call.method + " " + call.target
		call.header, call.fits = jsonHeader(dyn.ID, dyn.APIKey), true
		call.status, call.code = http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE"
		c.do(t, s, port, call)
	}
	create := createBody("t-down", "g-redis", `{}`)
	for _, call := range []apiCall{
		{method: "POST", target: "/v3/tasks/async/oa/pan", body: create},
		{method: "POST", target: "/v3/tasks/sync/oa/pan", body: create},
		{method: "GET", target: "/v3/tasks?request_id=" + id},
		{method: "GET", target: "/v3/webhooks/deliveries?status=failed"},
		{method: "POST", target: "/v3/webhooks/deliveries/msg_0000000000000000000000/retry"},
	} {
		call.name = "Redis down: " + call.method + " " + call.target
		call.header, call.fits = oa, true
		call.status, call.code = http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE"
		sent := time.Now()
		c.do(t, s, port, call)
		if took := time.Since(sent); took > storeDownAnswer {
			t.Errorf("%s: answered after %v, want within %v", call.name, took.Round(time.Millisecond), storeDownAnswer)
		}
	}
}
