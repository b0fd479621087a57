package webhook

import "github.com/taskgate/taskgate/backend/account"

// Resolve tells how to send a delivery of the account as its configuration
// stands now: the signing secret and Authorization of the webhook it goes
// to, and the account's failure webhook. ok is false when the account no
// longer has a webhook at the delivery's URL. It is the Resolver of a
// dispatcher once the account is looked up.
func Resolve(acct *account.Account, d *Delivery) (target Target, failureURL string, ok bool) {
	if acct == nil {
		return Target{}, "", false
	}
	if d.Event == EventFailed {
		// Failure notifications are not signed and never notified about.
		return Target{}, "", acct.FailureWebhook != "" && d.URL == acct.FailureWebhook
	}
	for _, h := range acct.Webhooks {
		if h.URL != d.URL {
			continue
		}
		target.Authorization = h.Authorization
		if h.Secret != "" {
			key, err := ParseSecret(h.Secret)
			if err != nil {
				return Target{}, acct.FailureWebhook, false
			}
			target.Secret = key
		}
		return target, acct.FailureWebhook, true
	}
	return Target{}, acct.FailureWebhook, false
}
