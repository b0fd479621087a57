package account

import (
	"errors"
	"fmt"

	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// Spec is an account as people write it, in the Caddyfile (a static
// account) or through the admin API (a dynamic one): Build is the one rule
// that turns either into the Account that requests meet.
type Spec struct {
	ID   string
	Name string
	// RateLimit is the account's rate ("30/s", "100/m"); empty means the
	// configured default, which Build leaves to the caller (Limit zero).
	RateLimit string
	// Burst is the account's burst; 0 means one second's worth of its
	// rate. A burst needs a rate: the default rate's burst is the
	// default's.
	Burst int64
	// Allow lists CIDRs or single addresses; empty allows any.
	Allow []string
	// TaskTypes lists the task types the account may call; empty: all.
	TaskTypes []string
	// Keys are the account's keys, hashed.
	Keys []Key
	// Webhooks receive the account's finished tasks.
	Webhooks []Webhook
	// FailureWebhook is told of deliveries that failed for good.
	FailureWebhook string
	// Quotas bound the tasks the account may create in a day or a month.
	Quotas   []quota.Quota
	Disabled bool
	Static   bool
	// WebhooksLocked keeps the account's endpoints the operator's.
	WebhooksLocked bool
}

// Build returns the account the spec describes, checked (Validate).
func (s *Spec) Build() (*Account, error) {
	a := &Account{
		ID:             s.ID,
		Name:           s.Name,
		Keys:           s.Keys,
		TaskTypes:      s.TaskTypes,
		Webhooks:       s.Webhooks,
		FailureWebhook: s.FailureWebhook,
		Quotas:         s.Quotas,
		Disabled:       s.Disabled,
		Static:         s.Static,
		WebhooksLocked: s.WebhooksLocked,
	}
	var err error
	if a.Limit, err = BuildLimit(s.RateLimit, s.Burst); err != nil {
		return nil, err
	}
	if a.Allow, err = ipallow.Parse(s.Allow); err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// BuildLimit returns an account's limit from its rate and burst as people
// write them: an empty rate is the configured default (the zero Limit,
// which the rate limit replaces with the default at each request, so that
// a changed default holds for every such account); a burst needs a rate.
func BuildLimit(rate string, burst int64) (ratelimit.Limit, error) {
	switch {
	case rate != "":
		l, err := ratelimit.ParseLimit(rate, burst)
		if err != nil {
			return l, fmt.Errorf("rate_limit: %w", err)
		}
		return l, nil
	case burst != 0:
		return ratelimit.Limit{}, errors.New("burst: set with rate_limit")
	}
	return ratelimit.Limit{}, nil
}
