package apierr

import (
	"errors"
	"net/http"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// From maps an engine error to its wire error: the one place where that
// happens, for the client API and the admin API alike. An *Error is its
// own wire error; an error with an APIError method (bad input, which its
// package describes) gives that; the engine's sentinel errors have theirs;
// anything else is the store failing, 503 STORAGE_UNAVAILABLE, whose
// message tells the client to retry and nothing of the cause.
func From(err error) *Error {
	var wire *Error
	var described interface{ APIError() *Error }
	switch {
	case errors.As(err, &wire):
		return wire
	case errors.As(err, &described):
		return described.APIError()
	case errors.Is(err, task.ErrNotFound), errors.Is(err, webhook.ErrNotFound):
		return NotFound
	case errors.Is(err, task.ErrIdempotencyMismatch):
		return IdempotencyMismatch
	case errors.Is(err, quota.ErrExceeded):
		return QuotaExceeded
	case errors.Is(err, account.ErrNotFound):
		return noSuchAccount
	case errors.Is(err, account.ErrKeyNotFound):
		return noSuchKey
	case errors.Is(err, account.ErrExists):
		return AccountExists
	case errors.Is(err, account.ErrStatic):
		return StaticAccount
	case errors.Is(err, account.ErrTooManyKeys):
		return TooManyKeys
	case errors.Is(err, maintenance.ErrNotFound):
		return noSuchWindow
	}
	return StorageUnavailable
}

// The admin API's 404s, which say what is missing.
var (
	noSuchAccount = &Error{http.StatusNotFound, "NOT_FOUND", "no such account"}
	noSuchKey     = &Error{http.StatusNotFound, "NOT_FOUND", "the account has no key with this id"}
	noSuchWindow  = &Error{http.StatusNotFound, "NOT_FOUND", "no such maintenance window"}
)
