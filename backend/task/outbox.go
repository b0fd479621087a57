package task

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Deliveries returns the webhook deliveries of a task that just ended: one
// per webhook of the account whose types match the task's (a webhook
// without types takes every task). Sync tasks have none: their caller got
// the answer. The body is the task object exactly as GET shows it.
func Deliveries(hooks []account.Webhook, t *Task, now time.Time) []*webhook.Delivery {
	if !t.Async || !t.Status.Terminal() || len(hooks) == 0 {
		return nil
	}
	var body json.RawMessage
	var out []*webhook.Delivery
	for _, h := range hooks {
		// A disabled endpoint's delivery is stored all the same: it fails
		// when attempted, and stays, to be retried once it is enabled.
		if len(h.Types) > 0 && !slices.Contains(h.Types, t.TypeName()) {
			continue
		}
		if body == nil {
			b, err := json.Marshal(t.View())
			if err != nil {
				return nil
			}
			body = b
		}
		out = append(out, webhook.NewTaskDelivery(t.AccountID, t.RequestID, h.URL, body, now))
	}
	return out
}
