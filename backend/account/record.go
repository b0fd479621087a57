package account

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
)

// Errors of account stores.
var (
	// ErrNotFound: no account has the id.
	ErrNotFound = errors.New("account not found")
	// ErrExists: an account already has the id.
	ErrExists = errors.New("account exists")
	// ErrStatic: the account is defined in the configuration and cannot
	// be changed at run time.
	ErrStatic = errors.New("static account")
	// ErrTooManyKeys: the account holds the most keys it may.
	ErrTooManyKeys = errors.New("too many keys")
	// ErrKeyNotFound: the account has no key with the id.
	ErrKeyNotFound = errors.New("key not found")
)

// Record is a dynamic account as a store keeps it: what the admin API set,
// in the form it was given, with the metadata of its keys. Build turns it
// into the Account that authenticates requests.
type Record struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// RateLimit is the account's rate ("30/s"); empty means the
	// configured default.
	RateLimit string `json:"rate_limit,omitempty"`
	// Burst is the account's burst; 0 means one second's worth.
	Burst          int64           `json:"burst,omitempty"`
	Allow          []string        `json:"allow,omitempty"`
	TaskTypes      []string        `json:"task_types,omitempty"`
	Webhooks       []WebhookRecord `json:"webhooks,omitempty"`
	FailureWebhook string          `json:"failure_webhook,omitempty"`
	// Quotas bound the tasks the account may create in a day or a month.
	Quotas   []QuotaRecord `json:"quotas,omitempty"`
	Keys     []KeyRecord   `json:"keys,omitempty"`
	Disabled bool          `json:"disabled,omitempty"`
	// WebhooksLocked turns the account's self-service of webhook
	// endpoints off: only the operator changes them.
	WebhooksLocked bool      `json:"webhooks_locked,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// Version counts the record's changes, from 1 at creation; a cache
	// keeps the highest version it has seen.
	Version int64 `json:"version"`
}

// KeyRecord is one key of a dynamic account: its hash and metadata,
// never the key itself.
type KeyRecord struct {
	// ID names the key in the admin API.
	ID string `json:"id"`
	// Prefix is the start of the key ("tg_Ab3x"), for people to tell
	// keys apart.
	Prefix string `json:"prefix"`
	// SHA256 is the hex SHA-256 of the key.
	SHA256    string     `json:"sha256"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// QuotaRecord is a quota of a dynamic account, as the admin API takes
// and shows it.
type QuotaRecord struct {
	// Limit is the most tasks of a period.
	Limit int64 `json:"limit"`
	// Period is "day" or "month" (UTC).
	Period string `json:"period"`
	// TaskTypes limits the quota to these task types; empty: all.
	TaskTypes []string `json:"task_types,omitempty"`
}

// Quota returns the quota the record describes.
func (q QuotaRecord) Quota() quota.Quota {
	return quota.Quota{Limit: q.Limit, Period: quota.Period(q.Period), TaskTypes: q.TaskTypes}
}

// QuotaRecordOf returns the record of a quota.
func QuotaRecordOf(q quota.Quota) QuotaRecord {
	return QuotaRecord{Limit: q.Limit, Period: string(q.Period), TaskTypes: q.TaskTypes}
}

// WebhookRecord is a webhook of a dynamic account.
type WebhookRecord struct {
	URL                 string    `json:"url"`
	Secret              string    `json:"secret,omitempty"`
	Authorization       string    `json:"authorization,omitempty"`
	Types               []string  `json:"types,omitempty"`
	ID                  string    `json:"id,omitempty"`
	Description         string    `json:"description,omitempty"`
	Disabled            bool      `json:"disabled,omitempty"`
	CreatedAt           time.Time `json:"created_at,omitzero"`
	UpdatedAt           time.Time `json:"updated_at,omitzero"`
	PreviousSecret      string    `json:"previous_secret,omitempty"`
	PreviousSecretUntil time.Time `json:"previous_secret_until,omitzero"`
	FailingSince        time.Time `json:"failing_since,omitzero"`
	DisabledReason      string    `json:"disabled_reason,omitempty"`
}

// EndpointID returns the id of the webhook in the webhooks API
// (Webhook.EndpointID).
func (w *WebhookRecord) EndpointID() string {
	built := Webhook(*w)
	return built.EndpointID()
}

// Store keeps the dynamic accounts. Every implementation passes the
// conformance suite in package accounttest.
//
// A store keeps its own copies: changing a record after passing it in, or
// one it returned, changes nothing stored. Writes are durable when they
// return.
type Store interface {
	// CreateAccount stores a new record; ErrExists when its id is taken.
	CreateAccount(ctx context.Context, r *Record) error
	// Account returns the record with the id, or ErrNotFound.
	Account(ctx context.Context, id string) (*Record, error)
	// Accounts returns every record, by id; empty, not nil, when none.
	Accounts(ctx context.Context) ([]*Record, error)
	// UpdateAccount changes the record with the id atomically: it calls
	// change with a copy of the record and stores what change left in it,
	// with Version incremented. When change returns an error, nothing is
	// stored and UpdateAccount returns that error. ErrNotFound when no
	// record has the id (change is not called). change may be called
	// more than once (an optimistic store retries on conflict) and must
	// not have other effects.
	UpdateAccount(ctx context.Context, id string, change func(*Record) error) (*Record, error)
}

// Build returns the account the record describes (Spec.Build). An empty
// rate limit leaves Limit zero: the caller's default applies.
func (r *Record) Build() (*Account, error) {
	spec := Spec{
		ID:             r.ID,
		Name:           r.Name,
		RateLimit:      r.RateLimit,
		Burst:          r.Burst,
		Allow:          r.Allow,
		TaskTypes:      r.TaskTypes,
		FailureWebhook: r.FailureWebhook,
		Disabled:       r.Disabled,
		WebhooksLocked: r.WebhooksLocked,
	}
	for _, q := range r.Quotas {
		spec.Quotas = append(spec.Quotas, q.Quota())
	}
	for _, k := range r.Keys {
		sum, err := ParseKeyHash(k.SHA256)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
		key := Key{Hash: sum}
		if k.ExpiresAt != nil {
			key.ExpiresAt = *k.ExpiresAt
		}
		spec.Keys = append(spec.Keys, key)
	}
	for _, w := range r.Webhooks {
		spec.Webhooks = append(spec.Webhooks, Webhook(w))
	}
	return spec.Build()
}

// Clone returns a deep copy of the record.
func (r *Record) Clone() *Record {
	c := *r
	c.Allow = cloneStrings(r.Allow)
	c.TaskTypes = cloneStrings(r.TaskTypes)
	if r.Quotas != nil {
		c.Quotas = make([]QuotaRecord, len(r.Quotas))
		for i, q := range r.Quotas {
			q.TaskTypes = cloneStrings(q.TaskTypes)
			c.Quotas[i] = q
		}
	}
	if r.Webhooks != nil {
		c.Webhooks = make([]WebhookRecord, len(r.Webhooks))
		for i, w := range r.Webhooks {
			w.Types = cloneStrings(w.Types)
			c.Webhooks[i] = w
		}
	}
	if r.Keys != nil {
		c.Keys = make([]KeyRecord, len(r.Keys))
		for i, k := range r.Keys {
			if k.ExpiresAt != nil {
				t := *k.ExpiresAt
				k.ExpiresAt = &t
			}
			c.Keys[i] = k
		}
	}
	return &c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

// StaticKeyID names a key of a static account in the admin API: the start
// of its hash.
func StaticKeyID(k Key) string {
	return "sha256_" + hex.EncodeToString(k.Hash[:6])
}
