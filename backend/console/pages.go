package console

import (
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/backend/usage"
)

func (c *Console) route() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { c.redirect(w, r, "/accounts", "") })
	for _, name := range []string{"console.css", "console.js"} {
		body, _ := assets.ReadFile("ui/static/" + name)
		kind := mime.TypeByExtension(path.Ext(name))
		mux.HandleFunc("GET /static/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", kind)
			w.Header().Set("Cache-Control", "public, max-age=3600")
			_, _ = w.Write(body)
		})
	}
	mux.HandleFunc("GET /accounts", c.accounts)
	mux.HandleFunc("GET /new-account", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusOK, "new", "New account", "accounts", accountForm{TaskTypes: c.taskTypes})
	})
	mux.HandleFunc("POST /accounts", c.createAccount)
	mux.HandleFunc("GET /accounts/{id}", c.account)
	mux.HandleFunc("POST /accounts/{id}", c.updateAccount)
	mux.HandleFunc("POST /accounts/{id}/disable", c.setDisabled(true))
	mux.HandleFunc("POST /accounts/{id}/enable", c.setDisabled(false))
	mux.HandleFunc("POST /accounts/{id}/keys", c.addKey)
	mux.HandleFunc("POST /accounts/{id}/keys/{key_id}/revoke", c.revokeKey)
	mux.HandleFunc("POST /accounts/{id}/webhooks", c.createWebhook)
	mux.HandleFunc("POST /accounts/{id}/webhooks/{wid}/delete", c.deleteWebhook)
	mux.HandleFunc("POST /accounts/{id}/webhooks/{wid}/rotate", c.rotateWebhook)
	mux.HandleFunc("POST /accounts/{id}/webhooks/{wid}/enable", c.setWebhookEnabled(true))
	mux.HandleFunc("POST /accounts/{id}/webhooks/{wid}/disable", c.setWebhookEnabled(false))
	mux.HandleFunc("GET /accounts/{id}/tasks/{request_id}", c.task)
	mux.HandleFunc("GET /tasks", c.tasks)
	mux.HandleFunc("GET /tasks/{request_id}", c.taskByRequestID)
	mux.HandleFunc("GET /deliveries", c.deliveries)
	mux.HandleFunc("POST /deliveries/retry", c.retryDeliveries)
	mux.HandleFunc("GET /sources", c.sources)
	mux.HandleFunc("GET /nodes", c.nodes)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { c.fail(w, r, http.StatusNotFound, "No such page.") })
	c.mux = mux
}

