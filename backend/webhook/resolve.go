package webhook

import (
	"time"

	"github.com/taskgate/taskgate/backend/account"
)

// Resolve tells how to send a delivery of the account as its configuration
// stands now: the signing secret and Authorization of the webhook it goes
// to (and its previous secret, until its rotation's overlap ends at now),
// and the account's failure webhook. ok is false when the account no
// longer has an enabled webhook at the delivery's URL. It is the Resolver
// of a dispatcher once the account is looked up.
func Resolve(acct *account.Account, d *Delivery) (target Target, failureURL string, ok bool) {
	return ResolveAt(acct, d, time.Now())
}

// ResolveAt is Resolve at the given time.
func ResolveAt(acct *account.Account, d *Delivery, now time.Time) (target Target, failureURL string, ok bool) {
	if acct == nil {
		return Target{}, "", false
	}
	if Notice(d.Event) {
		// Failure notifications are not signed and never notified about.
		return Target{}, "", acct.FailureWebhook != "" && d.URL == acct.FailureWebhook
	}
	for _, h := range acct.Webhooks {
		if h.URL != d.URL {
			continue
		}
		if h.Disabled {
			// The account disabled the endpoint, or was told once that
			// taskgate did (webhook.disabled): its deliveries fail without
			// a notice each.
			return Target{Disabled: true}, "", false
		}
		target, err := TargetOf(&h, now)
		if err != nil {
			return Target{}, acct.FailureWebhook, false
		}
		return target, acct.FailureWebhook, true
	}
	return Target{}, acct.FailureWebhook, false
}

// TargetOf returns how to send to the webhook at now: its Authorization,
// its secret and, until its rotation's overlap ends, its previous one.
func TargetOf(h *account.Webhook, now time.Time) (Target, error) {
	target := Target{Authorization: h.Authorization}
	if h.Secret == "" {
		return target, nil
	}
	key, err := ParseSecret(h.Secret)
	if err != nil {
		return Target{}, err
	}
	target.Secret = key
	if h.PreviousSecret != "" && now.Before(h.PreviousSecretUntil) {
		if prev, err := ParseSecret(h.PreviousSecret); err == nil {
			target.PreviousSecret = prev
		}
	}
	return target, nil
}
