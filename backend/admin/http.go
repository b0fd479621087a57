package admin

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/internal/jsonbody"
	"github.com/taskgate/taskgate/backend/node"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/usage"
)

// MaxBody bounds the body of an admin request.
const MaxBody = 1 << 20

// Optional is a JSON field that tells whether it was present: Set, and
// Value (the zero value when the field was null).
type Optional[T any] struct {
	Set   bool
	Value T
}

// UnmarshalJSON records that the field was present and decodes it,
// refusing unknown fields in nested objects.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		var zero T
		o.Value = zero
		return nil
	}
	return jsonbody.DecodeStrict(b, &o.Value)
}

// Handler serves the admin API under Prefix ("/taskgate/").
type Handler struct {
	Service *Service
	// Client, when set, serves an account's tasks and webhook deliveries
	// to the operator as the client API serves them to the account
	// (whether or not the account is disabled).
	Client *api.API
	// Endpoints, when set, serves an account's webhook endpoints to the
	// operator, who may change them whatever the account's self-service.
	Endpoints *endpoints.Service
	// Sources, when set, says how each task type's source is doing on
	// this node (GET /taskgate/sources).
	Sources func(ctx context.Context) []SourceView
	// Nodes, when set, lists the nodes (GET /taskgate/nodes).
	Nodes func(ctx context.Context) ([]node.State, error)

	routesOnce sync.Once
	mux        *http.ServeMux
}

// Prefix is where the admin API is served.
const Prefix = "/taskgate/"

// ServeHTTP routes an admin request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.routesOnce.Do(h.route)
	if !apierr.CleanPath(r.URL.Path) {
		apierr.Write(w, apierr.NotFound)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// route builds the routes. A path known with another method gets 405 with
// Allow, and an unknown path 404, both as JSON errors (ServeMux's own
// answers are text).
func (h *Handler) route() {
	mux := http.NewServeMux()
	handle := func(path string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods))
		for method, fn := range methods {
			mux.HandleFunc(method+" "+path, fn)
			allow = append(allow, method)
		}
		slices.Sort(allow)
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			methodNotAllowed(w, strings.Join(allow, ", "))
		})
	}
	handle(Prefix+"accounts", map[string]http.HandlerFunc{
		http.MethodGet:  h.list,
		http.MethodPost: h.create,
	})
	handle(Prefix+"accounts/{id}", map[string]http.HandlerFunc{
		http.MethodGet:   h.show,
		http.MethodPatch: h.update,
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			rec, err := h.Service.Disable(r.Context(), r.PathValue("id"))
			h.answer(w, rec, err)
		},
	})
	handle(Prefix+"accounts/{id}/keys", map[string]http.HandlerFunc{http.MethodPost: h.addKey})
	handle(Prefix+"accounts/{id}/keys/{key_id}", map[string]http.HandlerFunc{
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			rec, err := h.Service.RevokeKey(r.Context(), r.PathValue("id"), r.PathValue("key_id"))
			h.answer(w, rec, err)
		},
	})
	handle(Prefix+"accounts/{id}/usage", map[string]http.HandlerFunc{http.MethodGet: h.usage})
	handle(Prefix+"maintenance", map[string]http.HandlerFunc{
		http.MethodGet:  h.listMaintenance,
		http.MethodPost: h.scheduleMaintenance,
	})
	handle(Prefix+"tasks", map[string]http.HandlerFunc{http.MethodGet: h.findTasks})
	handle(Prefix+"deliveries", map[string]http.HandlerFunc{http.MethodGet: h.listDeliveries})
	handle(Prefix+"deliveries/retry", map[string]http.HandlerFunc{http.MethodPost: h.retryDeliveries})
	handle(Prefix+"sources", map[string]http.HandlerFunc{http.MethodGet: h.listSources})
	handle(Prefix+"nodes", map[string]http.HandlerFunc{http.MethodGet: h.listNodes})
	handle(Prefix+"maintenance/{id}", map[string]http.HandlerFunc{http.MethodDelete: h.cancelMaintenance})
	// An account's tasks and deliveries: the client API's own routes
	// answer, methods included.
	if h.Endpoints != nil {
		endpoints := func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if _, _, err := h.Service.Account(r.Context(), id); err != nil {
				writeError(w, err)
				return
			}
			h.Endpoints.Serve(w, r, id, strings.TrimPrefix(r.URL.Path, Prefix+"accounts/"+id+"/webhooks"), true)
		}
		mux.HandleFunc(Prefix+"accounts/{id}/webhooks", endpoints)
		mux.HandleFunc(Prefix+"accounts/{id}/webhooks/{rest...}", endpoints)
	}
	mux.HandleFunc(Prefix+"accounts/{id}/tasks", h.client("/v3/tasks"))
	mux.HandleFunc(Prefix+"accounts/{id}/deliveries", h.client("/v3/webhooks/deliveries"))
	mux.HandleFunc(Prefix+"accounts/{id}/deliveries/{delivery_id}/retry", h.client("/v3/webhooks/deliveries/{delivery_id}/retry"))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { apierr.Write(w, apierr.NotFound) })
	h.mux = mux
}

