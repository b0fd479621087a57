package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// noEndpoint is an endpoint id no account has.
const noEndpoint = "we_0000000000000000"

// endpointOps are the operations of the webhook endpoints API, for the
// edge chain's answers on every operation.
var endpointOps = []apiCall{
	{method: "GET", target: "/v3/webhooks"},
	{method: "POST", target: "/v3/webhooks", body: `{"url":"https://hooks.example.com/x"}`},
	{method: "GET", target: "/v3/webhooks/" + noEndpoint},
	{method: "PATCH", target: "/v3/webhooks/" + noEndpoint, body: `{"enabled":false}`},
	{method: "DELETE", target: "/v3/webhooks/" + noEndpoint},
	{method: "POST", target: "/v3/webhooks/" + noEndpoint + "/rotate-secret", body: `{"grace":"1h"}`},
	{method: "POST", target: "/v3/webhooks/" + noEndpoint + "/test"},
}

// testOpenAPIEndpoints makes every exchange of the webhook endpoints API,
// successes and errors, and validates the test event and the notice of a
// disabled endpoint against the document's webhooks.
func testOpenAPIEndpoints(t *testing.T, c *contract) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, call sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	recv := newHookReceiver(t, func(r *http.Request, _ int) int {
		if r.URL.Path == "/gone" {
			return http.StatusGone
		}
		return http.StatusNoContent
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: fmt.Sprintf(`
taskgate {
	storage memory
	auth_failures off
	account st {
		key key-st
		webhook https://hooks.example.com/static
	}
	task_type oe/pan {
		source %[1]s/pan
	}
	webhooks {
		allow_private 127.0.0.1/32
		timeout 2s
	}
}`, src.url), Sites: taskSite(port)})
	self := createAccount(t, s, fmt.Sprintf(`{"id":"self","name":"Self","failure_webhook":%q}`, recv.url+"/failures"))
	locked := createAccount(t, s, `{"id":"locked","name":"Locked","webhooks_locked":true,"webhooks":[{"url":"https://hooks.example.com/locked"}]}`)
	full := createAccount(t, s, `{"id":"full","name":"Full"}`)
	as := func(a createdAccount, extra ...string) http.Header { return jsonHeader(a.ID, a.APIKey, extra...) }
	do := func(call apiCall) response {
		t.Helper()
		if call.method == "" {
			call.method = "GET"
		}
		return c.do(t, s, port, call)
	}
	var ep struct {
		ID string `json:"id"`
	}
	r := do(apiCall{name: "create an endpoint", method: "POST", target: "/v3/webhooks", header: as(self),
		body: `{"url":"` + recv.url + `/hooks","task_types":["oe/pan"],"description":"main"}`, fits: true, status: 201})
	_ = json.Unmarshal(r.body, &ep)
	id := "/v3/webhooks/" + ep.ID
	var st struct {
		Webhooks []struct {
			ID string `json:"id"`
		} `json:"webhooks"`
	}
	r = do(apiCall{name: "the static account's list", target: "/v3/webhooks", header: jsonHeader("st", "key-st"), fits: true, status: 200})
	if _ = json.Unmarshal(r.body, &st); len(st.Webhooks) != 1 {
		t.Fatalf("the static account's list: %s", r.body)
	}
	staticID := "/v3/webhooks/" + st.Webhooks[0].ID
	var lk struct {
		Webhooks []struct {
			ID string `json:"id"`
		} `json:"webhooks"`
	}
	r = do(apiCall{name: "a locked account's list", target: "/v3/webhooks", header: as(locked), fits: true, status: 200})
	if _ = json.Unmarshal(r.body, &lk); len(lk.Webhooks) != 1 {
		t.Fatalf("the locked account's list: %s", r.body)
	}
	lockedID := "/v3/webhooks/" + lk.Webhooks[0].ID
	for i := range 20 {
		do(apiCall{name: "fill an account", method: "POST", target: "/v3/webhooks", header: as(full),
			body: fmt.Sprintf(`{"url":"https://hooks.example.com/%d"}`, i), fits: true, status: 201})
	}
	big := `{"description":"` + strings.Repeat("x", 70<<10) + `"}`
	text := as(self, "Content-Type", "text/plain")

	for _, call := range []apiCall{
		{name: "list", target: "/v3/webhooks", fits: true, status: 200},
		{name: "PUT the list", method: "PUT", target: "/v3/webhooks", body: `{}`, status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "create to a link-local address", method: "POST", target: "/v3/webhooks", body: `{"url":"http://169.254.169.254/"}`, fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "create with an unknown field", method: "POST", target: "/v3/webhooks", body: `{"url":"https://hooks.example.com/y","secret":"mine"}`, status: 400, code: "BAD_REQUEST"},
		{name: "create, locked", method: "POST", target: "/v3/webhooks", header: as(locked), body: `{"url":"https://hooks.example.com/z"}`, fits: true, status: 403, code: "SELF_SERVICE_DISABLED"},
		{name: "create, static", method: "POST", target: "/v3/webhooks", header: jsonHeader("st", "key-st"), body: `{"url":"https://hooks.example.com/z"}`, fits: true, status: 409, code: "ENDPOINT_READ_ONLY"},
		{name: "create, full", method: "POST", target: "/v3/webhooks", header: as(full), body: `{"url":"https://hooks.example.com/z"}`, fits: true, status: 409, code: "TOO_MANY_ENDPOINTS"},
		{name: "create, too large", method: "POST", target: "/v3/webhooks", body: big, fits: true, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "create, text/plain", method: "POST", target: "/v3/webhooks", header: text, body: `{"url":"https://hooks.example.com/z"}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "show", target: id, fits: true, status: 200},
		{name: "show an unknown endpoint", target: "/v3/webhooks/" + noEndpoint, fits: true, status: 404, code: "NOT_FOUND"},
		{name: "PUT an endpoint", method: "PUT", target: id, body: `{}`, status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "change", method: "PATCH", target: id, body: `{"description":"primary"}`, fits: true, status: 200},
		{name: "change to a private address", method: "PATCH", target: id, body: `{"url":"http://10.1.2.3/"}`, fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "change, locked", method: "PATCH", target: lockedID, header: as(locked), body: `{"enabled":false}`, fits: true, status: 403, code: "SELF_SERVICE_DISABLED"},
		{name: "change an unknown endpoint", method: "PATCH", target: "/v3/webhooks/" + noEndpoint, body: `{"enabled":false}`, fits: true, status: 404, code: "NOT_FOUND"},
		{name: "change, static", method: "PATCH", target: staticID, header: jsonHeader("st", "key-st"), body: `{"enabled":false}`, fits: true, status: 409, code: "ENDPOINT_READ_ONLY"},
		{name: "change, too large", method: "PATCH", target: id, body: big, fits: true, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "change, text/plain", method: "PATCH", target: id, header: text, body: `{"enabled":true}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "rotate", method: "POST", target: id + "/rotate-secret", body: `{"grace":"2h"}`, fits: true, status: 200},
		{name: "rotate with no body", method: "POST", target: id + "/rotate-secret", fits: true, status: 200},
		{name: "rotate with a grace of 1000h", method: "POST", target: id + "/rotate-secret", body: `{"grace":"1000h"}`, fits: true, status: 400, code: "BAD_REQUEST"},
		{name: "rotate, locked", method: "POST", target: lockedID + "/rotate-secret", header: as(locked), fits: true, status: 403, code: "SELF_SERVICE_DISABLED"},
		{name: "rotate an unknown endpoint", method: "POST", target: "/v3/webhooks/" + noEndpoint + "/rotate-secret", fits: true, status: 404, code: "NOT_FOUND"},
		{name: "rotate, static", method: "POST", target: staticID + "/rotate-secret", header: jsonHeader("st", "key-st"), fits: true, status: 409, code: "ENDPOINT_READ_ONLY"},
		{name: "rotate, too large", method: "POST", target: id + "/rotate-secret", body: `{"grace":"` + strings.Repeat("1", 70<<10) + `"}`, fits: true, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "rotate, text/plain", method: "POST", target: id + "/rotate-secret", header: text, body: `{"grace":"1h"}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "GET the rotation", target: id + "/rotate-secret", status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "test", method: "POST", target: id + "/test", fits: true, status: 200},
		{name: "test with a body", method: "POST", target: id + "/test", body: `{"extra":1}`, status: 400, code: "BAD_REQUEST"},
		{name: "test an unknown endpoint", method: "POST", target: "/v3/webhooks/" + noEndpoint + "/test", fits: true, status: 404, code: "NOT_FOUND"},
		{name: "test, too large", method: "POST", target: id + "/test", body: `{"x":"` + strings.Repeat("1", 70<<10) + `"}`, status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "test, text/plain", method: "POST", target: id + "/test", header: text, body: `{}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "GET the test", target: id + "/test", status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "delete, locked", method: "DELETE", target: lockedID, header: as(locked), fits: true, status: 403, code: "SELF_SERVICE_DISABLED"},
		{name: "delete, static", method: "DELETE", target: staticID, header: jsonHeader("st", "key-st"), fits: true, status: 409, code: "ENDPOINT_READ_ONLY"},
	} {
		if call.header == nil {
			call.header = as(self)
		}
		do(call)
	}

	// A receiver that answers 410: its endpoint is disabled and the
	// account's failure webhook hears of it.
	do(apiCall{name: "an endpoint that is gone", method: "POST", target: "/v3/webhooks", header: as(self),
		body: `{"url":"` + recv.url + `/gone","task_types":["oe/pan"]}`, fits: true, status: 201})
	do(apiCall{name: "a task for both", method: "POST", target: "/v3/tasks/async/oe/pan", header: as(self),
		body: createBody("t", "g", `{}`), fits: true, status: 202})
	recv.waitFor(t, "the test event, the deliveries and the notices", func() bool {
		n := 0
		for _, r := range recv.got {
			if r.Path == "/failures" {
				n++
			}
		}
		return n == 2
	})
	do(apiCall{name: "delete", method: "DELETE", target: id, header: as(self), fits: true, status: 200})
	do(apiCall{name: "delete again", method: "DELETE", target: id, header: as(self), fits: true, status: 404, code: "NOT_FOUND"})
	for _, got := range recv.requests() {
		var ev struct {
			Type  string `json:"type"`
			Event string `json:"event"`
		}
		_ = json.Unmarshal(got.Body, &ev)
		switch {
		case ev.Type == "webhook.test":
			c.checkHook(t, "webhookTest", got)
		case ev.Event == "webhook.disabled":
			c.checkHook(t, "webhookDisabled", got)
		case ev.Event == "webhook.failed":
			c.checkHook(t, "webhookFailed", got)
		default:
			c.checkHook(t, "taskFinished", got)
		}
	}
}

// storeDownEndpointCalls are the endpoint writes of an account whose
// endpoint id is given, as the store-down test makes them.
func storeDownEndpointCalls(endpointID string) []apiCall {
	id := "/v3/webhooks/" + endpointID
	return []apiCall{
		{method: "POST", target: "/v3/webhooks", body: `{"url":"https://hooks.example.com/down"}`},
		{method: "PATCH", target: id, body: `{"enabled":false}`},
		{method: "DELETE", target: id},
		{method: "POST", target: id + "/rotate-secret"},
	}
}
