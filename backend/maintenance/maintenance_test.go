package maintenance_test

import (
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/storage/memory"
)

func TestSchedule(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	s := maintenance.NewSchedule(maintenance.ScheduleConfig{Store: store})
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	early := &maintenance.Window{ID: "mw_1", TaskType: "verify/pan", From: now.Add(-time.Hour), Until: now.Add(time.Hour), Message: "upgrade"}
	later := &maintenance.Window{ID: "mw_2", TaskType: "verify/pan", From: now.Add(-time.Minute), Until: now.Add(2 * time.Hour), Message: "longer"}
	future := &maintenance.Window{ID: "mw_3", TaskType: "verify/aadhaar", From: now.Add(time.Hour), Until: now.Add(2 * time.Hour), Message: "soon"}
	for _, w := range []*maintenance.Window{early, later, future} {
		if err := s.Create(t.Context(), w); err != nil {
			t.Fatal(err)
		}
	}
	if w, ok := s.Active("verify/pan", now); !ok || w.ID != "mw_2" {
		t.Errorf("Active(verify/pan) = %v, %v; want the window ending last, mw_2", w, ok)
	}
	if _, ok := s.Active("verify/aadhaar", now); ok {
		t.Error("a window not yet begun is in force")
	}
	if _, ok := s.Active("verify/aadhaar", now.Add(time.Hour)); !ok {
		t.Error("a window is not in force at its start")
	}
	if _, ok := s.Active("verify/aadhaar", now.Add(2*time.Hour)); ok {
		t.Error("a window is in force at its end")
	}
	if l := s.List(); len(l) != 3 || l[0].ID != "mw_1" || l[2].ID != "mw_3" {
		t.Errorf("List by start = %v", l)
	}
	if err := s.Delete(t.Context(), "mw_2"); err != nil {
		t.Fatal(err)
	}
	if w, ok := s.Active("verify/pan", now); !ok || w.ID != "mw_1" {
		t.Errorf("after delete, Active = %v, %v; want mw_1", w, ok)
	}
	bad := &maintenance.Window{ID: "mw_4", TaskType: "verify/pan", From: now, Until: now, Message: "x"}
	if err := s.Create(t.Context(), bad); err == nil {
		t.Error("a window ending at its start was accepted")
	}
}
