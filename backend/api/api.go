// Package api serves the client API of tasks over HTTP: creating tasks
// (async and sync), reading and waiting for them. It sits behind the edge
// chain, which has authenticated the account.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/internal/jsonkey"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Limits of client input.
const (
	// MaxIDLength bounds task_id, group_id and request_id.
	MaxIDLength = 256
	// MaxDepth bounds the nesting of a request body.
	MaxDepth = 64
	// MaxWait bounds a long poll.
	MaxWait = 30 * time.Second
	// MaxIdempotencyKey bounds the Idempotency-Key header.
	MaxIdempotencyKey = 255
)

// DefaultBodyTimeout is the BodyTimeout of an API that sets none.
const DefaultBodyTimeout = 30 * time.Second

// API answers the client API.
type API struct {
	Service *task.Service
	// Types are the configured task types by "action/type".
	Types map[string]*task.Type
	// MaxBody bounds request bodies.
	MaxBody int64
	// BodyTimeout bounds the time a request body takes to arrive, from the
	// moment the API starts reading it. Zero is DefaultBodyTimeout.
	BodyTimeout time.Duration
	// SyncTimeout bounds how long a sync call waits.
	SyncTimeout time.Duration
	// Deliveries, when set, serves the deliveries API.
	Deliveries webhook.Store
	// WakeDeliveries, when set, is called after a delivery is queued again.
	WakeDeliveries func()
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// DefaultLimit is the rate limit of accounts that set none, as
	// GET /v3/account shows it.
	DefaultLimit ratelimit.Limit
	// SourceState, when set, says how a task type's source is doing, for
	// GET /v3/status (its TaskType is filled in); unset, every source is
	// up.
	SourceState func(t *task.Type) TypeStatus
	// Quotas, when set, tells GET /v3/account how the account's quotas
	// stand.
	Quotas *quota.Book
	// OnQuotaExceeded, when set, is told of each create refused by a
	// quota (for metrics).
	OnQuotaExceeded func(typ *task.Type, q quota.Quota)
	// Endpoints, when set, serves the account's webhook endpoints.
	Endpoints *endpoints.Service

	routesOnce sync.Once
	mux        *http.ServeMux
}

func (a *API) now() time.Time {
	return a.Clock.Now()
}

// Serve answers one request of the account. Paths are matched from /v3/.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, acct *account.Account) {
	a.routesOnce.Do(a.route)
	if !apierr.CleanPath(r.URL.Path) {
		apierr.Write(w, apierr.NotFound)
		return
	}
	a.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accountKey{}, acct)))
}

// accountKey carries the account of a request from Serve to its route.
type accountKey struct{}

// accountOf returns the account Serve was given.
func accountOf(r *http.Request) *account.Account {
	return r.Context().Value(accountKey{}).(*account.Account)
}