// apiPath is the admin API path of an account, with more path parts.
func apiPath(id string, parts ...string) string {
	p := admin.Prefix + "accounts/" + url.PathEscape(id)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// accountList is the data of the accounts page.
type accountList struct {
	Query    string
	Accounts []admin.AccountView
	Total    int
	Page     int
	Pages    int
	Prev     string
	Next     string
}

func (c *Console) accounts(w http.ResponseWriter, r *http.Request) {
	// The list is read as the API reads it, without its JSON: at 1,000
	// accounts, encoding and decoding them would cost more than the page.
	all, err := c.admin.AccountViews(r.Context())
	if err != nil {
		c.failAPI(w, r, apierr.From(err))
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	matched := all
	if q != "" {
		lq := strings.ToLower(q)
		matched = slices.DeleteFunc(matched, func(a admin.AccountView) bool {
			return !strings.Contains(strings.ToLower(a.ID), lq) && !strings.Contains(strings.ToLower(a.Name), lq)
		})
	}
	v := accountList{Query: q, Total: len(matched), Pages: max(1, (len(matched)+PageSize-1)/PageSize)}
	v.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	v.Page = min(max(v.Page, 1), v.Pages)
	start := (v.Page - 1) * PageSize
	v.Accounts = matched[start:min(start+PageSize, len(matched))]
	pageLink := func(n int) string {
		u := url.Values{"page": {strconv.Itoa(n)}}
		if q != "" {
			u.Set("q", q)
		}
		return c.link("/accounts?" + u.Encode())
	}
	if v.Page > 1 {
		v.Prev = pageLink(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.Next = pageLink(v.Page + 1)
	}
	c.render(w, r, http.StatusOK, "accounts", "Accounts", "accounts", v)
}

// accountForm is the data of the form that creates or edits an account.
type accountForm struct {
	TaskTypes []string
	Account   admin.AccountView
}

// input reads the account form into the admin API's fields. On a new
// account every field is sent; on a change, only those of the form.
func input(r *http.Request, creating bool) map[string]any {
	in := map[string]any{}
	if creating {
		in["id"] = strings.TrimSpace(r.PostFormValue("id"))
	}
	in["name"] = strings.TrimSpace(r.PostFormValue("name"))
	if rate := strings.TrimSpace(r.PostFormValue("rate_limit")); rate != "" {
		in["rate_limit"] = rate
		if b := strings.TrimSpace(r.PostFormValue("burst")); b != "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil {
				n = -1 // the API says what is wrong with it
			}
			in["burst"] = n
		}
	} else if !creating {
		in["rate_limit"] = nil
	}
	in["allow"] = lines(r.PostFormValue("allow"))
	in["task_types"] = nonNil(r.PostForm["task_types"])
	in["failure_webhook"] = strings.TrimSpace(r.PostFormValue("failure_webhook"))
	return in
}

func lines(s string) []string {
	out := []string{}
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// secretShown is the page that shows a new key or a webhook's secret,
// once.
type secretShown struct {
	AccountID string
	What      string
	Secret    string
	Note      string
}

func (c *Console) createAccount(w http.ResponseWriter, r *http.Request) {
	var created admin.CreatedAccount
	if err := c.call(r.Context(), http.MethodPost, admin.Prefix+"accounts", input(r, true), &created); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.render(w, r, http.StatusCreated, "secret", "Account created", "accounts", secretShown{
		AccountID: created.ID, What: "API key", Secret: created.APIKey,
		Note: "The account " + created.ID + " is created. Its key is shown here once: give it to the account now.",
	})
}

// accountPage is the data of an account's page.
type accountPage struct {
	Account   admin.AccountView
	TaskTypes []string
	Webhooks  []endpoints.View
	Usage     usageView
	Days      int
}

func (c *Console) account(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx := r.Context()
	v := accountPage{TaskTypes: c.taskTypes, Days: 30}
	if err := c.call(ctx, http.MethodGet, apiPath(id), nil, &v.Account); err != nil {
		c.failAPI(w, r, err)
		return
	}
	if d, err := strconv.Atoi(r.URL.Query().Get("days")); err == nil && d >= 1 && d <= admin.MaxUsageDays {
		v.Days = d
	}
	to := c.clock().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, 1-v.Days)
	var rep admin.UsageReport
	q := "?from=" + usage.Day(from) + "&to=" + usage.Day(to)
	if err := c.call(ctx, http.MethodGet, apiPath(id, "usage")+q, nil, &rep); err != nil {
		c.failAPI(w, r, err)
		return
	}
	v.Usage = newUsageView(&rep, from, to)
	var hooks struct {
		Webhooks []endpoints.View `json:"webhooks"`
	}
	if err := c.call(ctx, http.MethodGet, apiPath(id, "webhooks"), nil, &hooks); err != nil {
		c.failAPI(w, r, err)
		return
	}
	v.Webhooks = hooks.Webhooks
	c.render(w, r, http.StatusOK, "account", "Account "+id, "accounts", v)
}

func (c *Console) updateAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := c.call(r.Context(), http.MethodPatch, apiPath(id), input(r, false), nil); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.redirect(w, r, "/accounts/"+url.PathEscape(id), "saved")
}

func (c *Console) setDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := c.call(r.Context(), http.MethodPatch, apiPath(id), map[string]any{"disabled": disabled}, nil); err != nil {
			c.failAPI(w, r, err)
			return
		}
		done := "enabled"
		if disabled {
			done = "disabled"
		}
		c.redirect(w, r, "/accounts/"+url.PathEscape(id), done)
	}
}

func (c *Console) addKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body := map[string]any{}
	note := "The new key works now, and so do the account's other keys."
	if e := strings.TrimSpace(r.PostFormValue("expire_others_in")); e != "" {
		body["expire_others_in"] = e
		note = "The new key works now; the account's other keys expire in " + e + "."
	}
	var added admin.NewKeyView
	if err := c.call(r.Context(), http.MethodPost, apiPath(id, "keys"), body, &added); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.render(w, r, http.StatusCreated, "secret", "New key", "accounts", secretShown{
		AccountID: id, What: "API key " + added.KeyID, Secret: added.APIKey,
		Note: note + " The key is shown here once: give it to the account now.",
	})
}

func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := c.call(r.Context(), http.MethodDelete, apiPath(id, "keys", r.PathValue("key_id")), nil, nil); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.redirect(w, r, "/accounts/"+url.PathEscape(id), "revoked")
}

