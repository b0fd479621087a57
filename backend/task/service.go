package task

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// Type is a task type: the source its tasks run against and how.
type Type struct {
	// Action and Type name the task type, as in /v3/tasks/async/{action}/{type}.
	Action, Type string
	// Source is the URL workers POST tasks to.
	Source string
	// Timeout bounds one call to the source.
	Timeout time.Duration
	// Concurrency is the most calls to the source at once.
	Concurrency int
	// OutputKey names the result's key when the source is down.
	OutputKey string
	// RateLimit, when not zero, caps the calls to the source (across the
	// nodes that share a rate-limit store): a task whose turn has not
	// come waits, claimed, instead of failing.
	RateLimit ratelimit.Limit
}

// Name is the type's "action/type".
func (t *Type) Name() string { return t.Action + "/" + t.Type }

// Defaults of a task type.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 32
	DefaultOutputKey   = "source_output"
)

var outputKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Validate fills in defaults and checks the type.
func (t *Type) Validate() error {
	if t.Timeout == 0 {
		t.Timeout = DefaultTimeout
	}
	if t.Concurrency == 0 {
		t.Concurrency = DefaultConcurrency
	}
	if t.OutputKey == "" {
		t.OutputKey = DefaultOutputKey
	}
	switch {
	case t.Source == "":
		return fmt.Errorf("task type %s: no source", t.Name())
	case !isHTTPURL(t.Source):
		return fmt.Errorf("task type %s: source %q must be an absolute http:// or https:// URL", t.Name(), t.Source)
	case t.Timeout < 0:
		return fmt.Errorf("task type %s: timeout must be positive", t.Name())
	case t.Concurrency < 1 || t.Concurrency > 10000:
		return fmt.Errorf("task type %s: concurrency must be 1 to 10000", t.Name())
	case !outputKeyPattern.MatchString(t.OutputKey):
		return fmt.Errorf("task type %s: output_key must be 1-64 letters, digits, '_', '.' or '-'", t.Name())
	}
	return nil
}

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// ErrIdempotencyMismatch is the answer to an Idempotency-Key reused with
// another request.
var ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")

// Service creates tasks, reads them and waits for them to end.
type Service struct {
	store Store
	hub   *Hub
	now   clock.Clock
	// created is told of each new task (to wake the runner, to count).
	created func(t *Task)
	quotas  *quota.Book

	// Recheck, when not zero, is how often a waiter reads its task again
	// whether or not it was told the task ended: with a store shared by
	// several nodes, a notice from another node may be lost.
	Recheck time.Duration
}

// NewService returns a service over store. hub tells waiters of ends;
// created, when not nil, is called after each new task is stored (not
// after a replay).
func NewService(c ServiceConfig) *Service {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Created == nil {
		c.Created = func(*Task) {}
	}
	return &Service{store: c.Store, hub: c.Hub, now: c.Clock, created: c.Created, quotas: c.Quotas}
}

// ServiceConfig is what a Service is made of.
type ServiceConfig struct {
	// Store keeps the tasks.
	Store Store
	// Hub wakes the waiters of a task that ends.
	Hub *Hub
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// Created, when set, is told of each task created (not of an
	// idempotent repeat).
	Created func(t *Task)
	// Quotas, when set, spends the units of the accounts' quotas.
	Quotas *quota.Book
}

// NewTask is what a client asks for.
type NewTask struct {
	AccountID string
	Type      *Type
	TaskID    string
	GroupID   string
	Data      []byte
	Async     bool
	// IdempotencyKey, when not empty, makes the call safe to repeat.
	IdempotencyKey string
	// Body is the request body as sent, for the idempotency fingerprint.
	Body []byte
	// Quotas are the account's quotas: a new task spends a unit of each
	// that covers its type.
	Quotas []quota.Quota
	// QuotaStatus, when set, is told how the quotas covering the task
	// stand once it is accepted (not for a replay).
	QuotaStatus func([]quota.Status)
}

