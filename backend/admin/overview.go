package admin

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/node"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Bounds of the views across accounts.
const (
	// MaxTasksFound is the most tasks a search across accounts returns.
	MaxTasksFound = 100
	// MaxDeliveriesListed is the most deliveries a listing across
	// accounts returns (limit), and MaxRetries the most one call retries.
	MaxDeliveriesListed = 500
	MaxRetries          = 500
)

// AccountTask is a task with the account it belongs to.
type AccountTask struct {
	AccountID string `json:"account_id"`
	task.View
}

// TaskList is the answer to GET /taskgate/tasks.
type TaskList struct {
	Tasks []AccountTask `json:"tasks"`
	// Truncated tells that more tasks matched than MaxTasksFound.
	Truncated bool `json:"truncated"`
}

// AccountDelivery is a webhook delivery with the account it belongs to.
type AccountDelivery struct {
	AccountID string `json:"account_id"`
	api.DeliveryView
}

// DeliveryList is the answer to GET /taskgate/deliveries: newest first.
type DeliveryList struct {
	Deliveries []AccountDelivery `json:"deliveries"`
	// Truncated tells that more deliveries matched than limit.
	Truncated bool `json:"truncated"`
}

// DeliveryRef names one delivery of one account.
type DeliveryRef struct {
	AccountID string `json:"account_id"`
	ID        string `json:"id"`
}

// RetryResult is the answer to POST /taskgate/deliveries/retry: the
// deliveries due again, and those that could not be retried with why.
type RetryResult struct {
	Retried []AccountDelivery `json:"retried"`
	Errors  []RetryError      `json:"errors"`
}

// RetryError is a delivery a retry could not take, with the wire error.
type RetryError struct {
	DeliveryRef
	Error   string `json:"error"`
	Message string `json:"message"`
}

// SourceView is how one task type's source is doing on the node that
// answers: its circuit breaker, its last calls, its maintenance window.
type SourceView struct {
	TaskType string `json:"task_type"`
	Source   string `json:"source"`
	// State is up, degraded, down or maintenance, as GET /v3/status says.
	State string `json:"state"`
	// Breaker is the circuit's state: closed, open or half_open.
	Breaker string `json:"breaker"`
	// Queued is the number of tasks of the type waiting for a worker.
	Queued int `json:"queued"`
	// Calls is how many of the last calls are looked at, SourceDown how
	// many of them found the source down, SourceDownRate their share.
	Calls          int     `json:"calls"`
	SourceDown     int     `json:"source_down"`
	SourceDownRate float64 `json:"source_down_rate"`
	LatencyP50MS   float64 `json:"latency_p50_ms"`
	LatencyP95MS   float64 `json:"latency_p95_ms"`
	// RecentErrors are the last failures, newest first.
	RecentErrors []SourceError `json:"recent_errors"`
	// Maintenance is the window in force, if any.
	Maintenance *MaintenanceNow `json:"maintenance,omitempty"`
}

