// Package apierr is the one place where outcomes become wire errors: an HTTP
// status and a JSON body {"error":"CODE","message":"…"}.
package apierr

import (
	"encoding/json"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Error is a client-visible error.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// The errors of the edge chain.
var (
	MissingCredentials = &Error{http.StatusUnauthorized, "MISSING_CREDENTIALS", "the account-id and api-key headers are required"}
	InvalidCredentials = &Error{http.StatusForbidden, "INVALID_CREDENTIALS", "the account-id or api-key is not valid"}
	IPNotAllowed       = &Error{http.StatusForbidden, "IP_NOT_ALLOWED", "requests from this address are not allowed for this account"}
	TooManyRequests    = &Error{http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "rate limit exceeded; retry after the time in the Retry-After header"}
	// TooManyFailedAuthentications refuses every request from a client
	// address that failed authentication too often, before its
	// credentials are looked at: its own code, so that a client that sent
	// right credentials learns why it is refused.
	TooManyFailedAuthentications = &Error{http.StatusTooManyRequests, "TOO_MANY_FAILED_AUTHENTICATIONS", "too many failed authentications from this address; retry after the time in the Retry-After header"}
)

// Write sends e as the response, and tells w its code when w records
// codes.
func Write(w http.ResponseWriter, e *Error) {
	recordCode(w, e.Code)
	WriteJSON(w, e.Status, e)
}

// recordCode tells the first CodeRecorder in w's chain of wrappers (other
// handlers may wrap the writer after the one that records) the code.
func recordCode(w http.ResponseWriter, code string) {
	for range 16 {
		if rec, ok := w.(CodeRecorder); ok {
			rec.RecordErrorCode(code)
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// A CodeRecorder is told the code of the error written to it: a response
// writer that counts outcomes (usage by reason) implements it.
type CodeRecorder interface {
	RecordErrorCode(code string)
}

// The errors of the task API.
var (
	NotFound            = &Error{http.StatusNotFound, "NOT_FOUND", "no such resource"}
	MethodNotAllowed    = &Error{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "this method is not allowed on this resource"}
	PayloadTooLarge     = &Error{http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "the request body is too large"}
	RequestTimeout      = &Error{http.StatusRequestTimeout, "REQUEST_TIMEOUT", "the request body did not arrive in time"}
	UnsupportedMedia    = &Error{http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "the request body must be application/json"}
	StorageUnavailable  = &Error{http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE", "the task store is unavailable; retry later"}
	IdempotencyMismatch = &Error{http.StatusUnprocessableEntity, "IDEMPOTENCY_MISMATCH", "this Idempotency-Key was used with a different request"}
	// QuotaExceeded refuses a task over one of its account's quotas,
	// until the quota's period ends (Retry-After).
	QuotaExceeded = &Error{http.StatusTooManyRequests, "QUOTA_EXCEEDED", "the account's quota for this task type is spent; retry after the time in the Retry-After header"}
)

// The errors of the admin API.
var (
	AccountExists = &Error{http.StatusConflict, "ACCOUNT_EXISTS", "an account with this id exists"}
	StaticAccount = &Error{http.StatusConflict, "STATIC_ACCOUNT", "this account is defined in the configuration and cannot be changed here"}
	TooManyKeys   = &Error{http.StatusConflict, "TOO_MANY_KEYS", "the account holds the most keys it may; revoke one first"}
	NotRunning    = &Error{http.StatusServiceUnavailable, "NOT_RUNNING", "the taskgate app is not running"}
)

// BadRequest is a 400 BAD_REQUEST with its own message.
func BadRequest(message string) *Error {
	return &Error{http.StatusBadRequest, "BAD_REQUEST", message}
}

// Unprocessable is a 422 UNPROCESSABLE_ENTITY with its own message.
func Unprocessable(message string) *Error {
	return &Error{http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", message}
}

// Timeout is a 504 TIMEOUT that names the task still running.
type Timeout struct {
	Code      string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// WriteJSON sends v as a JSON response with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Write(w, &Error{http.StatusInternalServerError, "INTERNAL", "the answer could not be encoded"})
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// CleanPath tells whether p is a clean path ("..", "." and empty segments
// gone; a trailing slash may stay). Routers answer an unclean path with a
// redirect, as HTML: the APIs answer 404 NOT_FOUND instead.
func CleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}
