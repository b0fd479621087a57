package task

import (
	"encoding/json"
	"time"
)

// View is the task object of the client API: what GET /v3/tasks lists, a
// sync call answers and a webhook receives.
type View struct {
	Action      string          `json:"action"`
	Type        string          `json:"type"`
	Status      Status          `json:"status"`
	TaskID      string          `json:"task_id"`
	GroupID     string          `json:"group_id"`
	RequestID   string          `json:"request_id"`
	CreatedAt   string          `json:"created_at"`
	CompletedAt *string         `json:"completed_at"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	Message     *string         `json:"message"`
}

// View returns the client's view of the task. Times are RFC 3339 with
// offset.
func (t *Task) View() View {
	v := View{
		Action:    t.Action,
		Type:      t.Type,
		Status:    t.Status,
		TaskID:    t.TaskID,
		GroupID:   t.GroupID,
		RequestID: t.RequestID,
		CreatedAt: t.CreatedAt.Format(time.RFC3339Nano),
		Result:    t.Result,
		Error:     t.Error,
		Message:   t.Message,
	}
	if len(v.Result) == 0 {
		v.Result = json.RawMessage("null")
	}
	if t.CompletedAt != nil {
		s := t.CompletedAt.Format(time.RFC3339Nano)
		v.CompletedAt = &s
	}
	return v
}
