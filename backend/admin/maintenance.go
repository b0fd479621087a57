package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/maintenance"
)

// MaintenanceInput is the body of POST /taskgate/maintenance.
type MaintenanceInput struct {
	// TaskType is the configured "action/type" whose source is down.
	TaskType string `json:"task_type"`
	// From is when the window starts (RFC 3339); absent: now.
	From *time.Time `json:"from"`
	// Until is when it ends (RFC 3339), after From and in the future.
	Until *time.Time `json:"until"`
	// Message is the tasks' message during the window.
	Message string `json:"message"`
}

// ScheduleMaintenance stores a window of planned downtime; it holds on
// this node at once, on the others within seconds.
func (s *Service) ScheduleMaintenance(ctx context.Context, in *MaintenanceInput) (*maintenance.Window, error) {
	if s.Maintenance == nil {
		return nil, invalid("maintenance windows are not kept here")
	}
	if !s.TaskTypes[in.TaskType] {
		return nil, invalid("task_type: %q is not a configured task type", in.TaskType)
	}
	now := s.now()
	w := &maintenance.Window{ID: account.NewID("mw_", 16), TaskType: in.TaskType, From: now, Message: in.Message, CreatedAt: now}
	if in.From != nil {
		w.From = in.From.UTC()
	}
	if in.Until == nil {
		return nil, invalid("until: required (RFC 3339)")
	}
	w.Until = in.Until.UTC()
	if !w.Until.After(now) {
		return nil, invalid("until: must be in the future")
	}
	if err := w.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	if err := s.Maintenance.Create(ctx, w); err != nil {
		return nil, err
	}
	return w, nil
}

// MaintenanceList returns every window (those ended within a week
// included), by start.
func (s *Service) MaintenanceList() []*maintenance.Window {
	if s.Maintenance == nil {
		return []*maintenance.Window{}
	}
	return s.Maintenance.List()
}

// CancelMaintenance removes a window, ended or not, and returns it as it
// was.
func (s *Service) CancelMaintenance(ctx context.Context, id string) (*maintenance.Window, error) {
	if s.Maintenance == nil {
		return nil, maintenance.ErrNotFound
	}
	// Read again first: the window may have been set on another node
	// since the last refresh.
	if err := s.Maintenance.Load(ctx); err != nil {
		return nil, err
	}
	var found *maintenance.Window
	for _, w := range s.Maintenance.List() {
		if w.ID == id {
			found = w
		}
	}
	if found == nil {
		return nil, maintenance.ErrNotFound
	}
	if err := s.Maintenance.Delete(ctx, id); err != nil {
		return nil, err
	}
	return found, nil
}

// MaintenanceView is a window as the admin API shows it.
type MaintenanceView struct {
	*maintenance.Window
	// Active tells whether the window is in force now.
	Active bool `json:"active"`
}

// MaintenanceList is the answer of GET /taskgate/maintenance.
type MaintenanceList struct {
	Windows []MaintenanceView `json:"windows"`
}

func (h *Handler) listMaintenance(w http.ResponseWriter, _ *http.Request) {
	now := h.Service.now()
	out := MaintenanceList{Windows: []MaintenanceView{}}
	for _, win := range h.Service.MaintenanceList() {
		out.Windows = append(out.Windows, MaintenanceView{Window: win, Active: win.Active(now)})
	}
	apierr.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) scheduleMaintenance(w http.ResponseWriter, r *http.Request) {
	var in MaintenanceInput
	if !readBody(w, r, &in, false) {
		return
	}
	win, err := h.Service.ScheduleMaintenance(r.Context(), &in)
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusCreated, MaintenanceView{Window: win, Active: win.Active(h.Service.now())})
}

func (h *Handler) cancelMaintenance(w http.ResponseWriter, r *http.Request) {
	win, err := h.Service.CancelMaintenance(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	apierr.WriteJSON(w, http.StatusOK, MaintenanceView{Window: win})
}
