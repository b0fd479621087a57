// Command taskgate is Caddy with taskgate's modules: API-key auth, IP
// allowlists and rate limits per account, in front of any upstream.
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// taskgate's modules.
	_ "github.com/taskgate/taskgate"
)

func main() {
	caddy.CustomBinaryName = "taskgate"
	caddycmd.Main()
}
