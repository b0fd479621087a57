// Package taskgate pulls in every taskgate Caddy module, so that
// `xcaddy build --with github.com/taskgate/taskgate` adds them all.
package taskgate

import (
	// The taskgate app, handlers and Caddyfile syntax.
	_ "github.com/taskgate/taskgate/caddymodule"
	// The command line: taskgate's name, version and help, and its
	// commands (account, task, delivery, hash-key).
	_ "github.com/taskgate/taskgate/cli"
)
