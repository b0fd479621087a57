package webhook

import (
	"testing"

	"github.com/taskgate/taskgate/backend/account"
)

func TestResolve(t *testing.T) {
	acct := &account.Account{
		ID: "acme",
		Webhooks: []account.Webhook{
			{URL: "https://h.example/signed", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Authorization: "Bearer x"},
			{URL: "https://h.example/plain"},
		},
		FailureWebhook: "https://h.example/failures",
	}
	target, failure, ok := Resolve(acct, &Delivery{URL: "https://h.example/signed", Event: EventTask})
	if !ok || len(target.Secret) != 24 || target.Authorization != "Bearer x" || failure != acct.FailureWebhook {
		t.Fatalf("signed: %+v %q %v", target, failure, ok)
	}
	target, _, ok = Resolve(acct, &Delivery{URL: "https://h.example/plain", Event: EventTask})
	if !ok || target.Secret != nil || target.Authorization != "" {
		t.Fatalf("plain: %+v %v", target, ok)
	}
	if _, _, ok := Resolve(acct, &Delivery{URL: "https://h.example/gone", Event: EventTask}); ok {
		t.Fatal("a removed webhook resolved")
	}
	if target, failure, ok := Resolve(acct, &Delivery{URL: acct.FailureWebhook, Event: EventFailed}); !ok || failure != "" || target.Secret != nil {
		t.Fatalf("failure notification: %+v %q %v", target, failure, ok)
	}
	if _, _, ok := Resolve(acct, &Delivery{URL: "https://h.example/old-failures", Event: EventFailed}); ok {
		t.Fatal("a failure notification to a removed failure webhook resolved")
	}
	if _, _, ok := Resolve(nil, &Delivery{URL: "https://h.example/plain"}); ok {
		t.Fatal("an unknown account resolved")
	}
}