// client answers …/{id}/tasks and …/{id}/deliveries[/{delivery_id}/retry]
// with the client API at path, as the account would be answered.
func (h *Handler) client(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.Client == nil {
			apierr.Write(w, apierr.NotFound)
			return
		}
		id := r.PathValue("id")
		if _, _, err := h.Service.Account(r.Context(), id); err != nil {
			writeError(w, err)
			return
		}
		// The one write among these routes: a retry, which has no body.
		if r.Method == http.MethodPost && strings.HasSuffix(path, "/retry") && !requireJSON(w, r) {
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.Replace(path, "{delivery_id}", r.PathValue("delivery_id"), 1)
		r2.URL.RawPath = ""
		h.Client.Serve(w, r2, &account.Account{ID: id})
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	apierr.Write(w, apierr.MethodNotAllowed)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	views, err := h.AccountViews(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusOK, AccountList{Accounts: views})
}

// AccountViews returns every account, static and dynamic, by id, as GET
// /taskgate/accounts lists them.
func (h *Handler) AccountViews(ctx context.Context) ([]AccountView, error) {
	records, static, err := h.Service.List(ctx)
	if err != nil {
		return nil, err
	}
	now := h.Service.now()
	views := make([]AccountView, 0, len(records)+len(static))
	for _, rec := range records {
		views = append(views, h.recordView(rec, now))
	}
	for _, a := range static {
		views = append(views, h.staticView(a, now))
	}
	slices.SortFunc(views, func(a, b AccountView) int { return strings.Compare(a.ID, b.ID) })
	return views, nil
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, static, err := h.Service.Account(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	if static != nil {
		apierr.WriteJSON(w, http.StatusOK, h.staticView(static, h.Service.now()))
		return
	}
	apierr.WriteJSON(w, http.StatusOK, h.recordView(rec, h.Service.now()))
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var in Input
	if !readBody(w, r, &in, false) {
		return
	}
	rec, key, err := h.Service.Create(r.Context(), &in)
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusCreated, CreatedAccount{AccountView: h.recordView(rec, h.Service.now()), APIKey: key})
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in Input
	if !readBody(w, r, &in, false) {
		return
	}
	rec, err := h.Service.Update(r.Context(), id, &in)
	h.answer(w, rec, err)
}

func (h *Handler) addKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in struct {
		ExpireOthersIn Optional[string] `json:"expire_others_in"`
	}
	if !readBody(w, r, &in, true) {
		return
	}
	var expire *time.Duration
	if in.ExpireOthersIn.Set && in.ExpireOthersIn.Value != "" {
		d, err := time.ParseDuration(in.ExpireOthersIn.Value)
		if err != nil {
			apierr.Write(w, apierr.BadRequest(`expire_others_in: want a duration such as "24h" or "0s"`))
			return
		}
		expire = &d
	}
	_, added, err := h.Service.AddKey(r.Context(), id, expire)
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusCreated, NewKeyView{
		KeyID:          added.Record.ID,
		APIKey:         added.Key,
		Prefix:         added.Record.Prefix,
		CreatedAt:      added.Record.CreatedAt,
		OthersExpireAt: added.OthersExpireAt,
	})
}

