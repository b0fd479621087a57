package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/api"
)

func init() {
	caddy.RegisterModule(TaskAPI{})
}

// TaskAPI serves the client API of tasks (POST /v3/tasks/async/{action}/{type},
// POST /v3/tasks/sync/{action}/{type}, GET /v3/tasks) for the account that
// the edge chain authenticated. It answers every request it gets.
type TaskAPI struct {
	accounts *account.Registry
	api      *api.API
}

// CaddyModule returns the Caddy module information.
func (TaskAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.task_api",
		New: func() caddy.Module { return new(TaskAPI) },
	}
}

// Provision connects the handler to the taskgate app.
func (h *TaskAPI) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx)
	if err != nil {
		return err
	}
	h.accounts, h.api = app.engine.Accounts, app.engine.API
	// The server waits for its handlers before the apps stop: long polls
	// and sync calls must end as soon as it starts shutting down.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		srv.RegisterOnShutdown(app.releaseWaitsOnExit)
	}
	return nil
}

// ServeHTTP answers the request.
func (h *TaskAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	id, ok := authenticatedUser(w, r, nil)
	if !ok {
		return nil
	}
	acct, ok := h.accounts.Lookup(id)
	if !ok {
		// A user authenticated by another handler: all task types.
		acct = &account.Account{ID: id}
	}
	h.api.Serve(w, r, acct)
	return nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*TaskAPI)(nil)
	_ caddy.Provisioner           = (*TaskAPI)(nil)
)