func (c *Console) createWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	in := map[string]any{
		"url":         strings.TrimSpace(r.PostFormValue("url")),
		"description": strings.TrimSpace(r.PostFormValue("description")),
		"task_types":  nonNil(r.PostForm["task_types"]),
	}
	var v endpoints.View
	if err := c.call(r.Context(), http.MethodPost, apiPath(id, "webhooks"), in, &v); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.render(w, r, http.StatusCreated, "secret", "Webhook endpoint created", "accounts", secretShown{
		AccountID: id, What: "signing secret of " + v.URL, Secret: v.Secret,
		Note: "Deliveries to this endpoint are signed with this secret (Standard Webhooks). It is shown here once.",
	})
}

func (c *Console) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := c.call(r.Context(), http.MethodDelete, apiPath(id, "webhooks", r.PathValue("wid")), nil, nil); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.redirect(w, r, "/accounts/"+url.PathEscape(id), "webhook-delete")
}

// setWebhookEnabled turns an endpoint on or off: turned on again after
// taskgate disabled it, its failed deliveries can be retried.
func (c *Console) setWebhookEnabled(enabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := c.call(r.Context(), http.MethodPatch, apiPath(id, "webhooks", r.PathValue("wid")), map[string]any{"enabled": enabled}, nil); err != nil {
			c.failAPI(w, r, err)
			return
		}
		c.redirect(w, r, "/accounts/"+url.PathEscape(id), "webhook")
	}
}

func (c *Console) rotateWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body := map[string]any{}
	if g := strings.TrimSpace(r.PostFormValue("grace")); g != "" {
		body["grace"] = g
	}
	var v endpoints.View
	if err := c.call(r.Context(), http.MethodPost, apiPath(id, "webhooks", r.PathValue("wid"), "rotate-secret"), body, &v); err != nil {
		c.failAPI(w, r, err)
		return
	}
	note := "Deliveries carry signatures by both secrets"
	if v.PreviousSecretExpiresAt != nil {
		note += " until " + formatTime(v.PreviousSecretExpiresAt)
	}
	c.render(w, r, http.StatusOK, "secret", "Secret rotated", "accounts", secretShown{
		AccountID: id, What: "new signing secret of " + v.URL, Secret: v.Secret,
		Note: note + ", then by this one alone. It is shown here once.",
	})
}

// taskPage is the data of a task's page.
type taskPage struct {
	Task       admin.AccountTask
	Deliveries []admin.AccountDelivery
}

func (c *Console) task(w http.ResponseWriter, r *http.Request) {
	c.showTask(w, r, r.PathValue("id"), r.PathValue("request_id"))
}

func (c *Console) showTask(w http.ResponseWriter, r *http.Request, accountID, requestID string) {
	ctx := r.Context()
	var found admin.TaskList
	q := url.Values{"request_id": {requestID}, "account_id": {accountID}}
	if err := c.call(ctx, http.MethodGet, admin.Prefix+"tasks?"+q.Encode(), nil, &found); err != nil {
		c.failAPI(w, r, err)
		return
	}
	if len(found.Tasks) == 0 {
		c.fail(w, r, http.StatusNotFound, "The account "+accountID+" has no task "+requestID+".")
		return
	}
	v := taskPage{Task: found.Tasks[0]}
	var ds []admin.AccountDelivery
	if err := c.call(ctx, http.MethodGet, apiPath(accountID, "deliveries")+"?request_id="+url.QueryEscape(requestID), nil, &ds); err != nil {
		c.failAPI(w, r, err)
		return
	}
	v.Deliveries = ds
	c.render(w, r, http.StatusOK, "task", "Task "+requestID, "tasks", v)
}

// taskSearch is the data of the tasks page.
type taskSearch struct {
	By, Query, Account string
	Searched           bool
	Tasks              []admin.AccountTask
}

func (c *Console) tasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := taskSearch{By: q.Get("by"), Query: strings.TrimSpace(q.Get("q")), Account: strings.TrimSpace(q.Get("account"))}
	switch v.By {
	case "request_id", "task_id", "group_id":
	default:
		v.By = "request_id"
	}
	if v.Query != "" {
		v.Searched = true
		p := url.Values{v.By: {v.Query}}
		if v.Account != "" {
			p.Set("account_id", v.Account)
		}
		var found admin.TaskList
		if err := c.call(r.Context(), http.MethodGet, admin.Prefix+"tasks?"+p.Encode(), nil, &found); err != nil {
			c.failAPI(w, r, err)
			return
		}
		v.Tasks = found.Tasks
	}
	c.render(w, r, http.StatusOK, "tasks", "Tasks", "tasks", v)
}

