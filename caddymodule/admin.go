package caddymodule

import (
	"net/http"
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
// routes apart from apps). During a reload it is the new app's as soon as
// it starts.
var currentAdmin atomic.Pointer[admin.Handler]

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
