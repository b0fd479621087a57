// Package admin manages accounts at run time: creating them, changing
// them, rotating and revoking their keys, and reading their usage. Its
// HTTP API is served on Caddy's admin endpoint.
package admin

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Limits of what an account may hold.
const (
	// MaxKeys is the most keys an account holds, expiring ones included.
	MaxKeys = 10
	// MaxNameLength bounds an account's name, in bytes.
	MaxNameLength = 200
	// MaxListLength bounds allow, task_types and webhooks.
	MaxListLength = 1000
	// MaxUsageDays bounds the days of one usage query.
	MaxUsageDays = 366
)

// InvalidError is bad input: the message says what is wrong.
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string { return e.Message }

// APIError is the wire error of bad input: 400 BAD_REQUEST with the
// message.
func (e *InvalidError) APIError() *apierr.Error { return apierr.BadRequest(e.Message) }

func invalid(format string, args ...any) error {
	return &InvalidError{Message: fmt.Sprintf(format, args...)}
}

// Service carries out the admin operations against the store, and puts
// every changed account in the dynamic set before it returns, so that the
// change holds for the next request.
type Service struct {
	// Accounts keeps the dynamic accounts.
	Accounts account.Store
	// UsageStore keeps the usage counts.
	UsageStore usage.Store
	// Dynamic is the in-memory set of dynamic accounts that requests use.
	Dynamic *account.Dynamic
	// Static holds the configuration's accounts (and, through Dynamic,
	// the others).
	Static *account.Registry
	// DefaultLimit is the limit of accounts that set none.
	DefaultLimit ratelimit.Limit
	// TaskTypes are the configured task types ("action/type").
	TaskTypes map[string]bool
	// Egress refuses webhook and failure-webhook URLs aimed at loopback,
	// private and other special-purpose addresses (unless the operator
	// allowed them) and at the admin endpoint. Nil: egress.New's default,
	// which refuses them all.
	Egress *egress.Policy
	// Maintenance keeps the sources' planned downtime; nil refuses to
	// schedule any.
	Maintenance *maintenance.Schedule
	// Changed, when set, is told of each changed account (to tell other
	// nodes).
	Changed func(ctx context.Context, id string)
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// Quotas, when set, tells the usage report how the account's quotas
	// stand.
	Quotas *quota.Book
}

func (s *Service) now() time.Time {
	return s.Clock.Now().UTC()
}

// Input is the fields of an account that a create or a change sets. A
// field that is not Set is left as it is; one set to null goes back to
// its default.
type Input struct {
	ID             Optional[string]                  `json:"id"`
	Name           Optional[string]                  `json:"name"`
	RateLimit      Optional[string]                  `json:"rate_limit"`
	Burst          Optional[int64]                   `json:"burst"`
	Allow          Optional[[]string]                `json:"allow"`
	TaskTypes      Optional[[]string]                `json:"task_types"`
	Webhooks       Optional[[]account.WebhookRecord] `json:"webhooks"`
	FailureWebhook Optional[string]                  `json:"failure_webhook"`
	Quotas         Optional[[]account.QuotaRecord]   `json:"quotas"`
	Disabled       Optional[bool]                    `json:"disabled"`
	WebhooksLocked Optional[bool]                    `json:"webhooks_locked"`
}

// apply sets the fields of in on r.
func (in *Input) apply(r *account.Record) {
	set(&r.Name, in.Name)
	if in.RateLimit.Set {
		set(&r.RateLimit, in.RateLimit)
		if r.RateLimit == "" && !in.Burst.Set {
			// Back to the default rate: the default burst comes with it.
			r.Burst = 0
		}
	}
	set(&r.Burst, in.Burst)
	set(&r.Allow, in.Allow)
	set(&r.TaskTypes, in.TaskTypes)
	set(&r.Webhooks, in.Webhooks)
	set(&r.FailureWebhook, in.FailureWebhook)
	set(&r.Quotas, in.Quotas)
	set(&r.Disabled, in.Disabled)
	set(&r.WebhooksLocked, in.WebhooksLocked)
}

func set[T any](dst *T, o Optional[T]) {
	if o.Set {
		*dst = o.Value // the zero value when null
	}
}

