package redis_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/maintenance/maintenancetest"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestMaintenanceStore runs the suite on one redis-server, each subtest
// under a prefix of its own.
func TestMaintenanceStore(t *testing.T) {
	srv := redistest.Start(t)
	maintenancetest.Run(t, func(t *testing.T) maintenance.Store { return openStore(t, srv.URL(), subtestPrefix(t)) })
}
