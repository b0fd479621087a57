package caddymodule

import (
	"testing"

	"github.com/taskgate/taskgate/backend/admin"
)

// TestAdminFollowsTheStartedApps checks that a config that fails to start
// after its app did gives the admin API back to the app still running.
func TestAdminFollowsTheStartedApps(t *testing.T) {
	old, next := new(admin.Handler), new(admin.Handler)
	adminStarted(old)
	adminStarted(next)
	if currentAdmin.Load() != next {
		t.Fatal("the new app's admin API is not served once it started")
	}
	adminStopped(next) // the new config failed to start further on
	if currentAdmin.Load() != old {
		t.Fatal("the old app's admin API is not served again")
	}
	adminStopped(old)
	if currentAdmin.Load() != nil {
		t.Fatal("an admin API is served with no app running")
	}
}