// SourceError is one failed source call.
type SourceError struct {
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// MaintenanceNow is the maintenance window a source is in.
type MaintenanceNow struct {
	Message string    `json:"message"`
	Until   time.Time `json:"until"`
}

// SourceList is the answer to GET /taskgate/sources, by task type.
type SourceList struct {
	Sources []SourceView `json:"sources"`
}

// NodeList is the answer to GET /taskgate/nodes: the node that answers,
// then the others that share its store.
type NodeList struct {
	Nodes []node.State `json:"nodes"`
}

// accountIDs returns every account's id, static and dynamic, sorted.
func (h *Handler) accountIDs(ctx context.Context) ([]string, error) {
	records, static, err := h.Service.List(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(records)+len(static))
	for _, r := range records {
		ids = append(ids, r.ID)
	}
	for _, a := range static {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// scope returns the accounts a view across accounts looks at: the one
// account_id names (which must exist), or all.
func (h *Handler) scope(ctx context.Context, accountID string) ([]string, error) {
	if accountID == "" {
		return h.accountIDs(ctx)
	}
	if _, _, err := h.Service.Account(ctx, accountID); err != nil {
		return nil, err
	}
	return []string{accountID}, nil
}

// findTasks answers GET /taskgate/tasks?request_id=…|task_id=…|group_id=…
// (exactly one), optionally with account_id: the matching tasks of every
// account, at most MaxTasksFound. A task id or a group id is the
// account's own: every account is asked.
func (h *Handler) findTasks(w http.ResponseWriter, r *http.Request) {
	if h.Client == nil {
		apierr.Write(w, apierr.NotFound)
		return
	}
	q := r.URL.Query()
	requestID, taskID, groupID := q.Get("request_id"), q.Get("task_id"), q.Get("group_id")
	given := 0
	for _, v := range []string{requestID, taskID, groupID} {
		if v != "" {
			given++
		}
		if len(v) > api.MaxIDLength {
			apierr.Write(w, apierr.BadRequest("ids are at most "+strconv.Itoa(api.MaxIDLength)+" bytes"))
			return
		}
	}
	if given != 1 {
		apierr.Write(w, apierr.BadRequest("give exactly one of request_id, task_id and group_id"))
		return
	}
	tasks := h.Client.Service
	found := TaskList{Tasks: []AccountTask{}}
	// A request id is unique: the store finds its task in one look,
	// whichever account's.
	if requestID != "" && q.Get("account_id") == "" {
		t, err := tasks.Find(r.Context(), requestID)
		switch {
		case err == nil:
			found.Tasks = append(found.Tasks, AccountTask{AccountID: t.AccountID, View: t.View()})
		case !errors.Is(err, task.ErrNotFound):
			writeError(w, err)
			return
		}
		apierr.WriteJSON(w, http.StatusOK, found)
		return
	}
	ids, err := h.scope(r.Context(), q.Get("account_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	for _, id := range ids {
		var list []*task.Task
		switch {
		case requestID != "":
			var t *task.Task
			t, err = tasks.Get(r.Context(), id, requestID)
			list = []*task.Task{t}
			if errors.Is(err, task.ErrNotFound) {
				list, err = nil, nil
			}
		case taskID != "":
			list, err = tasks.ListByTaskID(r.Context(), id, taskID)
		default:
			list, err = tasks.ListByGroup(r.Context(), id, groupID)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		for _, t := range list {
			found.Tasks = append(found.Tasks, AccountTask{AccountID: id, View: t.View()})
		}
		if len(found.Tasks) > MaxTasksFound {
			found.Tasks, found.Truncated = found.Tasks[:MaxTasksFound], true
			break
		}
	}
	apierr.WriteJSON(w, http.StatusOK, found)
}

// listDeliveries answers GET /taskgate/deliveries?status=…[&account_id=…]
// [&limit=…]: the deliveries in that status (failed by default) across
// accounts, newest first.
func (h *Handler) listDeliveries(w http.ResponseWriter, r *http.Request) {
	if h.Client == nil || h.Client.Deliveries == nil {
		apierr.Write(w, apierr.NotFound)
		return
	}
	q := r.URL.Query()
	status := webhook.Status(q.Get("status"))
	switch status {
	case "":
		status = webhook.Failed
	case webhook.Pending, webhook.Delivered, webhook.Failed:
	default:
		apierr.Write(w, apierr.BadRequest("status must be pending, delivered or failed"))
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxDeliveriesListed {
			apierr.Write(w, apierr.BadRequest("limit must be from 1 to "+strconv.Itoa(MaxDeliveriesListed)))
			return
		}
		limit = n
	}
	ids, err := h.scope(r.Context(), q.Get("account_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	list := DeliveryList{Deliveries: []AccountDelivery{}}
	var all []*webhook.Delivery
	for _, id := range ids {
		ds, err := h.Client.Deliveries.ListDeliveries(r.Context(), id, webhook.Filter{Status: status}, limit+1)
		if err != nil {
			writeError(w, err)
			return
		}
		all = append(all, ds...)
	}
	slices.SortFunc(all, func(a, b *webhook.Delivery) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(all) > limit {
		all, list.Truncated = all[:limit], true
	}
	for _, d := range all {
		list.Deliveries = append(list.Deliveries, AccountDelivery{AccountID: d.AccountID, DeliveryView: api.ViewDelivery(d)})
	}
	apierr.WriteJSON(w, http.StatusOK, list)
}

// retryDeliveries answers POST /taskgate/deliveries/retry
// {"deliveries":[{"account_id":…,"id":…},…]}: each delivery is due again
// at once, as POST …/deliveries/{id}/retry makes it; one that cannot be
// retried, whatever the reason (the store failing too), is listed with
// its error and does not stop the others.
func (h *Handler) retryDeliveries(w http.ResponseWriter, r *http.Request) {
	if h.Client == nil || h.Client.Deliveries == nil {
		apierr.Write(w, apierr.NotFound)
		return
	}
	var in struct {
		Deliveries []DeliveryRef `json:"deliveries"`
	}
	if !readBody(w, r, &in, false) {
		return
	}
	if len(in.Deliveries) == 0 || len(in.Deliveries) > MaxRetries {
		apierr.Write(w, apierr.BadRequest("deliveries: give 1 to "+strconv.Itoa(MaxRetries)))
		return
	}
	res := RetryResult{Retried: []AccountDelivery{}, Errors: []RetryError{}}
	now := h.Service.now()
	for _, ref := range in.Deliveries {
		var err error = webhook.ErrNotFound
		var d *webhook.Delivery
		if len(ref.ID) <= api.MaxIDLength && len(ref.AccountID) <= api.MaxIDLength {
			d, err = h.Client.Deliveries.RetryDelivery(r.Context(), ref.AccountID, ref.ID, now)
		}
		if err != nil {
			// A store failure is listed like the others: the deliveries
			// before it are due again, and the answer must say which.
			e := apierr.From(err)
			res.Errors = append(res.Errors, RetryError{DeliveryRef: ref, Error: e.Code, Message: e.Message})
			continue
		}
		res.Retried = append(res.Retried, AccountDelivery{AccountID: ref.AccountID, DeliveryView: api.ViewDelivery(d)})
	}
	if len(res.Retried) > 0 && h.Client.WakeDeliveries != nil {
		h.Client.WakeDeliveries()
	}
	apierr.WriteJSON(w, http.StatusOK, res)
}

func (h *Handler) listSources(w http.ResponseWriter, r *http.Request) {
	list := SourceList{Sources: []SourceView{}}
	if h.Sources != nil {
		list.Sources = append(list.Sources, h.Sources(r.Context())...)
	}
	apierr.WriteJSON(w, http.StatusOK, list)
}

func (h *Handler) listNodes(w http.ResponseWriter, r *http.Request) {
	if h.Nodes == nil {
		apierr.Write(w, apierr.NotFound)
		return
	}
	nodes, err := h.Nodes(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusOK, NodeList{Nodes: nodes})
}