// validate checks a record about to be stored, beyond what Build checks.
// Task types are checked against the configuration only where the call
// sets them (typeChecks): a type removed from the configuration since must
// not block an unrelated change, such as disabling the account.
func (s *Service) validate(r *account.Record, typeChecks typeChecks) error {
	if len(r.Name) > MaxNameLength || strings.ContainsFunc(r.Name, isControl) {
		return invalid("name: at most %d bytes, no control characters", MaxNameLength)
	}
	if len(r.Allow) > MaxListLength || len(r.TaskTypes) > MaxListLength || len(r.Webhooks) > MaxListLength || len(r.Quotas) > MaxListLength {
		return invalid("allow, task_types, webhooks and quotas hold at most %d entries each", MaxListLength)
	}
	if r.Burst < 0 {
		return invalid("burst: must be positive")
	}
	if _, err := r.Build(); err != nil {
		return &InvalidError{Message: strings.TrimPrefix(err.Error(), "account "+r.ID+": ")}
	}
	for _, t := range r.TaskTypes {
		if typeChecks.taskTypes && !s.TaskTypes[t] {
			return invalid("task_types: %s is not a configured task type", t)
		}
	}
	for _, q := range r.Quotas {
		for _, t := range q.TaskTypes {
			if typeChecks.quotas && !s.TaskTypes[t] {
				return invalid("quotas: %s is not a configured task type", t)
			}
		}
	}
	egressPolicy := s.Egress
	if egressPolicy == nil {
		egressPolicy = egress.New(egress.Config{})
	}
	// Like task types, destinations are checked where the call sets them:
	// a URL stored under an older policy is refused when a delivery is
	// made, and must not block disabling the account.
	if typeChecks.webhooks {
		for _, w := range r.Webhooks {
			if err := egressPolicy.CheckURL(w.URL); err != nil {
				return invalid("webhook %s: %v", w.URL, err)
			}
		}
	}
	if typeChecks.failureWebhook && r.FailureWebhook != "" {
		if err := egressPolicy.CheckURL(r.FailureWebhook); err != nil {
			return invalid("failure_webhook: %v", err)
		}
	}
	for _, w := range r.Webhooks {
		if w.Secret != "" {
			if _, err := webhook.ParseSecret(w.Secret); err != nil {
				return invalid("webhook %s: %v", w.URL, err)
			}
		}
		if strings.ContainsFunc(w.Authorization, isControl) {
			return invalid("webhook %s: authorization: no control characters", w.URL)
		}
		for _, t := range w.Types {
			if typeChecks.webhooks && !s.TaskTypes[t] {
				return invalid("webhook %s: types: %s is not a configured task type", w.URL, t)
			}
		}
	}
	return nil
}

// typeChecks says which task type lists a validation checks against the
// configured types, and which webhook URLs against the egress policy.
type typeChecks struct{ taskTypes, webhooks, failureWebhook, quotas bool }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Create stores a new account with one key, and returns it with the key,
// which is not kept.
func (s *Service) Create(ctx context.Context, in *Input) (*account.Record, string, error) {
	if in.Disabled.Set {
		return nil, "", invalid("disabled: not allowed when creating an account")
	}
	if !in.Name.Set || in.Name.Value == "" {
		return nil, "", invalid("name: required")
	}
	now := s.now()
	r := &account.Record{ID: in.ID.Value, CreatedAt: now, UpdatedAt: now, Version: 1}
	if r.ID == "" {
		r.ID = account.NewID("acct_", 16)
	}
	if err := account.ValidateID(r.ID); err != nil {
		return nil, "", &InvalidError{Message: "id: " + err.Error()}
	}
	in.apply(r)
	key, kr := newKey(now)
	r.Keys = []account.KeyRecord{kr}
	if err := s.validate(r, typeChecks{true, true, true, true}); err != nil {
		return nil, "", err
	}
	if _, static := s.staticAccount(r.ID); static {
		return nil, "", account.ErrExists
	}
	if err := s.Accounts.CreateAccount(ctx, r); err != nil {
		return nil, "", err
	}
	s.publish(ctx, r)
	return r, key, nil
}

// Update changes the fields in sets, and returns the account.
func (s *Service) Update(ctx context.Context, id string, in *Input) (*account.Record, error) {
	if in.ID.Set && in.ID.Value != id {
		return nil, invalid("id: cannot be changed")
	}
	return s.update(ctx, id, func(r *account.Record) error {
		in.apply(r)
		return s.validate(r, typeChecks{taskTypes: in.TaskTypes.Set, webhooks: in.Webhooks.Set, failureWebhook: in.FailureWebhook.Set, quotas: in.Quotas.Set})
	})
}

// Disable makes every key of the account fail.
func (s *Service) Disable(ctx context.Context, id string) (*account.Record, error) {
	return s.update(ctx, id, func(r *account.Record) error {
		r.Disabled = true
		return nil
	})
}

// NewKey is a key just added to an account.
type NewKey struct {
	Record account.KeyRecord
	// Key is the key itself, shown once.
	Key string
	// OthersExpireAt is when the account's other keys expire, when the
	// call set it.
	OthersExpireAt *time.Time
}