// taskByRequestID is a task's link by its request id alone: the task's
// page when one account has it.
func (c *Console) taskByRequestID(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("request_id")
	var found admin.TaskList
	if err := c.call(r.Context(), http.MethodGet, admin.Prefix+"tasks?request_id="+url.QueryEscape(id), nil, &found); err != nil {
		c.failAPI(w, r, err)
		return
	}
	switch len(found.Tasks) {
	case 0:
		c.fail(w, r, http.StatusNotFound, "No account has a task "+id+".")
	case 1:
		c.showTask(w, r, found.Tasks[0].AccountID, id)
	default:
		c.render(w, r, http.StatusOK, "tasks", "Tasks", "tasks", taskSearch{By: "request_id", Query: id, Searched: true, Tasks: found.Tasks})
	}
}

// deliveryList is the data of the deliveries page.
type deliveryList struct {
	Account    string
	Deliveries []admin.AccountDelivery
	Page       int
	Prev, Next string
	// Beyond tells that more failed than the admin API lists
	// (admin.MaxDeliveriesListed): narrow by account to see them.
	Beyond bool
}

// deliveries lists the failed deliveries, newest first, PageSize a page,
// as far as the admin API lists them.
func (c *Console) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := deliveryList{Account: strings.TrimSpace(q.Get("account"))}
	pages := admin.MaxDeliveriesListed / PageSize
	v.Page, _ = strconv.Atoi(q.Get("page"))
	v.Page = min(max(v.Page, 1), pages)
	// The listing up to this page's end, and one more to know of a next.
	p := url.Values{"status": {"failed"}, "limit": {strconv.Itoa(min(v.Page*PageSize+1, admin.MaxDeliveriesListed))}}
	if v.Account != "" {
		p.Set("account_id", v.Account)
	}
	var list admin.DeliveryList
	if err := c.call(r.Context(), http.MethodGet, admin.Prefix+"deliveries?"+p.Encode(), nil, &list); err != nil {
		c.failAPI(w, r, err)
		return
	}
	start := min((v.Page-1)*PageSize, len(list.Deliveries))
	v.Deliveries = list.Deliveries[start:min(start+PageSize, len(list.Deliveries))]
	pageLink := func(n int) string {
		u := url.Values{"page": {strconv.Itoa(n)}}
		if v.Account != "" {
			u.Set("account", v.Account)
		}
		return c.link("/deliveries?" + u.Encode())
	}
	if v.Page > 1 {
		v.Prev = pageLink(v.Page - 1)
	}
	switch {
	case len(list.Deliveries) > v.Page*PageSize:
		v.Next = pageLink(v.Page + 1)
	case list.Truncated:
		v.Beyond = true
	}
	c.render(w, r, http.StatusOK, "deliveries", "Failed deliveries", "deliveries", v)
}

// retryDeliveries retries the deliveries the form names, each as
// "account_id/delivery_id".
func (c *Console) retryDeliveries(w http.ResponseWriter, r *http.Request) {
	// A row's own button names its delivery alone; the button under the
	// list, the rows ticked.
	picked := r.PostForm["delivery"]
	if one := r.PostFormValue("one"); one != "" {
		picked = []string{one}
	}
	var refs []admin.DeliveryRef
	for _, v := range picked {
		acct, id, ok := strings.Cut(v, "/")
		if ok {
			refs = append(refs, admin.DeliveryRef{AccountID: acct, ID: id})
		}
	}
	if len(refs) == 0 {
		c.fail(w, r, http.StatusBadRequest, "No delivery was selected.")
		return
	}
	var res admin.RetryResult
	if err := c.call(r.Context(), http.MethodPost, admin.Prefix+"deliveries/retry", map[string]any{"deliveries": refs}, &res); err != nil {
		c.failAPI(w, r, err)
		return
	}
	if len(res.Errors) > 0 {
		msg := strconv.Itoa(len(res.Retried)) + " retried; not retried:"
		for _, e := range res.Errors {
			msg += " " + e.AccountID + "/" + e.ID + " (" + e.Message + ")"
		}
		c.fail(w, r, http.StatusConflict, msg)
		return
	}
	back := "/deliveries"
	if a := r.PostFormValue("account"); a != "" {
		back += "?account=" + url.QueryEscape(a)
	}
	c.redirect(w, r, back, "retried")
}

func (c *Console) sources(w http.ResponseWriter, r *http.Request) {
	var list admin.SourceList
	if err := c.call(r.Context(), http.MethodGet, admin.Prefix+"sources", nil, &list); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "sources", "Sources", "sources", list)
}

func (c *Console) nodes(w http.ResponseWriter, r *http.Request) {
	var list admin.NodeList
	if err := c.call(r.Context(), http.MethodGet, admin.Prefix+"nodes", nil, &list); err != nil {
		c.failAPI(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "nodes", "Nodes", "nodes", list)
}
