// Package webhook delivers finished tasks to accounts' webhooks: signed per
// Standard Webhooks, retried with exponential backoff on network errors,
// timeouts and 5xx, recorded attempt by attempt, and never lost: deliveries
// are stored in the transaction that ends their task (an outbox).
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Status is where a delivery is in its life.
type Status string

// The statuses of a delivery.
const (
	Pending   Status = "pending"
	Delivered Status = "delivered"
	Failed    Status = "failed"
)

// The events a delivery carries.
const (
	// EventTask is a task that reached a terminal status; the body is the
	// task object.
	EventTask = "task.finished"
	// EventFailed tells an account's failure webhook that a delivery
	// failed for good.
	EventFailed = "webhook.failed"
	// EventDisabled tells an account's failure webhook that taskgate
	// disabled one of its endpoints.
	EventDisabled = "webhook.disabled"
)

// Notice tells whether an event goes to the account's failure webhook
// (unsigned, never itself reported) rather than to an endpoint.
func Notice(event string) bool { return event == EventFailed || event == EventDisabled }

// Delivery is one POST of one event to one webhook URL, with every attempt
// made at it.
type Delivery struct {
	// ID is sent as webhook-id, the same on every attempt.
	ID        string `json:"id"`
	AccountID string `json:"account_id"`
	RequestID string `json:"request_id"`
	URL       string `json:"webhook_url"`
	Event     string `json:"event"`
	// Body is sent verbatim.
	Body     json.RawMessage `json:"body"`
	Status   Status          `json:"status"`
	Attempts []Attempt       `json:"attempts"`
	// CreatedAt starts the give-up clock.
	CreatedAt time.Time `json:"created_at"`
	// NextAt is when a pending delivery is next due.
	NextAt time.Time `json:"next_at"`
	// Claim numbers the claim that returned the delivery (ClaimDeliveries
	// counts them): RecordAttempt and ExtendDeliveryLeases name it, so
	// that a worker whose lease ran out and whose delivery was claimed
	// again records nothing. It is the store's, never sent.
	Claim int `json:"-"`
}

// Claim names one claim of a delivery: its id and the claim's number,
// and its account, which tells a store that spreads accounts where the
// delivery is (a store then looks everywhere for a claim without one).
type Claim struct {
	ID        string
	Claim     int
	AccountID string
}

// ClaimOf returns the claim d was claimed under.
func ClaimOf(d *Delivery) Claim { return Claim{ID: d.ID, Claim: d.Claim, AccountID: d.AccountID} }