// route builds the routes. A path known with another method gets 405 with
// Allow, and an unknown path (or task type) 404, both as JSON errors
// (ServeMux's own answers are text).
func (a *API) route() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v3/tasks", func(w http.ResponseWriter, r *http.Request) { a.get(w, r, accountOf(r)) })
	mux.HandleFunc("/v3/tasks", allowOnly("GET"))
	mux.HandleFunc("GET /v3/account", func(w http.ResponseWriter, r *http.Request) { a.showAccount(w, r, accountOf(r)) })
	mux.HandleFunc("/v3/account", allowOnly("GET"))
	mux.HandleFunc("GET /v3/status", func(w http.ResponseWriter, r *http.Request) { a.showStatus(w, accountOf(r)) })
	mux.HandleFunc("/v3/status", allowOnly("GET"))
	for _, mode := range []string{"async", "sync"} {
		mux.HandleFunc("/v3/tasks/"+mode+"/{action}/{type}", func(w http.ResponseWriter, r *http.Request) {
			acct := accountOf(r)
			name := r.PathValue("action") + "/" + r.PathValue("type")
			typ, ok := a.Types[name]
			switch {
			case !ok || !acct.MayUse(name):
				apierr.Write(w, apierr.NotFound)
			case r.Method != http.MethodPost:
				methodNotAllowed(w, "POST")
			default:
				a.create(w, r, acct, typ, mode == "async")
			}
		})
	}
	if a.Deliveries != nil {
		list := func(w http.ResponseWriter, r *http.Request) { a.listDeliveries(w, r, accountOf(r)) }
		mux.HandleFunc("GET /v3/webhooks/deliveries", list)
		mux.HandleFunc("GET /v3/webhooks/deliveries/{$}", list)
		mux.HandleFunc("/v3/webhooks/deliveries", allowOnly("GET"))
		mux.HandleFunc("/v3/webhooks/deliveries/{$}", allowOnly("GET"))
		mux.HandleFunc("POST /v3/webhooks/deliveries/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
			a.retryDelivery(w, r, accountOf(r), r.PathValue("id"))
		})
		mux.HandleFunc("/v3/webhooks/deliveries/{id}/retry", allowOnly("POST"))
	}
	if a.Endpoints != nil {
		endpoints := func(w http.ResponseWriter, r *http.Request) {
			a.Endpoints.Serve(w, r, accountOf(r).ID, strings.TrimPrefix(r.URL.Path, "/v3/webhooks"), false)
		}
		mux.HandleFunc("/v3/webhooks", endpoints)
		mux.HandleFunc("/v3/webhooks/{rest...}", endpoints)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { apierr.Write(w, apierr.NotFound) })
	a.mux = mux
}

// allowOnly answers 405 with the methods a path takes.
func allowOnly(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { methodNotAllowed(w, allow) }
}

// TaskType returns the configured task type ("action/type") that a path
// of the create calls names, or "" when it names none.
func (a *API) TaskType(path string) string {
	name, ok := strings.CutPrefix(path, "/v3/tasks/async/")
	if !ok {
		name, ok = strings.CutPrefix(path, "/v3/tasks/sync/")
	}
	if _, known := a.Types[name]; !ok || !known {
		return ""
	}
	return name
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	apierr.Write(w, apierr.MethodNotAllowed)
}

// createBody is the body of a create call.
type createBody struct {
	TaskID  *string         `json:"task_id"`
	GroupID *string         `json:"group_id"`
	Data    json.RawMessage `json:"data"`
}

func (a *API) create(w http.ResponseWriter, r *http.Request, acct *account.Account, typ *task.Type, async bool) {
	body, apiErr := a.readBody(w, r)
	if apiErr != nil {
		apierr.Write(w, apiErr)
		return
	}
	in, e := decodeCreateBody(body)
	if e != nil {
		apierr.Write(w, e)
		return
	}
	key, e := idempotencyKey(r)
	if e != nil {
		apierr.Write(w, e)
		return
	}
	t, _, err := a.Service.Create(r.Context(), task.NewTask{
		AccountID:      acct.ID,
		Type:           typ,
		TaskID:         *in.TaskID,
		GroupID:        *in.GroupID,
		Data:           in.Data,
		Async:          async,
		IdempotencyKey: key,
		Body:           body,
		Quotas:         acct.Quotas,
		QuotaStatus:    func(st []quota.Status) { a.quotaHeaders(w, acct.Quotas, st) },
	})
	var over *quota.Exceeded
	if errors.As(err, &over) {
		if a.OnQuotaExceeded != nil {
			a.OnQuotaExceeded(typ, over.Quota)
		}
		a.quotaHeaders(w, acct.Quotas, []quota.Status{{Quota: over.Quota, ResetAt: over.ResetAt}})
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, ratelimit.CeilSeconds(over.RetryAfter)), 10))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if async {
		apierr.WriteJSON(w, http.StatusAccepted, map[string]string{"request_id": t.RequestID})
		return
	}
	requestID := t.RequestID
	t, err = a.Service.Wait(r.Context(), acct.ID, requestID, a.SyncTimeout)
	switch {
	case err != nil:
		// The task is accepted: an answer without its request id would
		// have the client create it again. Its end could not be read (the
		// store out of reach for a moment, or, for a replay, the task
		// purged since): the client polls for it.
		writeTimeout(w, requestID, "the task was accepted but its end could not be read")
	case !t.Status.Terminal():
		writeTimeout(w, requestID, "the task did not finish within "+a.SyncTimeout.String()+"; it goes on")
	default:
		apierr.WriteJSON(w, http.StatusOK, t.View())
	}
}

