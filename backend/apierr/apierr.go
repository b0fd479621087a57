// Package apierr is the one place where outcomes become wire errors: an HTTP
// status and a JSON body {"error":"CODE","message":"…"}.
package apierr

import (
	"encoding/json"
	"net/http"
	"strconv"
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
)

// body encodes e as the response body.
func (e *Error) body() []byte {
	b, _ := json.Marshal(e)
	return append(b, '\n')
}

// Write sends e as the response.
func Write(w http.ResponseWriter, e *Error) {
	b := e.body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}
