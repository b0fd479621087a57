// Package taskgate pulls in every taskgate Caddy module, so that
// `xcaddy build --with github.com/taskgate/taskgate` adds them all.
package taskgate

import (
	// The taskgate app, handlers and Caddyfile syntax.
	_ "github.com/taskgate/taskgate/caddymodule"
)