// writeTimeout answers a sync call whose task was accepted but whose end
// it cannot give, for why: 504 TIMEOUT, with the request id to poll.
func writeTimeout(w http.ResponseWriter, requestID, why string) {
	apierr.WriteJSON(w, http.StatusGatewayTimeout, apierr.Timeout{
		Code:      "TIMEOUT",
		Message:   why + ": poll GET /v3/tasks?request_id=" + requestID,
		RequestID: requestID,
	})
}

// createKeys are the exact keys of a create body. Other keys are ignored,
// but not a key that differs from one of these only in case:
// encoding/json would take it for the field.
var createKeys = jsonkey.For(reflect.TypeFor[createBody]())

// decodeCreateBody decodes and checks the body of a create call, once
// readBody has read it.
func decodeCreateBody(body []byte) (createBody, *apierr.Error) {
	var in createBody
	if err := createKeys.Check(body); err != nil {
		return in, apierr.BadRequest(err.Error())
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, apierr.BadRequest("the body must be a JSON object: " + jsonProblem(err))
	}
	if e := validateID("task_id", in.TaskID); e != nil {
		return in, e
	}
	if e := validateID("group_id", in.GroupID); e != nil {
		return in, e
	}
	if len(in.Data) == 0 || in.Data[0] != '{' {
		return in, apierr.Unprocessable("data must be a JSON object")
	}
	return in, nil
}

// readBody reads a JSON request body of at most MaxBody bytes, which must
// arrive within BodyTimeout, and checks that it is valid UTF-8, valid JSON
// and not nested too deep.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apierr.Error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, apierr.UnsupportedMedia
		}
	}
	if r.ContentLength > a.MaxBody {
		return nil, tooLarge(a.MaxBody)
	}
	// A client that sends its body slowly, or never ends it, would hold
	// its connection and a goroutine for as long as it likes.
	timeout := a.BodyTimeout
	if timeout <= 0 {
		timeout = DefaultBodyTimeout
	}
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.MaxBody))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The rest of the body may still come, and the server would wait
		// for it before answering, to use the connection again: the
		// deadline stays, and the connection closes after the answer.
		w.Header().Set("Connection", "close")
		return nil, apierr.RequestTimeout
	}
	if deadline {
		// The bound is for the body alone: lifted once it is in, so that
		// nothing the server reads later (to notice a client that goes
		// away during a sync call's wait) meets it. Go's HTTP/1 server
		// lifts it too when the body ends.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge(a.MaxBody)
		}
		return nil, apierr.BadRequest("the request body could not be read")
	}
	if e := checkJSON(body); e != nil {
		return nil, e
	}
	return body, nil
}

// checkJSON checks that body is valid UTF-8, one valid JSON value, and not
// nested too deep.
func checkJSON(body []byte) *apierr.Error {
	if !utf8.Valid(body) {
		return apierr.BadRequest("the body is not valid UTF-8")
	}
	if depth, ok := jsonDepth(body); !ok {
		return apierr.BadRequest("the body is not valid JSON")
	} else if depth > MaxDepth {
		return apierr.BadRequest("the body is nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	}
	return nil
}

func tooLarge(limit int64) *apierr.Error {
	e := *apierr.PayloadTooLarge
	e.Message = "the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"
	return &e
}

// jsonDepth returns how deeply b nests objects and arrays, and whether b is
// one valid JSON value.
func jsonDepth(b []byte) (int, bool) {
	if !json.Valid(b) {
		return 0, false
	}
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest, true
}

// jsonProblem says what is wrong with a body, without echoing it.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field != "" {
			return typeErr.Field + " must be a " + jsonKind(typeErr.Type.Kind().String())
		}
		return "found " + typeErr.Value
	}
	return "malformed JSON"
}