// Create stores and queues a new task, and returns it once durable. With
// an idempotency key already used for the same request, it returns the
// original task and replayed = true; used for another request, it returns
// ErrIdempotencyMismatch.
//
// A new task first spends a unit of each of the account's quotas that
// covers its type; over one, Create returns a *quota.Exceeded and stores
// nothing. A replay, or a task the store refuses or fails to store, gives
// the units back (a store that failed after storing the task all the
// same leaves it unbilled). A replay while a quota is spent is refused
// as over quota.
//
// Once begun, a create is not cut short by ctx ending (the client
// leaving): a spend or a store write whose caller gave up may still land,
// and would leave a unit spent for nothing, or a task stored unbilled.
// The stores bound their own calls.
func (s *Service) Create(ctx context.Context, n NewTask) (t *Task, replayed bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	ctx = context.WithoutCancel(ctx)
	var spent quota.Spent
	if s.quotas != nil && len(n.Quotas) > 0 {
		if spent, err = s.quotas.Spend(ctx, n.AccountID, n.Quotas, n.Type.Name()); err != nil {
			// A retry of a request that was accepted gets its answer, not
			// the refusal: the quota was spent by the original.
			if errors.Is(err, quota.ErrExceeded) && n.IdempotencyKey != "" {
				if t, ok, rerr := s.replay(ctx, n); rerr != nil || ok {
					return t, ok, rerr
				}
			}
			return nil, false, err
		}
		defer func() {
			if err != nil || replayed {
				_ = s.quotas.Undo(ctx, spent.Counters)
			} else if n.QuotaStatus != nil && spent.Status != nil {
				n.QuotaStatus(spent.Status)
			}
		}()
	}
	// A task that spent units is created at the instant they were spent
	// at, so that a refund (SOURCE_DOWN), given its creation, finds the
	// same periods.
	now := s.now().UTC()
	if !spent.At.IsZero() {
		now = spent.At.UTC()
	}
	// Version 7 ids grow with time, so a store keyed by them appends
	// instead of writing to random pages.
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, err
	}
	t = &Task{
		RequestID: id.String(),
		AccountID: n.AccountID,
		Action:    n.Type.Action,
		Type:      n.Type.Type,
		TaskID:    n.TaskID,
		GroupID:   n.GroupID,
		Data:      n.Data,
		Status:    InProgress,
		CreatedAt: now,
		Async:     n.Async,
	}
	var idem *Idempotency
	if n.IdempotencyKey != "" {
		idem = &Idempotency{
			AccountID:   n.AccountID,
			Key:         n.IdempotencyKey,
			Fingerprint: fingerprint(n),
			RequestID:   t.RequestID,
			CreatedAt:   now,
		}
	}
	existing, err := s.store.Create(ctx, t, idem, now.Add(-IdempotencyTTL))
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return s.original(ctx, n, existing)
	}
	s.created(t)
	return t, false, nil
}

// replay returns the answer to an earlier request with n's Idempotency-Key,
// when there is one (ok), without creating anything.
func (s *Service) replay(ctx context.Context, n NewTask) (*Task, bool, error) {
	rec, err := s.store.IdempotencyGet(ctx, n.AccountID, n.IdempotencyKey, s.now().UTC().Add(-IdempotencyTTL))
	if err != nil || rec == nil {
		return nil, false, err
	}
	return s.original(ctx, n, rec)
}

// original returns the task an idempotency record answered with, or
// ErrIdempotencyMismatch when n asks something else.
func (s *Service) original(ctx context.Context, n NewTask, rec *Idempotency) (*Task, bool, error) {
	if rec.Fingerprint != fingerprint(n) {
		return nil, false, ErrIdempotencyMismatch
	}
	orig, err := s.store.Get(ctx, n.AccountID, rec.RequestID)
	if errors.Is(err, ErrNotFound) {
		// Purged already (retention shorter than a day): the original
		// answer stands all the same.
		return &Task{RequestID: rec.RequestID, AccountID: n.AccountID, Action: n.Type.Action, Type: n.Type.Type, Async: n.Async}, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return orig, true, nil
}

// fingerprint identifies what a request asked: its mode, type and body.
func fingerprint(n NewTask) string {
	h := sha256.New()
	mode := "sync\n"
	if n.Async {
		mode = "async\n"
	}
	h.Write([]byte(mode))
	h.Write([]byte(n.Type.Name() + "\n"))
	h.Write(n.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns the account's task with the request id, or ErrNotFound.
func (s *Service) Get(ctx context.Context, accountID, requestID string) (*Task, error) {
	return s.store.Get(ctx, accountID, requestID)
}

// Find returns the task with the request id, whichever account's, or
// ErrNotFound.
func (s *Service) Find(ctx context.Context, requestID string) (*Task, error) {
	return s.store.Find(ctx, requestID)
}

// ListLimit is the most tasks a listing returns.
const ListLimit = 100

// ListByGroup returns the account's newest tasks of a group.
func (s *Service) ListByGroup(ctx context.Context, accountID, groupID string) ([]*Task, error) {
	return s.store.ListByGroup(ctx, accountID, groupID, ListLimit)
}

// ListByTaskID returns the account's newest tasks with a task id.
func (s *Service) ListByTaskID(ctx context.Context, accountID, taskID string) ([]*Task, error) {
	return s.store.ListByTaskID(ctx, accountID, taskID, ListLimit)
}

// Wait returns the task once it has ended, or as it is when wait has
// passed or ctx ends.
func (s *Service) Wait(ctx context.Context, accountID, requestID string, wait time.Duration) (*Task, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var recheck <-chan time.Time
	if s.Recheck > 0 {
		t := time.NewTicker(s.Recheck)
		defer t.Stop()
		recheck = t.C
	}
	for first := true; ; first = false {
		done, cancel := s.hub.Subscribe(requestID)
		t, err := s.store.Get(ctx, accountID, requestID)
		switch {
		case err != nil && (first || errors.Is(err, ErrNotFound)):
			cancel()
			return nil, err
		case err != nil:
			// A look again that failed (the store out of reach for a
			// moment) ends nothing: the wait goes on to its deadline.
		case t.Status.Terminal() || wait <= 0:
			cancel()
			return t, nil
		}
		select {
		case <-done:
			// Ended, or woken to look again (a notice may have been
			// missed): the loop reads the task.
		case <-recheck:
		case <-deadline.C:
			cancel()
			return s.store.Get(context.WithoutCancel(ctx), accountID, requestID)
		case <-ctx.Done():
			cancel()
			return s.store.Get(context.WithoutCancel(ctx), accountID, requestID)
		case <-s.hub.Released():
			cancel()
			return s.store.Get(context.WithoutCancel(ctx), accountID, requestID)
		}
		cancel()
	}
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
