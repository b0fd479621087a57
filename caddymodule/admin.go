package caddymodule

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/apierr"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves taskgate's admin API (accounts, keys, usage) on Caddy's
// admin endpoint, under /taskgate/. It is never served on the public
// listeners. See docs/admin-api.md.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.taskgate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: admin.Prefix,
		Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			h := currentAdmin.Load()
			if h == nil {
				apierr.Write(w, apierr.NotRunning)
				return nil
			}
			h.ServeHTTP(w, r)
			return nil
		}),
	}}
}

// currentAdmin is the admin API of the running app (Caddy builds admin
// routes apart from apps): the latest app started and not stopped. During
// a reload it is the new app's as soon as it starts; should the new
// config fail to start after that, it is the old app's again.
var currentAdmin atomic.Pointer[admin.Handler]

// startedAdmins are the admin APIs of the apps started and not stopped,
// oldest first.
var startedAdmins struct {
	sync.Mutex
	list []*admin.Handler
}

// adminStarted makes h the admin API served.
func adminStarted(h *admin.Handler) {
	startedAdmins.Lock()
	defer startedAdmins.Unlock()
	startedAdmins.list = append(startedAdmins.list, h)
	currentAdmin.Store(h)
}

// adminStopped stops serving h: the latest admin API still started is
// served, if any.
func adminStopped(h *admin.Handler) {
	startedAdmins.Lock()
	defer startedAdmins.Unlock()
	startedAdmins.list = slices.DeleteFunc(startedAdmins.list, func(x *admin.Handler) bool { return x == h })
	if n := len(startedAdmins.list); n > 0 {
		currentAdmin.Store(startedAdmins.list[n-1])
	} else {
		currentAdmin.Store(nil)
	}
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