func jsonKind(goKind string) string {
	if goKind == "ptr" || goKind == "string" {
		return "string"
	}
	return goKind
}

func validateID(field string, v *string) *apierr.Error {
	switch {
	case v == nil:
		return apierr.Unprocessable(field + " is required")
	case *v == "" || len(*v) > MaxIDLength:
		return apierr.Unprocessable(field + " must be 1 to " + strconv.Itoa(MaxIDLength) + " bytes")
	}
	return nil
}

// idempotencyKey reads the Idempotency-Key header: 1–255 printable ASCII
// characters, or absent.
func idempotencyKey(r *http.Request) (string, *apierr.Error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	k := vals[0]
	if len(vals) > 1 || k == "" || len(k) > MaxIdempotencyKey {
		return "", apierr.BadRequest("Idempotency-Key must be one value of 1 to 255 printable ASCII characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", apierr.BadRequest("Idempotency-Key must be one value of 1 to 255 printable ASCII characters")
		}
	}
	return k, nil
}

func (a *API) get(w http.ResponseWriter, r *http.Request, acct *account.Account) {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		apierr.Write(w, apierr.BadRequest(err.Error()))
		return
	}
	requestID, groupID, taskID := q.Get("request_id"), q.Get("group_id"), q.Get("task_id")
	given := 0
	for _, v := range []string{requestID, groupID, taskID} {
		if v != "" {
			given++
			if len(v) > MaxIDLength {
				apierr.Write(w, apierr.BadRequest("ids are at most "+strconv.Itoa(MaxIDLength)+" bytes"))
				return
			}
		}
	}
	if given != 1 {
		apierr.Write(w, apierr.BadRequest("give exactly one of request_id, group_id and task_id"))
		return
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > int(MaxWait/time.Second) || requestID == "" {
			apierr.Write(w, apierr.BadRequest("wait must be whole seconds from 0 to 30, with request_id"))
			return
		}
		wait = time.Duration(n) * time.Second
	}
	var tasks []*task.Task
	switch {
	case requestID != "":
		var t *task.Task
		t, err = a.Service.Wait(r.Context(), acct.ID, requestID, wait)
		tasks = []*task.Task{t}
	case groupID != "":
		tasks, err = a.Service.ListByGroup(r.Context(), acct.ID, groupID)
	default:
		tasks, err = a.Service.ListByTaskID(r.Context(), acct.ID, taskID)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	views := make([]task.View, len(tasks))
	for i, t := range tasks {
		views[i] = t.View()
	}
	apierr.WriteJSON(w, http.StatusOK, views)
}

// quotaHeaders adds the quotas that cover a task to the RateLimit-Policy
// and RateLimit headers, after the rate limit's own policy: the draft
// allows several policies, items of one list, which stay on one field line
// for clients that read only the first. Each quota is named by PolicyName
// among all the account's quotas.
func (a *API) quotaHeaders(w http.ResponseWriter, all []quota.Quota, st []quota.Status) {
	now := a.now()
	h := w.Header()
	for _, s := range st {
		i := slices.IndexFunc(all, func(q quota.Quota) bool { return q.ID() == s.Quota.ID() })
		if i < 0 {
			continue
		}
		name := quota.PolicyName(all, i)
		appendItem(h, "RateLimit-Policy", s.Quota.PolicyHeader(name, now))
		appendItem(h, "RateLimit", quota.StateHeader(name, s.Left, s.ResetAt.Sub(now)))
	}
}

// appendItem adds an item to the list of a structured header field.
func appendItem(h http.Header, name, item string) {
	if old := h.Get(name); old != "" {
		item = old + ", " + item
	}
	h.Set(name, item)
}

// writeError answers with the wire error of err (apierr.From).
func writeError(w http.ResponseWriter, err error) { apierr.Write(w, apierr.From(err)) }
