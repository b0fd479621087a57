// Package task is the engine of asynchronous tasks: what a task is, how it
// is stored, queued, run against its source and waited for.
package task

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Status is where a task is in its life.
type Status string

// The statuses of a task. A task is created in_progress and ends completed
// or failed.
const (
	InProgress Status = "in_progress"
	Completed  Status = "completed"
	Failed     Status = "failed"
)

// Terminal tells whether s is an end status.
func (s Status) Terminal() bool { return s == Completed || s == Failed }

// Task is one unit of work of an account, run against the source of its
// type.
type Task struct {
	RequestID   string          `json:"request_id"`
	AccountID   string          `json:"account_id"`
	Action      string          `json:"action"`
	Type        string          `json:"type"`
	TaskID      string          `json:"task_id"`
	GroupID     string          `json:"group_id"`
	Data        json.RawMessage `json:"data"`
	Status      Status          `json:"status"`
	CreatedAt   time.Time       `json:"created_at"`
	CompletedAt *time.Time      `json:"completed_at"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	Message     *string         `json:"message"`
	// Async tasks report to webhooks when they end; sync tasks do not.
	Async bool `json:"async"`
	// Attempts counts the times the task was handed to a worker.
	Attempts int `json:"attempts"`
	// Rescues counts the times its lease ran out and Rescue queued it
	// again: the runs cut short by their node (a crash, a pause), not
	// those given back (Release).
	Rescues int `json:"rescues,omitempty"`
}

// TypeName is the task's "action/type".
func (t *Task) TypeName() string { return t.Action + "/" + t.Type }

// Idempotency remembers the answer to a request made with an
// Idempotency-Key, for 24 hours.
type Idempotency struct {
	AccountID string `json:"account_id"`
	Key       string `json:"key"`
	// Fingerprint is the SHA-256 of what the request asked (mode, type and
	// body), hex-encoded: the same key with another fingerprint is a
	// mismatch.
	Fingerprint string    `json:"fingerprint"`
	RequestID   string    `json:"request_id"`
	CreatedAt   time.Time `json:"created_at"`
}

// Claim names one claim of a task: its request id and the Attempts the
// claim gave it, which no other claim of the task has, and its account,
// which tells a store that spreads accounts where the task is (a store
// then looks everywhere for a claim without one).
type Claim struct {
	RequestID string
	Attempts  int
	AccountID string
}

// ClaimOf returns the claim t was claimed under.
func ClaimOf(t *Task) Claim {
	return Claim{RequestID: t.RequestID, Attempts: t.Attempts, AccountID: t.AccountID}
}

// Errors of stores and of the service.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store keeps tasks, their queue and idempotency records durably. Every
// implementation passes the conformance suite in package tasktest.
//
// A store keeps its own copies: changing a task after passing it in, or
// one it returned, changes nothing stored. Lists come back non-nil, empty
// when nothing matches. After Close every method but Close returns an
// error; Close may be called more than once.
type Store interface {
	// Create stores t (status in_progress) and queues it under its type,
	// at the tail of its account's queue. When idem is not nil and the store holds a live record for
	// the same account and key (created at or after idemSince), Create
	// stores nothing and returns that record; otherwise it stores idem with
	// t, atomically (replacing an expired record), and returns nil. A
	// request id already stored gives ErrExists. Create returns only once
	// t is durable.
	Create(ctx context.Context, t *Task, idem *Idempotency, idemSince time.Time) (*Idempotency, error)

	// IdempotencyGet returns the account's idempotency record of the key
	// if one was created at or after since, else nil (and no error).
	IdempotencyGet(ctx context.Context, accountID, key string, since time.Time) (*Idempotency, error)

	// Get returns the task of the account with the request id, or
	// ErrNotFound (also when it belongs to another account).
	Get(ctx context.Context, accountID, requestID string) (*Task, error)

	// Find returns the task with the request id, whichever account's, or
	// ErrNotFound: for operators, who look a task up by its request id
	// alone.
	Find(ctx context.Context, requestID string) (*Task, error)

	// ListByGroup returns up to limit tasks of the account with the group
	// id, newest first (by CreatedAt). An empty group id matches nothing.
	ListByGroup(ctx context.Context, accountID, groupID string, limit int) ([]*Task, error)

	// ListByTaskID returns up to limit tasks of the account with the task
	// id, newest first (by CreatedAt). An empty task id matches nothing.
	ListByTaskID(ctx context.Context, accountID, taskID string, limit int) ([]*Task, error)

	// Claim takes up to n queued tasks of the type ("action/type"), leases
	// them until leaseUntil and increments their Attempts. The accounts
	// with queued tasks of the type take turns: they form a ring, in the
	// order they came to have queued tasks; each task claimed is the
	// oldest (first queued) of the account at the front, which then goes
	// to the back, or leaves the ring when it has nothing left queued. One
	// account's backlog thus delays another account's task by one task per
	// account ahead of it in the ring, not by the backlog. Tasks come back
	// in the order they were taken. A claimed task is not claimed again
	// until its lease is released or rescued.
	Claim(ctx context.Context, taskType string, n int, leaseUntil time.Time) ([]*Task, error)

	// Finish stores the end of a claimed task: t carries its terminal
	// status, result, error, message and completion time, and the
	// Attempts of the claim that ran it, which fences it: the end of a
	// task claimed again since (a later claim, after its lease ran out
	// and it was rescued) is refused with ErrNotFound, so that only the
	// worker holding the task records it. The lease ends. Finishing a
	// task that is already terminal (or unknown) returns ErrNotFound and
	// changes nothing. A task queued again by Rescue and not yet claimed
	// may still be finished by its late worker: it leaves the queue. t
	// must carry a terminal status and a completion time.
	//
	// The task's webhook deliveries are stored in the same transaction
	// (an outbox): pending whatever their Status, due at their NextAt,
	// and each with an id of its own. Either the task ends and every
	// delivery is stored, or, whatever the error (ErrNotFound included),
	// neither.
	//
	// refund, when not empty, are the quota counters the task's creation
	// spent a unit of (a task that ended SOURCE_DOWN gives them back):
	// in the same transaction, each counter still stored is given its
	// unit back as quota.Store's QuotaRefund does with the task's request
	// id, so once per task whatever else gives the same task's units back.
	// A refund never fails the end: counters of another account, or that
	// the store cannot read as counters, are passed over.
	Finish(ctx context.Context, t *Task, deliveries []*webhook.Delivery, refund []quota.Counter) error

	// Release puts claimed tasks back in their queue (a worker stopping
	// before it got an answer): each regains the place in its account's
	// queue it was claimed from, and an account that had nothing queued
	// joins the back of the ring, in the order of tasks. A task is
	// released only while it is still leased under the claim that
	// returned it (the same Attempts); tasks not leased, or leased under a
	// later claim, are ignored.
	Release(ctx context.Context, tasks []*Task) error

	// Rescue queues again every leased task whose lease ended before
	// expiredBefore, as Release does, in the order of their lease ends
	// (then request ids), counts it in its Rescues, and returns how many
	// it queued.
	Rescue(ctx context.Context, expiredBefore time.Time) (int, error)

	// ExtendLeases moves the lease end of each of the given claims whose
	// task is still leased under that claim (the same Attempts) to
	// leaseUntil, later or earlier: a node still at work on them keeps
	// them from being rescued. Claims of tasks not leased (queued,
	// finished or unknown) or leased under a later claim are ignored: a
	// node back from a pause never extends another node's lease.
	ExtendLeases(ctx context.Context, claims []Claim, leaseUntil time.Time) error

	// QueuedTypes returns the task types that have queued (not leased)
	// tasks, in no order.
	QueuedTypes(ctx context.Context) ([]string, error)

	// QueueDepth returns the number of queued (not leased) tasks of a type.
	QueueDepth(ctx context.Context, taskType string) (int, error)

	// Purge deletes up to limit records, and returns how many it deleted:
	// terminal tasks completed before completedBefore, those completed
	// first first, then, with what is left of limit, webhook deliveries
	// that ended (delivered or failed) and were created before
	// completedBefore, those created first first. It also deletes every
	// idempotency record created before idemBefore. A caller purging in
	// batches goes on while Purge returns limit.
	Purge(ctx context.Context, completedBefore, idemBefore time.Time, limit int) (int, error)

	// Close releases the store.
	Close() error
}
