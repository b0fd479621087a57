package api

import (
	"net/http"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/webhook"
)

// DeliveryLimit is the most deliveries a listing returns.
const DeliveryLimit = 100

// DeliveryView is a webhook delivery as the client API shows it, with
// every attempt.
type DeliveryView struct {
	ID        string         `json:"id"`
	RequestID string         `json:"request_id"`
	URL       string         `json:"webhook_url"`
	Event     string         `json:"event"`
	Status    webhook.Status `json:"status"`
	Attempts  []AttemptView  `json:"attempts"`
	CreatedAt string         `json:"created_at"`
	NextAt    *string        `json:"next_attempt_at"`
}

// AttemptView is an attempt as the API shows it.
type AttemptView = webhook.AttemptView

// ViewDelivery returns the client API's view of a delivery.
func ViewDelivery(d *webhook.Delivery) DeliveryView {
	v := DeliveryView{
		ID:        d.ID,
		RequestID: d.RequestID,
		URL:       d.URL,
		Event:     d.Event,
		Status:    d.Status,
		Attempts:  make([]AttemptView, len(d.Attempts)),
		CreatedAt: d.CreatedAt.Format(time.RFC3339Nano),
	}
	if d.Status == webhook.Pending {
		s := d.NextAt.Format(time.RFC3339Nano)
		v.NextAt = &s
	}
	for i, a := range d.Attempts {
		v.Attempts[i] = webhook.ViewAttempt(a)
	}
	return v
}

// retryDelivery answers POST /v3/webhooks/deliveries/{id}/retry.
func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request, acct *account.Account, id string) {
	if len(id) > MaxIDLength {
		apierr.Write(w, apierr.NotFound)
		return
	}
	d, err := a.Deliveries.RetryDelivery(r.Context(), acct.ID, id, a.now())
	if err != nil {
		writeError(w, err)
		return
	}
	if a.WakeDeliveries != nil {
		a.WakeDeliveries()
	}
	apierr.WriteJSON(w, http.StatusAccepted, ViewDelivery(d))
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request, acct *account.Account) {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		apierr.Write(w, apierr.BadRequest(err.Error()))
		return
	}
	f := webhook.Filter{RequestID: q.Get("request_id"), Status: webhook.Status(q.Get("status"))}
	switch f.Status {
	case "", webhook.Pending, webhook.Delivered, webhook.Failed:
	default:
		apierr.Write(w, apierr.BadRequest("status must be pending, delivered or failed"))
		return
	}
	if len(f.RequestID) > MaxIDLength {
		apierr.Write(w, apierr.BadRequest("ids are at most 256 bytes"))
		return
	}
	if f.RequestID == "" && f.Status == "" {
		apierr.Write(w, apierr.BadRequest("give request_id, status or both"))
		return
	}
	ds, err := a.Deliveries.ListDeliveries(r.Context(), acct.ID, f, DeliveryLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	views := make([]DeliveryView, len(ds))
	for i, d := range ds {
		views[i] = ViewDelivery(d)
	}
	apierr.WriteJSON(w, http.StatusOK, views)
}
