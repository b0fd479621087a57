// Package account holds API accounts and their keys, and authenticates
// requests against them in time that does not reveal why a request failed.
package account

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// Account is one API customer.
type Account struct {
	// ID is what clients send in the account-id header.
	ID string
	// Name is what people call the account; it may be empty.
	Name string
	// Keys are the account's API keys, as hashes. Several are live during a
	// rotation.
	Keys []Key
	// Limit is the account's rate limit; zero means the configured
	// default.
	Limit ratelimit.Limit
	// Allow lists the networks requests may come from; empty allows any.
	Allow ipallow.List
	// TaskTypes lists the "action/type" pairs the account may call; empty
	// allows all.
	TaskTypes []string
	// Webhooks receive the account's finished tasks.
	Webhooks []Webhook
	// FailureWebhook, when set, is told of deliveries that failed for good.
	FailureWebhook string
	// Quotas bound the tasks the account may create in a UTC day or
	// month; empty: no bound.
	Quotas []quota.Quota
	// Disabled accounts fail authentication with every key.
	Disabled bool
	// Static accounts come from the configuration and cannot be changed at
	// run time.
	Static bool
	// WebhooksLocked keeps the account's webhook endpoints the operator's:
	// the client API lists them and changes none.
	WebhooksLocked bool
}

// Key is one API key of an account, stored only as its SHA-256.
type Key struct {
	// Hash is the SHA-256 of the key.
	Hash [sha256.Size]byte
	// ExpiresAt, when not zero, is when the key stops working.
	ExpiresAt time.Time
}

// Webhook is a pre-configured receiver of an account's finished tasks.
type Webhook struct {
	// URL receives the deliveries; it names the webhook within its account.
	URL string
	// Secret, when set, signs deliveries ("whsec_<base64>").
	Secret string
	// Authorization, when set, is sent as the Authorization header.
	Authorization string
	// Types limits the webhook to these task types; empty means all.
	Types []string
	// ID names the endpoint in the webhooks API; empty for one set
	// before endpoints had ids (EndpointID derives one).
	ID string
	// Description says what the endpoint is for, to people.
	Description string
	// Disabled endpoints get no deliveries.
	Disabled bool
	// CreatedAt and UpdatedAt are zero for webhooks of the
	// configuration.
	CreatedAt, UpdatedAt time.Time
	// PreviousSecret, until PreviousSecretUntil, signs deliveries next to
	// Secret: the overlap of a secret rotation.
	PreviousSecret      string
	PreviousSecretUntil time.Time
	// FailingSince is the first failed attempt since the last delivered
	// one; zero while the endpoint delivers.
	FailingSince time.Time
	// DisabledReason says why taskgate disabled the endpoint: "gone" (it
	// answered 410) or "failing" (every attempt failed for too long).
	DisabledReason string
}

// EndpointID returns the id of the webhook in the webhooks API: its ID,
// or for a webhook set without one (the configuration's, or one stored
// before endpoints had ids) "we_" and 16 hex digits of its URL's SHA-256.
func (w *Webhook) EndpointID() string {
	if w.ID != "" {
		return w.ID
	}
	sum := sha256.Sum256([]byte(w.URL))
	return "we_" + hex.EncodeToString(sum[:8])
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateID checks that id is 1–64 letters, digits, '_', '.' or '-',
// starting with a letter or digit.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("account id %q: want 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", id)
	}
	return nil
}

// HashKey returns the SHA-256 of an API key.
func HashKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// ParseKeyHash parses the hex SHA-256 of a key (64 hex digits).
func ParseKeyHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if len(s) != hex.EncodedLen(sha256.Size) {
		return h, errors.New("key_sha256 must be 64 hex digits (the SHA-256 of the key; see 'taskgate hash-key')")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("key_sha256 must be 64 hex digits (the SHA-256 of the key; see 'taskgate hash-key')")
	}
	return h, nil
}

// ValidateTaskType checks the form "action/type".
func ValidateTaskType(t string) error {
	action, typ, ok := strings.Cut(t, "/")
	if !ok || !segmentPattern.MatchString(action) || !segmentPattern.MatchString(typ) {
		return fmt.Errorf("task type %q: want action/type, each of letters, digits, '_', '.' or '-'", t)
	}
	return nil
}

var segmentPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidateWebhookURL checks that u is an absolute http(s) URL with a host
// and no credentials in it: URLs are shown and logged, credentials go in
// the webhook's authorization, which is not.
func ValidateWebhookURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("webhook URL %q: must be an absolute http:// or https:// URL", u)
	}
	if p.User != nil {
		return fmt.Errorf("webhook URL %q: must not carry credentials; set the webhook's authorization instead", p.Redacted())
	}
	return nil
}

// Validate checks the account's own fields.
func (a *Account) Validate() error {
	if err := ValidateID(a.ID); err != nil {
		return err
	}
	for _, t := range a.TaskTypes {
		if err := ValidateTaskType(t); err != nil {
			return fmt.Errorf("account %s: %w", a.ID, err)
		}
	}
	for i, w := range a.Webhooks {
		if err := w.Validate(); err != nil {
			return fmt.Errorf("account %s: %w", a.ID, err)
		}
		// A delivery names its webhook by URL.
		for _, other := range a.Webhooks[:i] {
			if other.URL == w.URL {
				return fmt.Errorf("account %s: webhook %s: defined more than once", a.ID, w.URL)
			}
		}
	}
	if a.FailureWebhook != "" {
		if err := ValidateWebhookURL(a.FailureWebhook); err != nil {
			return fmt.Errorf("account %s: failure_webhook: %w", a.ID, err)
		}
	}
	if err := quota.ValidateSet(a.Quotas); err != nil {
		return fmt.Errorf("account %s: %w", a.ID, err)
	}
	for _, q := range a.Quotas {
		for _, t := range q.TaskTypes {
			if err := ValidateTaskType(t); err != nil {
				return fmt.Errorf("account %s: quota %s: %w", a.ID, q, err)
			}
		}
	}
	return nil
}

// Validate checks the webhook's URL and types. (Its secret is the
// webhook package's to parse.)
func (w *Webhook) Validate() error {
	if err := ValidateWebhookURL(w.URL); err != nil {
		return err
	}
	for _, t := range w.Types {
		if err := ValidateTaskType(t); err != nil {
			return fmt.Errorf("webhook %s: %w", w.URL, err)
		}
	}
	return nil
}

// MayUse tells whether the account may call the task type "action/type".
func (a *Account) MayUse(taskType string) bool {
	return len(a.TaskTypes) == 0 || slices.Contains(a.TaskTypes, taskType)
}