func (h *Handler) usage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	today := h.Service.now().Truncate(24 * time.Hour)
	to, err := parseDay(q.Get("to"), today)
	if err != nil {
		apierr.Write(w, apierr.BadRequest("to: "+err.Error()))
		return
	}
	from, err := parseDay(q.Get("from"), to.AddDate(0, 0, -29))
	if err != nil {
		apierr.Write(w, apierr.BadRequest("from: "+err.Error()))
		return
	}
	rows, err := h.Service.Usage(r.Context(), id, from, to)
	if err != nil {
		writeError(w, err)
		return
	}
	quotas, err := h.Service.QuotaStatus(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	report := UsageReport{
		Quotas:    api.QuotaViews(quotas),
		AccountID: id,
		From:      usage.Day(from),
		To:        usage.Day(to),
		Usage:     make([]UsageRow, 0, len(rows)),
	}
	for _, r := range rows {
		report.Usage = append(report.Usage, UsageRow{Day: r.Day, TaskType: r.TaskType, Counts: r.Counts})
		report.Total.Add(r.Counts)
	}
	apierr.WriteJSON(w, http.StatusOK, report)
}

func parseDay(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New("want a day such as 2026-11-25")
	}
	return t, nil
}

// answer sends the account after a change, or the error.
func (h *Handler) answer(w http.ResponseWriter, rec *account.Record, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusOK, h.recordView(rec, h.Service.now()))
}

// requireJSON answers 415 and returns false unless r says its body is
// application/json: every write must (jsonbody.RequireJSON).
func requireJSON(w http.ResponseWriter, r *http.Request) bool { return jsonbody.RequireJSON(w, r) }

// readBody decodes a JSON body into v, refusing unknown fields; an empty
// body is allowed when optional. It answers and returns false when the
// body is not acceptable, or not said to be JSON.
func readBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	return jsonbody.Read(w, r, v, jsonbody.Options{Limit: MaxBody, Optional: optional, TypeAlways: true})
}

// writeError answers with the wire error of err (apierr.From).
func writeError(w http.ResponseWriter, err error) { apierr.Write(w, apierr.From(err)) }

// AccountView is an account as the admin API shows it: never a key, its
// hash, or a webhook's secret.
type AccountView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Static   bool   `json:"static"`
	Disabled bool   `json:"disabled"`
	// WebhooksLocked: the account may not change its webhook endpoints.
	WebhooksLocked   bool          `json:"webhooks_locked"`
	RateLimit        string        `json:"rate_limit"`
	Burst            int64         `json:"burst"`
	DefaultRateLimit bool          `json:"default_rate_limit"`
	Allow            []string      `json:"allow"`
	TaskTypes        []string      `json:"task_types"`
	Webhooks         []WebhookView `json:"webhooks"`
	FailureWebhook   string        `json:"failure_webhook"`
	// Quotas are the account's quotas; empty when it has none.
	Quotas    []account.QuotaRecord `json:"quotas"`
	Keys      []KeyView             `json:"keys"`
	CreatedAt *time.Time            `json:"created_at,omitempty"`
	UpdatedAt *time.Time            `json:"updated_at,omitempty"`
}

// WebhookView is a webhook without its secrets.
type WebhookView struct {
	ID               string   `json:"id"`
	Enabled          bool     `json:"enabled"`
	Description      string   `json:"description,omitempty"`
	URL              string   `json:"url"`
	Types            []string `json:"types"`
	HasSecret        bool     `json:"has_secret"`
	HasAuthorization bool     `json:"has_authorization"`
}

func webhookView(w *account.Webhook) WebhookView {
	return WebhookView{ID: w.EndpointID(), Enabled: !w.Disabled, Description: w.Description, URL: w.URL,
		Types: nonNil(w.Types), HasSecret: w.Secret != "", HasAuthorization: w.Authorization != ""}
}

// KeyView is a key without the key.
type KeyView struct {
	ID        string     `json:"id"`
	Prefix    string     `json:"prefix"`
	CreatedAt *time.Time `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Expired   bool       `json:"expired"`
}

// CreatedAccount is the answer to POST /taskgate/accounts: the new account
// and its first key, which is shown only here.
type CreatedAccount struct {
	AccountView
	// APIKey is the account's first key, "tg_…".
	APIKey string `json:"api_key"`
}

// AccountList is the answer to GET /taskgate/accounts: every account,
// static and dynamic, by id.
type AccountList struct {
	Accounts []AccountView `json:"accounts"`
}

// NewKeyView is the answer to POST /taskgate/accounts/{id}/keys: the new
// key, which is shown only here.
type NewKeyView struct {
	KeyID     string    `json:"key_id"`
	APIKey    string    `json:"api_key"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	// OthersExpireAt is when the account's other keys expire; nil when
	// they were left alone.
	OthersExpireAt *time.Time `json:"others_expire_at,omitempty"`
}

