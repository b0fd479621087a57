package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/maintenance/maintenancetest"
	"github.com/taskgate/taskgate/backend/storage/memory"
)

func TestMaintenanceStore(t *testing.T) {
	maintenancetest.Run(t, func(t *testing.T) maintenance.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
