package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var (
	errPassing = errors.New("store out of reach")
	errFinal   = errors.New("not found")
)

func isFinal(err error) bool { return errors.Is(err, errFinal) }

func TestDoRetriesUntilSuccess(t *testing.T) {
	calls := 0
	err := Backoff{First: time.Microsecond, Max: time.Microsecond}.Do(context.Background(), func() error {
		calls++
		if calls < 3 {
			return errPassing
		}
		return nil
	}, isFinal)
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
	}
}

func TestDoStopsAtAFinalError(t *testing.T) {
	calls := 0
	err := Default.Do(context.Background(), func() error { calls++; return errFinal }, isFinal)
	if !errors.Is(err, errFinal) || calls != 1 {
		t.Fatalf("err %v after %d calls, want errFinal after 1", err, calls)
	}
}

func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Backoff{First: time.Hour, Max: time.Hour}.Do(ctx, func() error {
		calls++
		cancel()
		return errPassing
	}, isFinal)
	if !errors.Is(err, errPassing) || calls != 1 {
		t.Fatalf("err %v after %d calls, want the last error after 1", err, calls)
	}
}