// UsageReport is the answer to GET /taskgate/accounts/{id}/usage: an
// account's usage per day and task type from From to To, UTC days
// ("2006-01-02"), both included.
type UsageReport struct {
	AccountID string `json:"account_id"`
	From      string `json:"from"`
	To        string `json:"to"`
	// Total comes before Usage, as it always has in the answer.
	Total usage.Counts `json:"total"`
	// Usage is by day, then task type; empty, not null, when none.
	Usage []UsageRow `json:"usage"`
	// Quotas are the account's quotas as they stand now in their
	// periods (whatever From and To); empty when it has none.
	Quotas []api.QuotaView `json:"quotas"`
}

// UsageRow is the counts of one day and task type of a UsageReport.
type UsageRow struct {
	// Day is the UTC day, "2006-01-02".
	Day string `json:"day"`
	// TaskType is "" for requests that name no configured task type.
	TaskType string `json:"task_type"`
	usage.Counts
}

func (h *Handler) recordView(r *account.Record, now time.Time) AccountView {
	v := AccountView{
		ID:             r.ID,
		Name:           r.Name,
		Disabled:       r.Disabled,
		WebhooksLocked: r.WebhooksLocked,
		Allow:          nonNil(r.Allow),
		TaskTypes:      nonNil(r.TaskTypes),
		Webhooks:       []WebhookView{},
		FailureWebhook: r.FailureWebhook,
		Quotas:         append([]account.QuotaRecord{}, r.Quotas...),
		Keys:           []KeyView{},
		CreatedAt:      &r.CreatedAt,
		UpdatedAt:      &r.UpdatedAt,
	}
	limit := h.Service.DefaultLimit
	if r.RateLimit != "" {
		if a, err := r.Build(); err == nil {
			limit = a.Limit
		}
	}
	v.RateLimit, v.Burst, v.DefaultRateLimit = limit.Rate(), limit.Burst, r.RateLimit == ""
	for _, rec := range r.Webhooks {
		w := account.Webhook(rec)
		v.Webhooks = append(v.Webhooks, webhookView(&w))
	}
	for _, k := range r.Keys {
		v.Keys = append(v.Keys, KeyView{ID: k.ID, Prefix: k.Prefix, CreatedAt: &k.CreatedAt, ExpiresAt: k.ExpiresAt, Expired: k.ExpiresAt != nil && !k.ExpiresAt.After(now)})
	}
	return v
}

func (h *Handler) staticView(a *account.Account, now time.Time) AccountView {
	v := AccountView{
		ID:               a.ID,
		Name:             a.Name,
		Static:           true,
		Disabled:         a.Disabled,
		DefaultRateLimit: a.Limit == (ratelimit.Limit{}),
		Allow:            []string{},
		TaskTypes:        nonNil(a.TaskTypes),
		Webhooks:         []WebhookView{},
		FailureWebhook:   a.FailureWebhook,
		Quotas:           []account.QuotaRecord{},
		Keys:             []KeyView{},
	}
	for _, q := range a.Quotas {
		v.Quotas = append(v.Quotas, account.QuotaRecordOf(q))
	}
	// An account without a rate of its own follows the default.
	limit := a.Limit
	if v.DefaultRateLimit {
		limit = h.Service.DefaultLimit
	}
	v.RateLimit, v.Burst = limit.Rate(), limit.Burst
	for _, p := range a.Allow {
		v.Allow = append(v.Allow, p.String())
	}
	for i := range a.Webhooks {
		v.Webhooks = append(v.Webhooks, webhookView(&a.Webhooks[i]))
	}
	for _, k := range a.Keys {
		kv := KeyView{ID: account.StaticKeyID(k)}
		if !k.ExpiresAt.IsZero() {
			at := k.ExpiresAt
			kv.ExpiresAt, kv.Expired = &at, !at.After(now)
		}
		v.Keys = append(v.Keys, kv)
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
