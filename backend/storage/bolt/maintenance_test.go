package bolt_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/maintenance/maintenancetest"
)

func TestMaintenanceStore(t *testing.T) {
	maintenancetest.Run(t, func(t *testing.T) maintenance.Store { return open(t, t.TempDir()) })
}
