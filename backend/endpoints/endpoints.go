// Package endpoints manages the webhook endpoints of accounts: what a
// customer (through the client API) or the operator (through the admin
// API) lists, creates, changes, deletes, rotates the secret of and sends a
// test event to. An endpoint is a webhook of a dynamic account, kept in
// its record; the webhooks of an account of the configuration are listed,
// read-only.
package endpoints

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Limits of endpoints.
const (
	// MaxEndpoints bounds the endpoints of an account.
	MaxEndpoints = 20
	// MaxDescription bounds an endpoint's description, in bytes.
	MaxDescription = 256
	// MaxURL bounds an endpoint's URL, in bytes: every delivery to it
	// stores it.
	MaxURL = 2048
	// DefaultGrace is how long a rotated secret keeps signing, next to
	// the new one, when the rotation says nothing.
	DefaultGrace = 24 * time.Hour
	// MaxGrace bounds that overlap.
	MaxGrace = 7 * 24 * time.Hour
)

// EventTest is the event of a test delivery.
const EventTest = "webhook.test"

// Errors of the service, as the APIs answer them.
var (
	// ErrSelfServiceOff: the account's endpoints are the operator's.
	ErrSelfServiceOff = &apierr.Error{Status: http.StatusForbidden, Code: "SELF_SERVICE_DISABLED",
		Message: "this account's webhook endpoints are managed by the operator"}
	// ErrReadOnly: the endpoint is in the configuration.
	ErrReadOnly = &apierr.Error{Status: http.StatusConflict, Code: "ENDPOINT_READ_ONLY",
		Message: "this endpoint is defined in the configuration and cannot be changed here"}
	// ErrTooMany: the account holds the most endpoints it may.
	ErrTooMany = &apierr.Error{Status: http.StatusConflict, Code: "TOO_MANY_ENDPOINTS",
		Message: fmt.Sprintf("the account holds the most webhook endpoints it may (%d); delete one first", MaxEndpoints)}
	errNotFound = apierr.NotFound
)

// Service carries out the operations on endpoints.
type Service struct {
	// Lookup returns an account, of the configuration or dynamic.
	Lookup func(id string) (*account.Account, bool)
	// Update changes a dynamic account's record atomically and makes the
	// change hold (on every node); account.ErrStatic for a static one.
	Update func(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error)
	// Egress checks endpoint URLs; nil: egress.New's default.
	Egress *egress.Policy
	// TaskTypes are the configured task types, which an endpoint's
	// types must be among; nil: not checked.
	TaskTypes map[string]bool
	// Sender sends test events; nil: no test events (404).
	Sender *webhook.Sender
	// NoSelfService turns the client API's changes off for every account.
	NoSelfService bool
	// DisableAfter is how long every attempt at an endpoint may fail
	// before Health disables it; 0: never (a 410 still does).
	DisableAfter time.Duration
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
}

// View is an endpoint as the APIs show it: never its secret, but in the
// answer that made it (a creation, a rotation), once.
type View struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	TaskTypes   []string `json:"task_types"`
	Description string   `json:"description"`
	Enabled     bool     `json:"enabled"`
	// ReadOnly endpoints are in the configuration.
	ReadOnly bool `json:"read_only"`
	// Signed tells that deliveries carry a webhook-signature.
	Signed bool `json:"signed"`
	// DisabledReason, when taskgate disabled the endpoint, says why:
	// "gone" (it answered 410) or "failing" (every attempt failed for
	// too long).
	DisabledReason string `json:"disabled_reason,omitempty"`
	// FailingSince is the first failed attempt since the last delivered
	// one, while the endpoint fails.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    *time.Time `json:"created_at"`
	UpdatedAt    *time.Time `json:"updated_at"`
	// PreviousSecretExpiresAt, during a rotation's overlap, is when the
	// previous secret stops signing.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	// Secret is shown once: in the answer to the creation or rotation.
	Secret string `json:"secret,omitempty"`
}

