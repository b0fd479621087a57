package apierr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

type described struct{}

func (described) Error() string    { return "bad input" }
func (described) APIError() *Error { return BadRequest("bad input") }

func TestFrom(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{task.ErrNotFound, 404, "NOT_FOUND"},
		{fmt.Errorf("listing: %w", webhook.ErrNotFound), 404, "NOT_FOUND"},
		{task.ErrIdempotencyMismatch, 422, "IDEMPOTENCY_MISMATCH"},
		{account.ErrNotFound, 404, "NOT_FOUND"},
		{account.ErrKeyNotFound, 404, "NOT_FOUND"},
		{account.ErrExists, 409, "ACCOUNT_EXISTS"},
		{account.ErrStatic, 409, "STATIC_ACCOUNT"},
		{account.ErrTooManyKeys, 409, "TOO_MANY_KEYS"},
		{fmt.Errorf("wrapped: %w", described{}), 400, "BAD_REQUEST"},
		{fmt.Errorf("wrapped: %w", PayloadTooLarge), 413, "PAYLOAD_TOO_LARGE"},
		{errors.New("connection refused"), 503, "STORAGE_UNAVAILABLE"},
	} {
		got := From(tc.err)
		if got.Status != tc.status || got.Code != tc.code || got.Message == "" {
			t.Errorf("From(%v) = %+v, want %d %s with a message", tc.err, got, tc.status, tc.code)
		}
	}
}