// Attempt is one try at a delivery.
type Attempt struct {
	At time.Time `json:"at"`
	// StatusCode is the receiver's HTTP status, or 0 when there was none.
	StatusCode int `json:"status_code"`
	// Error says what went wrong, or is empty on success.
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
	// RetryAfterMS is how long the receiver asked to be left alone
	// (Retry-After on a 429 or 503), or 0.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// AttemptView is an attempt as the APIs show it: no status code or no
// error is null.
type AttemptView struct {
	At         string  `json:"at"`
	StatusCode *int    `json:"status_code"`
	Error      *string `json:"error"`
	DurationMS int64   `json:"duration_ms"`
}

// ViewAttempt returns a's view.
func ViewAttempt(a Attempt) AttemptView {
	v := AttemptView{At: a.At.Format(time.RFC3339Nano), DurationMS: a.DurationMS}
	if a.StatusCode != 0 {
		code := a.StatusCode
		v.StatusCode = &code
	}
	if a.Error != "" {
		e := a.Error
		v.Error = &e
	}
	return v
}

// Filter selects deliveries in a listing. Empty fields match all.
type Filter struct {
	RequestID string
	Status    Status
}

// ErrNotFound is the error of a delivery unknown to the account.
var ErrNotFound = errors.New("delivery not found")

// Store keeps deliveries durably. Deliveries of finished tasks enter it
// with their task (task.Store.Finish); the methods here move them along.
// Every implementation passes the conformance suite of package tasktest.
//
// A store keeps its own copies: changing a delivery after passing it in,
// or one it returned, changes nothing stored. Lists come back non-nil,
// empty when nothing matches. A pending delivery is either due (at its
// NextAt) or leased to a worker.
type Store interface {
	// ClaimDeliveries leases up to n pending deliveries whose NextAt is at
	// or before now, earliest first, skipping those for whose URL skip
	// returns true (skip may be nil). A claimed delivery is not claimed
	// again until its lease ends unrecorded and RescueDeliveries queues it.
	// Each claim of a delivery gets the next number, in its Claim.
	//
	// skip is asked before each delivery is taken, until n are taken; a
	// false answer takes the delivery, so skip may count what it lets
	// through (unless the call fails, when nothing is taken). Once it
	// answers true for a URL, the call passes over that URL's other
	// deliveries without asking again, at no cost per delivery: a slow
	// receiver's backlog does not slow claims. Deliveries are taken
	// earliest first (NextAt, then id) among the URLs not turned down.
	// skip runs inside the store's transaction: it must be quick and must
	// not call the store. The deliveries skipped stay due, in their place.
	ClaimDeliveries(ctx context.Context, now time.Time, n int, leaseUntil time.Time, skip func(url string) bool) ([]*Delivery, error)

	// RecordAttempt stores a claimed delivery after an attempt: d carries
	// the attempt appended, its new Status and, when pending, its NextAt;
	// its Attempts replace the stored ones, and its other fields are not
	// read. The lease ends. The deliveries in also (a failure
	// notification) are stored pending, whatever their Status, in the
	// same transaction.
	//
	// d's Claim fences the record: a delivery claimed again since (after
	// its lease ran out and it was rescued) gives ErrNotFound, and nothing
	// is stored. A delivery rescued during its attempt and not claimed
	// again is recorded all the same. One that is no longer pending
	// (another worker recorded its end) or unknown gives ErrNotFound, and
	// nothing is stored, also included.
	// When RetryDelivery was called since the claim d names (during the
	// attempt, after a rescue of it, or after d's status was stored once
	// and its answer lost), the delivery stays pending, due at the time
	// of that call, whatever d says; a later claim answers the retry.
	RecordAttempt(ctx context.Context, d *Delivery, also []*Delivery) error

	// GetDelivery returns the account's delivery with the id, or
	// ErrNotFound.
	GetDelivery(ctx context.Context, accountID, id string) (*Delivery, error)

	// ListDeliveries returns up to limit of the account's deliveries that
	// match f, newest first (by CreatedAt).
	ListDeliveries(ctx context.Context, accountID string, f Filter, limit int) ([]*Delivery, error)

	// RetryDelivery makes the account's delivery pending and due at now,
	// whatever its status, and returns it; ErrNotFound when it is not the
	// account's. A delivery being attempted right now is left to finish
	// and then made pending again.
	RetryDelivery(ctx context.Context, accountID, id string, now time.Time) (*Delivery, error)

	// RescueDeliveries makes claimable again every leased delivery whose
	// lease ended before expiredBefore, due at its NextAt (or at the time
	// of a RetryDelivery made during the lease), and returns how many.
	RescueDeliveries(ctx context.Context, expiredBefore time.Time) (int, error)

	// ExtendDeliveryLeases moves the lease end of each of the given
	// claims whose delivery is still leased under it to leaseUntil, later
	// or earlier: a node still attempting them keeps them from being
	// rescued. Claims of deliveries not leased (due, ended or unknown), or
	// leased under a later claim, are ignored.
	ExtendDeliveryLeases(ctx context.Context, claims []Claim, leaseUntil time.Time) error

	// CountDeliveries returns the number of deliveries with the status;
	// the pending count includes the leased ones.
	CountDeliveries(ctx context.Context, status Status) (int, error)
}

// NextOfURL asks RecordAttemptClaiming for the next due delivery of the
// URL just attempted.
type NextOfURL struct {
	// Now: a delivery is due when its NextAt is not after it.
	Now time.Time
	// LeaseUntil is the lease of the delivery claimed.
	LeaseUntil time.Time
}

// AttemptClaimer is a Store that can claim, in the write that records an
// attempt, the next due delivery of the same URL: a worker that goes on
// to it needs no claim of its own, and so no write of its own. A store
// whose writes each cost a commit (bolt) gains most; the dispatcher claims
// as usual from a store without it.
type AttemptClaimer interface {
	// RecordAttemptClaiming records as RecordAttempt does and, when the
	// record is stored, leases the earliest due delivery of d.URL (not
	// leased, NextAt not after next.Now) until next.LeaseUntil, counting
	// its claim as ClaimDeliveries does, and returns it: nil when none is
	// due. The delivery just recorded may be the one returned, when its
	// record leaves it due.
	RecordAttemptClaiming(ctx context.Context, d *Delivery, also []*Delivery, next NextOfURL) (*Delivery, error)
}