// Input is what a creation or a change sets; a field left out is left as
// it is (or, at creation, takes its default).
type Input struct {
	URL         *string   `json:"url"`
	TaskTypes   *[]string `json:"task_types"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

// Rotation is the body of a secret rotation: how long the previous secret
// keeps signing (a Go duration, "24h"; default DefaultGrace; "0s" ends it
// at once).
type Rotation struct {
	Grace *string `json:"grace"`
}

// TestResult is the answer to a test event: the delivery sent and the
// receiver's answer.
type TestResult struct {
	DeliveryID string              `json:"delivery_id"`
	Event      string              `json:"event"`
	Attempt    webhook.AttemptView `json:"attempt"`
	// Delivered tells that the receiver answered 2xx.
	Delivered bool `json:"delivered"`
}

func (s *Service) now() time.Time { return s.Clock.Now().UTC() }

func view(w *account.Webhook, readOnly bool, now time.Time) View {
	v := View{
		ID:          w.EndpointID(),
		URL:         w.URL,
		TaskTypes:   nonNil(w.Types),
		Description: w.Description,
		Enabled:     !w.Disabled,
		ReadOnly:    readOnly,
		Signed:      w.Secret != "",
	}
	if w.Disabled {
		v.DisabledReason = w.DisabledReason
	}
	if !w.FailingSince.IsZero() {
		since := w.FailingSince
		v.FailingSince = &since
	}
	if !w.CreatedAt.IsZero() {
		at, up := w.CreatedAt, w.UpdatedAt
		v.CreatedAt, v.UpdatedAt = &at, &up
	}
	if w.PreviousSecret != "" && now.Before(w.PreviousSecretUntil) {
		until := w.PreviousSecretUntil
		v.PreviousSecretExpiresAt = &until
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// account returns the account with the id, or NotFound.
func (s *Service) account(id string) (*account.Account, error) {
	acct, ok := s.Lookup(id)
	if !ok {
		return nil, errNotFound
	}
	return acct, nil
}

// List returns the account's endpoints, in the order they were added.
func (s *Service) List(accountID string) ([]View, error) {
	acct, err := s.account(accountID)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(acct.Webhooks))
	now := s.now()
	for i := range acct.Webhooks {
		out = append(out, view(&acct.Webhooks[i], acct.Static, now))
	}
	return out, nil
}

// Get returns one endpoint of the account.
func (s *Service) Get(accountID, id string) (View, error) {
	acct, err := s.account(accountID)
	if err != nil {
		return View{}, err
	}
	for i := range acct.Webhooks {
		if acct.Webhooks[i].EndpointID() == id {
			return view(&acct.Webhooks[i], acct.Static, s.now()), nil
		}
	}
	return View{}, errNotFound
}

// writable checks that the caller may change the account's endpoints.
func (s *Service) writable(accountID string, operator bool) error {
	acct, err := s.account(accountID)
	if err != nil {
		return err
	}
	switch {
	case acct.Static:
		return ErrReadOnly
	case !operator && (s.NoSelfService || acct.WebhooksLocked):
		return ErrSelfServiceOff
	}
	return nil
}

// Create adds an endpoint with a new secret, shown in the answer only.
func (s *Service) Create(ctx context.Context, accountID string, in Input, operator bool) (View, error) {
	if err := s.writable(accountID, operator); err != nil {
		return View{}, err
	}
	if in.URL == nil {
		return View{}, apierr.BadRequest("url is required")
	}
	now := s.now()
	w := account.WebhookRecord{ID: account.NewID("we_", 16), Secret: webhook.GenerateSecret(), CreatedAt: now, UpdatedAt: now}
	if err := s.apply(&w, in, operator); err != nil {
		return View{}, err
	}
	_, err := s.Update(ctx, accountID, func(r *account.Record) error {
		if err := locked(r, operator); err != nil {
			return err
		}
		if len(r.Webhooks) >= MaxEndpoints {
			return ErrTooMany
		}
		r.Webhooks = append(r.Webhooks, w)
		return check(r)
	})
	if err != nil {
		return View{}, err
	}
	built := account.Webhook(w)
	v := view(&built, false, now)
	v.Secret = w.Secret
	return v, nil
}

// Change sets what in sets on an endpoint.
func (s *Service) Change(ctx context.Context, accountID, id string, in Input, operator bool) (View, error) {
	if err := s.writable(accountID, operator); err != nil {
		return View{}, err
	}
	return s.change(ctx, accountID, id, operator, func(w *account.WebhookRecord) error { return s.apply(w, in, operator) })
}

// Delete removes an endpoint. Its pending deliveries fail when next
// attempted: the account no longer has a webhook at their URL.
func (s *Service) Delete(ctx context.Context, accountID, id string, operator bool) error {
	if err := s.writable(accountID, operator); err != nil {
		return err
	}
	_, err := s.Update(ctx, accountID, func(r *account.Record) error {
		if err := locked(r, operator); err != nil {
			return err
		}
		i := index(r, id)
		if i < 0 {
			return errNotFound
		}
		r.Webhooks = slices.Delete(r.Webhooks, i, i+1)
		return nil
	})
	return err
}

// Rotate gives an endpoint a new secret, shown in the answer only; the one
// before keeps signing next to it for grace.
func (s *Service) Rotate(ctx context.Context, accountID, id string, grace time.Duration, operator bool) (View, error) {
	if err := s.writable(accountID, operator); err != nil {
		return View{}, err
	}
	if grace < 0 || grace > MaxGrace {
		return View{}, apierr.BadRequest(fmt.Sprintf("grace %s: want 0s to %s", grace, MaxGrace))
	}
	secret := webhook.GenerateSecret()
	now := s.now()
	v, err := s.change(ctx, accountID, id, operator, func(w *account.WebhookRecord) error {
		w.PreviousSecret, w.PreviousSecretUntil = "", time.Time{}
		if w.Secret != "" && grace > 0 {
			w.PreviousSecret, w.PreviousSecretUntil = w.Secret, now.Add(grace)
		}
		w.Secret = secret
		return nil
	})
	if err != nil {
		return View{}, err
	}
	v.Secret = secret
	return v, nil
}

// Test sends a signed test event to the endpoint at once, enabled or not,
// and answers with what the receiver answered.
func (s *Service) Test(ctx context.Context, accountID, id string) (TestResult, error) {
	acct, err := s.account(accountID)
	if err != nil {
		return TestResult{}, err
	}
	if s.Sender == nil {
		return TestResult{}, errNotFound
	}
	i := slices.IndexFunc(acct.Webhooks, func(w account.Webhook) bool { return w.EndpointID() == id })
	if i < 0 {
		return TestResult{}, errNotFound
	}
	w := acct.Webhooks[i]
	now := s.now()
	body, _ := json.Marshal(map[string]any{
		"type":      EventTest,
		"timestamp": now,
		"data":      map[string]any{"endpoint_id": id, "account_id": accountID},
	})
	d := &webhook.Delivery{ID: webhook.NewID(), AccountID: accountID, URL: w.URL, Event: EventTest, Body: body,
		Status: webhook.Pending, CreatedAt: now, NextAt: now}
	target, err := webhook.TargetOf(&w, now)
	if err != nil {
		return TestResult{}, fmt.Errorf("endpoint %s: %w", id, err)
	}
	a := s.Sender.Send(ctx, d, target)
	return TestResult{DeliveryID: d.ID, Event: EventTest, Attempt: webhook.ViewAttempt(a), Delivered: a.StatusCode >= 200 && a.StatusCode < 300}, nil
}

// change runs fn on the endpoint's record and answers with the endpoint.
func (s *Service) change(ctx context.Context, accountID, id string, operator bool, fn func(*account.WebhookRecord) error) (View, error) {
	now := s.now()
	var changed account.WebhookRecord
	_, err := s.Update(ctx, accountID, func(r *account.Record) error {
		if err := locked(r, operator); err != nil {
			return err
		}
		i := index(r, id)
		if i < 0 {
			return errNotFound
		}
		w := &r.Webhooks[i]
		if err := fn(w); err != nil {
			return err
		}
		// An endpoint set before endpoints had ids keeps the one it was
		// shown under.
		if w.ID == "" {
			w.ID = id
		}
		if w.CreatedAt.IsZero() {
			w.CreatedAt = now
		}
		w.UpdatedAt = now
		changed = *w
		return check(r)
	})
	if err != nil {
		return View{}, err
	}
	built := account.Webhook(changed)
	return view(&built, false, now), nil
}

// locked checks, on the record being changed, that the account may still
// change its endpoints: writable read this node's copy, which may not yet
// know of a lock set on another node.
func locked(r *account.Record, operator bool) error {
	if !operator && r.WebhooksLocked {
		return ErrSelfServiceOff
	}
	return nil
}

// index returns the place of the endpoint in the record, or -1.
func index(r *account.Record, id string) int {
	return slices.IndexFunc(r.Webhooks, func(w account.WebhookRecord) bool { return w.EndpointID() == id })
}

// apply sets in on w, checked; operator tells that the operator asks, not
// the account.
func (s *Service) apply(w *account.WebhookRecord, in Input, operator bool) error {
	if in.URL != nil {
		if len(*in.URL) > MaxURL {
			return apierr.BadRequest(fmt.Sprintf("url: want at most %d bytes", MaxURL))
		}
		if err := account.ValidateWebhookURL(*in.URL); err != nil {
			return apierr.BadRequest(err.Error())
		}
		policy := s.Egress
		if policy == nil {
			policy = egress.New(egress.Config{})
		}
		if err := policy.CheckURL(*in.URL); err != nil {
			return apierr.BadRequest(fmt.Sprintf("url %s: %v", *in.URL, err))
		}
		// The operator's Authorization is for the receiver it was set
		// for: an account that points its endpoint elsewhere does not
		// take the credential along (it is never shown to the account).
		if !operator && w.Authorization != "" && !sameOrigin(w.URL, *in.URL) {
			w.Authorization = ""
		}
		w.URL = *in.URL
	}
	if in.TaskTypes != nil {
		if len(*in.TaskTypes) > len(s.TaskTypes) && s.TaskTypes != nil {
			return apierr.BadRequest(fmt.Sprintf("task_types: want at most the %d task types configured, each once", len(s.TaskTypes)))
		}
		for i, t := range *in.TaskTypes {
			if slices.Contains((*in.TaskTypes)[:i], t) {
				return apierr.BadRequest(fmt.Sprintf("task_types: %q is given twice", t))
			}
			if err := account.ValidateTaskType(t); err != nil {
				return apierr.BadRequest(err.Error())
			}
			if s.TaskTypes != nil && !s.TaskTypes[t] {
				return apierr.BadRequest(fmt.Sprintf("task type %q is not configured", t))
			}
		}
		w.Types = slices.Clone(*in.TaskTypes)
		if len(w.Types) == 0 {
			w.Types = nil
		}
	}
	if in.Description != nil {
		d := *in.Description
		if len(d) > MaxDescription || !utf8.ValidString(d) || strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return apierr.BadRequest(fmt.Sprintf("description: want at most %d bytes of UTF-8 without control characters", MaxDescription))
		}
		w.Description = d
	}
	if in.Enabled != nil {
		if *in.Enabled && w.Disabled {
			// Enabled again: a fresh start.
			w.DisabledReason, w.FailingSince = "", time.Time{}
		}
		if !*in.Enabled && !w.Disabled {
			w.DisabledReason = ""
		}
		w.Disabled = !*in.Enabled
	}
	return nil
}

// sameOrigin tells whether two URLs have the same scheme, host and port
// (a scheme's default port given or not).
func sameOrigin(a, b string) bool {
	ua, err := url.Parse(a)
	if err != nil {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}

// check refuses a record that would not build (two endpoints at one URL).
func check(r *account.Record) error {
	if _, err := r.Build(); err != nil {
		return apierr.BadRequest(err.Error())
	}
	return nil
}
