package caddymodule

import (
	"errors"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/taskgate/taskgate/backend/console"
)

func init() {
	caddy.RegisterModule(Console{})
}

// Console serves the operator's web console: accounts and their keys,
// webhooks and usage, tasks, failed deliveries, sources and nodes, read and
// changed through the admin API in process. Its assets are embedded.
//
// The console is for operators: a request must have been authenticated by
// a handler before it (Caddy's basic_auth, or forward_auth with
// ForwardAuthHeader), or come from a loopback address. A request that
// api_key_auth authenticated is an API account's, and is refused. See
// docs/console.md.
type Console struct {
	// Base is the path the console is mounted at ("/console"), without a
	// trailing slash; its links start with it. Empty: the site's root.
	Base string `json:"base,omitempty"`
	// ForwardAuthHeader names the header of forward_auth's authentication
	// service that carries the operator's name (copy_headers): a request
	// whose authentication answer had it is authenticated.
	ForwardAuthHeader string `json:"forward_auth_header,omitempty"`

	console *console.Console
}

// CaddyModule returns the Caddy module information.
func (Console) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.taskgate_console",
		New: func() caddy.Module { return new(Console) },
	}
}

// Provision connects the console to the taskgate app.
func (h *Console) Provision(ctx caddy.Context) error {
	app, err := loadApp(ctx)
	if err != nil {
		return err
	}
	e := app.engine
	h.console, err = console.New(console.Config{
		Admin:     e.Admin,
		Base:      h.Base,
		TaskTypes: slices.Sorted(maps.Keys(e.API.Types)),
		Logger:    ctx.Logger(),
	})
	return err
}

// Validate checks the base path: empty, or a clean absolute path without
// a trailing slash.
func (h *Console) Validate() error {
	if h.Base != "" && (!strings.HasPrefix(h.Base, "/") || strings.HasPrefix(h.Base, "//") || path.Clean(h.Base) != h.Base || h.Base == "/") {
		return errBase
	}
	return nil
}

var errBase = errors.New("taskgate_console: the base path starts with / and does not end with one, such as /console")

// ServeHTTP serves the console to an operator.
func (h *Console) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !h.operator(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("The taskgate console answers loopback clients only, unless an authentication handler (basic_auth, forward_auth) comes before it.\n"))
		return nil
	}
	h.console.ServeHTTP(w, r)
	return nil
}

// operator tells whether the request is an operator's: authenticated by
// a handler before this one (not api_key_auth), or from this machine.
func (h *Console) operator(r *http.Request) bool {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if viaKey, _ := repl.Get(apiKeyAuthPlaceholder); viaKey == true {
		return false
	}
	if id, _ := repl.GetString(userIDPlaceholder); id != "" {
		return true
	}
	if h.ForwardAuthHeader != "" {
		if v, _ := repl.GetString("http.reverse_proxy.header." + http.CanonicalHeaderKey(h.ForwardAuthHeader)); v != "" {
			return true
		}
	}
	return console.FromThisMachine(r)
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Console)(nil)
	_ caddy.Provisioner           = (*Console)(nil)
	_ caddy.Validator             = (*Console)(nil)
	_ caddyfile.Unmarshaler       = (*Console)(nil)
)
