// Package maintenancetest is the conformance suite of maintenance.Store:
// every store runs it.
package maintenancetest

import (
	"errors"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/maintenance"
)

// Run runs the suite against stores open returns, a new empty one for
// each test.
func Run(t *testing.T, open func(t *testing.T) maintenance.Store) {
	t.Run("create_list_delete", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if ws, err := s.MaintenanceList(ctx); err != nil || ws == nil || len(ws) != 0 {
			t.Fatalf("empty store: %v, %v; want an empty, non-nil list", ws, err)
		}
		from := time.Date(2026, 12, 5, 22, 0, 0, 123456789, time.FixedZone("IST", 19800))
		a := &maintenance.Window{ID: "mw_a", TaskType: "verify/pan", From: from, Until: from.Add(2 * time.Hour), Message: "registry upgrade", CreatedAt: from.Add(-time.Hour)}
		b := &maintenance.Window{ID: "mw_b", TaskType: "verify/aadhaar", From: from, Until: from.Add(time.Hour), Message: "b", CreatedAt: from}
		for _, w := range []*maintenance.Window{a, b} {
			if err := s.MaintenanceCreate(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		a.Message = "changed after create"
		ws, err := s.MaintenanceList(ctx)
		if err != nil || len(ws) != 2 || ws[0].ID != "mw_a" || ws[1].ID != "mw_b" {
			t.Fatalf("list %v, %v: want mw_a, mw_b", ws, err)
		}
		got := ws[0]
		if got.TaskType != "verify/pan" || !got.From.Equal(from) || !got.Until.Equal(from.Add(2*time.Hour)) ||
			got.Message != "registry upgrade" || !got.CreatedAt.Equal(from.Add(-time.Hour)) {
			t.Errorf("window read back as %+v", got)
		}
		if err := s.MaintenanceDelete(ctx, "mw_a"); err != nil {
			t.Fatal(err)
		}
		if err := s.MaintenanceDelete(ctx, "mw_a"); !errors.Is(err, maintenance.ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
		if ws, _ := s.MaintenanceList(ctx); len(ws) != 1 || ws[0].ID != "mw_b" {
			t.Errorf("after delete: %v, want mw_b", ws)
		}
	})
}
