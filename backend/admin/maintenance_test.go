package admin

import (
	"net/http"
	"testing"

	"github.com/taskgate/taskgate/backend/maintenance"
)

func TestMaintenanceWindows(t *testing.T) {
	f := newFixture(t)
	f.handler.Service.Maintenance = maintenance.NewSchedule(maintenance.ScheduleConfig{Store: f.store, Clock: f.clock.Now})
	var win MaintenanceView
	f.do("POST", "/taskgate/maintenance", `{"task_type":"`+pan+`","until":"2026-11-25T12:00:00Z","message":"registry upgrade"}`, http.StatusCreated, &win)
	if win.ID == "" || win.TaskType != pan || !win.From.Equal(f.clock.Now()) || !win.Active || win.Message != "registry upgrade" {
		t.Fatalf("scheduled %+v", win)
	}
	if w, ok := f.handler.Service.Maintenance.Active(pan, f.clock.Now()); !ok || w.ID != win.ID {
		t.Errorf("the window is not in force here at once")
	}
	var list MaintenanceList
	f.do("GET", "/taskgate/maintenance", "", http.StatusOK, &list)
	if len(list.Windows) != 1 || list.Windows[0].ID != win.ID {
		t.Errorf("list %+v", list)
	}
	for _, body := range []string{
		`{"task_type":"nope/nope","until":"2026-11-25T12:00:00Z","message":"m"}`,
		`{"task_type":"` + pan + `","message":"m"}`,
		`{"task_type":"` + pan + `","until":"2026-11-25T09:00:00Z","message":"m"}`,
		`{"task_type":"` + pan + `","from":"2026-11-25T13:00:00Z","until":"2026-11-25T12:00:00Z","message":"m"}`,
		`{"task_type":"` + pan + `","until":"2026-11-25T12:00:00Z","message":""}`,
		`{"task_type":"` + pan + `","until":"2026-11-25T12:00:00Z","message":"m","Message":"n"}`,
		// Years JSON cannot write once in UTC.
		`{"task_type":"` + pan + `","until":"9999-12-31T23:59:59-01:00","message":"m"}`,
		`{"task_type":"` + pan + `","from":"0000-01-01T00:00:00+01:00","until":"2026-11-25T12:00:00Z","message":"m"}`,
	} {
		if got := f.do("POST", "/taskgate/maintenance", body, http.StatusBadRequest, nil); got["error"] != "BAD_REQUEST" {
			t.Errorf("POST %s: %v", body, got)
		}
	}
	var gone MaintenanceView
	f.do("DELETE", "/taskgate/maintenance/"+win.ID, "", http.StatusOK, &gone)
	if gone.ID != win.ID {
		t.Errorf("deleted %+v", gone)
	}
	if _, ok := f.handler.Service.Maintenance.Active(pan, f.clock.Now()); ok {
		t.Error("a cancelled window is still in force")
	}
	f.do("DELETE", "/taskgate/maintenance/"+win.ID, "", http.StatusNotFound, nil)
	f.do("PUT", "/taskgate/maintenance", "{}", http.StatusMethodNotAllowed, nil)
}
