package api

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/ipallow"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/task"
)

func TestShowAccount(t *testing.T) {
	f := newFixture(t)
	f.api.DefaultLimit = ratelimit.DefaultLimit
	own, err := ratelimit.ParseLimit("100/m", 20)
	if err != nil {
		t.Fatal(err)
	}
	acct := &account.Account{
		ID:             "acme",
		Name:           "Acme Ltd",
		Keys:           []account.Key{{Hash: account.HashKey("never shown")}},
		Limit:          own,
		Allow:          ipallow.List{netip.MustParsePrefix("203.0.113.0/24")},
		TaskTypes:      []string{"verify_with_source/ind_pan"},
		Webhooks:       []account.Webhook{{URL: "https://hooks.acme.example/t", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Authorization: "Bearer secret", Types: []string{"verify_with_source/ind_pan"}}},
		FailureWebhook: "https://hooks.acme.example/f",
	}
	w := f.do(t, acct, http.MethodGet, "/v3/account", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /v3/account: %d %s", w.Code, w.Body)
	}
	for _, secret := range []string{"whsec_", "Bearer", "never shown", "sha256"} {
		if strings.Contains(w.Body.String(), secret) {
			t.Errorf("GET /v3/account shows %q: %s", secret, w.Body)
		}
	}
	v := decode[AccountView](t, w)
	if v.ID != "acme" || v.Name != "Acme Ltd" || v.RateLimit != (RateLimitView{Rate: "100/m", Burst: 20, Policy: own.PolicyHeader()}) ||
		!slices.Equal(v.Allow, []string{"203.0.113.0/24"}) || !slices.Equal(v.TaskTypes, []string{"verify_with_source/ind_pan"}) ||
		len(v.Webhooks) != 1 || v.Webhooks[0].URL != "https://hooks.acme.example/t" || v.FailureWebhook == nil {
		t.Errorf("GET /v3/account = %+v", v)
	}

	// An account on the defaults: every configured type, the default rate.
	v = decode[AccountView](t, f.do(t, &account.Account{ID: "plain"}, http.MethodGet, "/v3/account", ""))
	if !v.RateLimit.Default || v.RateLimit.Rate != ratelimit.DefaultLimit.Rate() || len(v.TaskTypes) != 2 ||
		v.Allow == nil || v.Webhooks == nil || v.FailureWebhook != nil {
		t.Errorf("GET /v3/account of an account on the defaults = %+v", v)
	}
	if w := f.do(t, acct, http.MethodPost, "/v3/account", "{}"); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET" {
		t.Errorf("POST /v3/account: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestShowStatus(t *testing.T) {
	f := newFixture(t)
	f.api.SourceState = func(typ *task.Type) TypeStatus {
		if typ.Type == "ind_aadhaar" {
			return TypeStatus{State: "down"}
		}
		return TypeStatus{State: "up"}
	}
	v := decode[StatusView](t, f.do(t, acme, http.MethodGet, "/v3/status", ""))
	want := []TypeStatus{{TaskType: "verify_with_source/ind_aadhaar", State: "down"}, {TaskType: "verify_with_source/ind_pan", State: "up"}}
	if !slices.EqualFunc(v.TaskTypes, want, sameStatus) {
		t.Errorf("GET /v3/status = %+v, want %+v", v.TaskTypes, want)
	}
	// Only the types the account may call.
	v = decode[StatusView](t, f.do(t, limited, http.MethodGet, "/v3/status", ""))
	if !slices.EqualFunc(v.TaskTypes, want[:1], sameStatus) {
		t.Errorf("GET /v3/status of a limited account = %+v, want %+v", v.TaskTypes, want[:1])
	}
}

func sameStatus(a, b TypeStatus) bool {
	return a.TaskType == b.TaskType && a.State == b.State && a.Message == b.Message && (a.Until == nil) == (b.Until == nil)
}