// AddKey adds a new key to the account. When expireOthersIn is not nil,
// the other keys expire that long from now (or sooner, if they were due
// to). Keys already expired are dropped.
func (s *Service) AddKey(ctx context.Context, id string, expireOthersIn *time.Duration) (*account.Record, *NewKey, error) {
	if expireOthersIn != nil && *expireOthersIn < 0 {
		return nil, nil, invalid("expire_others_in: must not be negative")
	}
	var added NewKey
	r, err := s.update(ctx, id, func(r *account.Record) error {
		now := s.now()
		live := r.Keys[:0:0]
		for _, k := range r.Keys {
			if k.ExpiresAt == nil || k.ExpiresAt.After(now) {
				live = append(live, k)
			}
		}
		if len(live) >= MaxKeys {
			return account.ErrTooManyKeys
		}
		added.OthersExpireAt = nil
		if expireOthersIn != nil {
			at := now.Add(*expireOthersIn)
			added.OthersExpireAt = &at
			for i := range live {
				if live[i].ExpiresAt == nil || live[i].ExpiresAt.After(at) {
					live[i].ExpiresAt = &at
				}
			}
		}
		added.Key, added.Record = newKey(now)
		r.Keys = append(live, added.Record)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return r, &added, nil
}

// RevokeKey removes the key from the account: it fails from now on.
func (s *Service) RevokeKey(ctx context.Context, id, keyID string) (*account.Record, error) {
	return s.update(ctx, id, func(r *account.Record) error {
		i := slices.IndexFunc(r.Keys, func(k account.KeyRecord) bool { return k.ID == keyID })
		if i < 0 {
			return account.ErrKeyNotFound
		}
		r.Keys = slices.Delete(r.Keys, i, i+1)
		return nil
	})
}

// Account returns the dynamic account with the id, or the static one
// (then the record is nil).
func (s *Service) Account(ctx context.Context, id string) (*account.Record, *account.Account, error) {
	if a, ok := s.staticAccount(id); ok {
		return nil, a, nil
	}
	r, err := s.Accounts.Account(ctx, id)
	return r, nil, err
}

// List returns the dynamic accounts and the static ones (dynamic accounts
// whose id a static account took are left out).
func (s *Service) List(ctx context.Context) ([]*account.Record, []*account.Account, error) {
	records, err := s.Accounts.Accounts(ctx)
	if err != nil {
		return nil, nil, err
	}
	records = slices.DeleteFunc(records, func(r *account.Record) bool {
		_, static := s.staticAccount(r.ID)
		return static
	})
	return records, s.Static.Static(), nil
}

// QuotaStatus returns how the quotas of the account (static or dynamic)
// stand in their current periods.
func (s *Service) QuotaStatus(ctx context.Context, id string) ([]quota.Status, error) {
	r, a, err := s.Account(ctx, id)
	if err != nil {
		return nil, err
	}
	if a == nil {
		if a, err = r.Build(); err != nil {
			return nil, err
		}
	}
	if s.Quotas == nil {
		return nil, nil
	}
	return s.Quotas.Status(ctx, id, a.Quotas)
}

// Usage returns the usage rows of the account (static or dynamic) for the
// days from from to to, both included.
func (s *Service) Usage(ctx context.Context, id string, from, to time.Time) ([]usage.Row, error) {
	if to.Before(from) {
		return nil, invalid("from must not be after to")
	}
	if to.Sub(from) >= MaxUsageDays*24*time.Hour {
		return nil, invalid("at most %d days at once", MaxUsageDays)
	}
	if _, _, err := s.Account(ctx, id); err != nil {
		return nil, err
	}
	return s.UsageStore.Usage(ctx, id, usage.Day(from), usage.Day(to))
}

func (s *Service) staticAccount(id string) (*account.Account, bool) {
	return s.Static.LookupStatic(id)
}

// UpdateRecord changes a dynamic account's record atomically (change may
// run more than once) and publishes the change; account.ErrStatic for a
// static account. The webhook endpoints service changes records by it.
func (s *Service) UpdateRecord(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error) {
	return s.update(ctx, id, change)
}

// update changes a dynamic account (account.ErrStatic for a static one) and
// publishes the change.
func (s *Service) update(ctx context.Context, id string, change func(*account.Record) error) (*account.Record, error) {
	if _, static := s.staticAccount(id); static {
		return nil, account.ErrStatic
	}
	r, err := s.Accounts.UpdateAccount(ctx, id, func(r *account.Record) error {
		if err := change(r); err != nil {
			return err
		}
		r.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.publish(ctx, r)
	return r, nil
}

// publish makes a stored change hold for the next request here, and tells
// other nodes.
func (s *Service) publish(ctx context.Context, r *account.Record) {
	// The record was validated before it was stored: it builds.
	_ = s.Dynamic.Put(r)
	if s.Changed != nil {
		s.Changed(ctx, r.ID)
	}
}

// newKey generates a key and its record.
func newKey(now time.Time) (string, account.KeyRecord) {
	key := account.GenerateKey()
	sum := account.HashKey(key)
	return key, account.KeyRecord{
		ID:        account.NewID("key_", 16),
		Prefix:    account.KeyPrefix(key),
		SHA256:    hex.EncodeToString(sum[:]),
		CreatedAt: now,
	}
}
