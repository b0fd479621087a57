package endpoints

import (
	"context"
	"errors"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/webhook"
)

// DefaultDisableAfter is how long every attempt at an endpoint may fail
// before taskgate disables it, when the configuration says nothing.
const DefaultDisableAfter = 5 * 24 * time.Hour

// Reasons an endpoint was disabled by taskgate.
const (
	// ReasonGone: the receiver answered 410 Gone.
	ReasonGone = "gone"
	// ReasonFailing: every attempt failed for DisableAfter.
	ReasonFailing = "failing"
)

// healthTimeout bounds the change of a record that health makes.
const healthTimeout = 5 * time.Second

// Health is a dispatcher's Health: it follows each endpoint of a dynamic
// account through the attempts at it. The first failed attempt after a
// delivered one marks the endpoint failing since then, and a delivered one
// clears the mark (a change of the account's record each, not one per
// attempt); an attempt answered 410 Gone, or a failed one once the
// endpoint has failed for DisableAfter (0: never), disables it, and the
// answer tells the dispatcher to notify the account, and how to take the
// disabling back should that notice not be stored. The configuration's
// webhooks are not followed: there is no record to keep the state in.
func (s *Service) Health(d *webhook.Delivery, a webhook.Attempt, now time.Time) *webhook.Disabled {
	acct, ok := s.Lookup(d.AccountID)
	if !ok || acct.Static {
		return nil
	}
	var w *account.Webhook
	for i := range acct.Webhooks {
		if acct.Webhooks[i].URL == d.URL {
			w = &acct.Webhooks[i]
		}
	}
	if w == nil || w.Disabled {
		return nil
	}
	delivered := a.StatusCode >= 200 && a.StatusCode < 300
	switch {
	case delivered && w.FailingSince.IsZero():
		return nil
	case delivered:
		_ = s.mark(d.AccountID, d.URL, func(r *account.WebhookRecord) bool {
			if r.FailingSince.IsZero() {
				return false
			}
			r.FailingSince = time.Time{}
			return true
		})
		return nil
	case a.StatusCode == 410:
		return s.disable(d.AccountID, d.URL, ReasonGone, now)
	case w.FailingSince.IsZero():
		since := a.At
		if since.IsZero() {
			since = now
		}
		_ = s.mark(d.AccountID, d.URL, func(r *account.WebhookRecord) bool {
			if !r.FailingSince.IsZero() {
				return false
			}
			r.FailingSince = since
			return true
		})
		return nil
	case s.DisableAfter > 0 && now.Sub(w.FailingSince) >= s.DisableAfter:
		return s.disable(d.AccountID, d.URL, ReasonFailing, now)
	}
	return nil
}

// disable disables the account's endpoint at url, and answers what to
// tell the account when this call did it (not another node before) and
// stored it. The endpoint as stored must still call for it: for
// ReasonFailing, failing for DisableAfter (its count may have been
// started afresh on another node since this one read it).
func (s *Service) disable(accountID, url, reason string, now time.Time) *webhook.Disabled {
	var out *webhook.Disabled
	err := s.mark(accountID, url, func(r *account.WebhookRecord) bool {
		out = nil
		if r.Disabled {
			return false
		}
		if reason == ReasonFailing && (r.FailingSince.IsZero() || now.Sub(r.FailingSince) < s.DisableAfter) {
			return false
		}
		since := r.FailingSince
		if since.IsZero() {
			since = now
		}
		updated := r.UpdatedAt
		out = &webhook.Disabled{EndpointID: r.EndpointID(), Reason: reason, FailingSince: since,
			Undo: func() { s.undisable(accountID, url, reason, now, updated) }}
		r.Disabled, r.DisabledReason, r.UpdatedAt = true, reason, now
		return true
	})
	if err != nil {
		return nil
	}
	return out
}

// undisable takes back the disabling of the account's endpoint at url
// that disable made at now for reason, while the endpoint stands as it
// left it: disabled, for that reason, last changed then. updated is when
// it was changed before.
func (s *Service) undisable(accountID, url, reason string, now, updated time.Time) {
	_ = s.mark(accountID, url, func(r *account.WebhookRecord) bool {
		if !r.Disabled || r.DisabledReason != reason || !r.UpdatedAt.Equal(now) {
			return false
		}
		r.Disabled, r.DisabledReason, r.UpdatedAt = false, "", updated
		return true
	})
}

// errUnchanged ends a change that has nothing to store.
var errUnchanged = errors.New("unchanged")

// mark changes the account's endpoint at url with change, which tells
// whether it changed anything, and returns whether that was stored (nil),
// nothing was to change (errUnchanged), or the store failed (a failure is
// the next attempt's to retry).
func (s *Service) mark(accountID, url string, change func(*account.WebhookRecord) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	_, err := s.Update(ctx, accountID, func(r *account.Record) error {
		for i := range r.Webhooks {
			if r.Webhooks[i].URL == url {
				if change(&r.Webhooks[i]) {
					return nil
				}
				break
			}
		}
		return errUnchanged
	})
	return err
}
