package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/quota"
)

// AccountView is what GET /v3/account shows an account of itself: its
// limits, what it may call, where its webhooks go. Never a key, a secret
// or a webhook's Authorization.
type AccountView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// RateLimit is the account's rate limit, the default one when it sets
	// none.
	RateLimit RateLimitView `json:"rate_limit"`
	// Allow lists the networks requests may come from; empty: any.
	Allow []string `json:"allow"`
	// TaskTypes are the configured task types the account may call.
	TaskTypes []string `json:"task_types"`
	// Webhooks receive the account's finished tasks.
	Webhooks []WebhookView `json:"webhooks"`
	// FailureWebhook is told of deliveries that failed for good.
	FailureWebhook *string `json:"failure_webhook"`
	// Quotas are the account's quotas as they stand in their current
	// periods; empty when it has none.
	Quotas []QuotaView `json:"quotas"`
}

// QuotaView is a quota of an account as it stands in its current period.
type QuotaView struct {
	// Limit is the most tasks of a period.
	Limit int64 `json:"limit"`
	// Period is "day" or "month" (UTC calendar periods).
	Period string `json:"period"`
	// TaskTypes are the task types the quota counts; empty: all.
	TaskTypes []string `json:"task_types"`
	// Used is the units spent in the current period.
	Used int64 `json:"used"`
	// Left is the units left in the current period.
	Left int64 `json:"left"`
	// ResetsAt is the end of the current period.
	ResetsAt time.Time `json:"resets_at"`
}

// QuotaViews returns the views of quotas as they stand; empty, not nil,
// when there are none.
func QuotaViews(st []quota.Status) []QuotaView {
	out := make([]QuotaView, len(st))
	for i, s := range st {
		out[i] = QuotaView{Limit: s.Quota.Limit, Period: string(s.Quota.Period), TaskTypes: append([]string{}, s.Quota.TaskTypes...),
			Used: s.Used, Left: s.Left, ResetsAt: s.ResetAt}
	}
	return out
}

// RateLimitView is a rate limit as the client API shows it.
type RateLimitView struct {
	// Rate is "N/s", "N/m", … as configured.
	Rate  string `json:"rate"`
	Burst int64  `json:"burst"`
	// Default tells that the account follows the configured default.
	Default bool `json:"default"`
	// Policy is the RateLimit-Policy header answers carry.
	Policy string `json:"policy"`
}

// WebhookView is a webhook as its account sees it: its URL and the task
// types it takes (empty: all), never its secret or Authorization.
type WebhookView struct {
	URL   string   `json:"url"`
	Types []string `json:"types"`
}

// StatusView is what GET /v3/status answers: each task type the account
// may call and how its source is doing.
type StatusView struct {
	TaskTypes []TypeStatus `json:"task_types"`
}

// TypeStatus is the state of one task type's source: "up", "degraded"
// (its last calls failed, or it is being probed after an outage), "down"
// (its tasks fail SOURCE_DOWN at once) or "maintenance" (a planned
// downtime: its tasks fail SOURCE_DOWN with the window's message, until
// its end).
type TypeStatus struct {
	TaskType string `json:"task_type"`
	State    string `json:"state"`
	// Message and Until describe a maintenance window.
	Message string     `json:"message,omitempty"`
	Until   *time.Time `json:"until,omitempty"`
}

// allowedTypes returns the configured task types the account may call,
// sorted.
func (a *API) allowedTypes(acct *account.Account) []string {
	names := make([]string, 0, len(a.Types))
	for name := range a.Types {
		if acct.MayUse(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// showAccount answers GET /v3/account.
func (a *API) showAccount(w http.ResponseWriter, r *http.Request, acct *account.Account) {
	var quotas []quota.Status
	if a.Quotas != nil {
		var err error
		if quotas, err = a.Quotas.Status(r.Context(), acct.ID, acct.Quotas); err != nil {
			writeError(w, err)
			return
		}
	}
	limit, isDefault := acct.Limit, acct.Limit.Count == 0
	if isDefault {
		limit = a.DefaultLimit
	}
	v := AccountView{
		ID:        acct.ID,
		Name:      acct.Name,
		RateLimit: RateLimitView{Rate: limit.Rate(), Burst: limit.Burst, Default: isDefault, Policy: limit.PolicyHeader()},
		Allow:     make([]string, 0, len(acct.Allow)),
		TaskTypes: a.allowedTypes(acct),
		Webhooks:  make([]WebhookView, 0, len(acct.Webhooks)),
		Quotas:    QuotaViews(quotas),
	}
	for _, p := range acct.Allow {
		v.Allow = append(v.Allow, p.String())
	}
	for _, h := range acct.Webhooks {
		v.Webhooks = append(v.Webhooks, WebhookView{URL: h.URL, Types: append([]string{}, h.Types...)})
	}
	if acct.FailureWebhook != "" {
		v.FailureWebhook = &acct.FailureWebhook
	}
	apierr.WriteJSON(w, http.StatusOK, v)
}

// showStatus answers GET /v3/status.
func (a *API) showStatus(w http.ResponseWriter, acct *account.Account) {
	names := a.allowedTypes(acct)
	v := StatusView{TaskTypes: make([]TypeStatus, 0, len(names))}
	for _, name := range names {
		st := TypeStatus{State: "up"}
		if a.SourceState != nil {
			st = a.SourceState(a.Types[name])
		}
		st.TaskType = name
		v.TaskTypes = append(v.TaskTypes, st)
	}
	apierr.WriteJSON(w, http.StatusOK, v)
}
