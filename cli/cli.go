package cli

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/internal/buildinfo"
)

// The command line is Caddy's, named and introduced as taskgate. This
// package's init is where that happens, so that a binary built with xcaddy
// (whose main is xcaddy's) is the same program as ./cmd/taskgate.
func init() {
	caddy.CustomBinaryName = "taskgate"
	caddy.CustomLongDescription = longDescription
	// Caddy builds its root command by running, in order, what each
	// registration added; when the second of taskgate's commands is built,
	// the first is already on the root, which is how the root is reached.
	var first *cobra.Command
	account := accountCommand
	account.CobraFunc = func(cmd *cobra.Command) {
		accountCommand.CobraFunc(cmd)
		first = cmd
	}
	hashKey := hashKeyCommand
	hashKey.CobraFunc = func(cmd *cobra.Command) {
		hashKeyCommand.CobraFunc(cmd)
		if first != nil && first.Parent() != nil {
			adoptRoot(first.Parent())
		}
	}
	caddycmd.RegisterCommand(account)
	caddycmd.RegisterCommand(hashKey)
	caddycmd.RegisterCommand(taskCommand)
	caddycmd.RegisterCommand(deliveryCommand)
	caddycmd.RegisterCommand(webhookCommand)
	caddycmd.RegisterCommand(maintenanceCommand)
}

// removedCommands are Caddy's commands that would replace the binary with
// a stock Caddy from Caddy's download service, taskgate's modules lost:
// a new taskgate is built with `make build` (xcaddy.toml lists plugins).
var removedCommands = []string{"upgrade", "add-package", "remove-package"}

// adoptRoot makes Caddy's root command taskgate's: its version, its
// introduction and examples, without the commands that would replace it.
func adoptRoot(root *cobra.Command) {
	root.Version = versionText()
	root.Example = `  $ taskgate run --config Caddyfile
  $ taskgate account create --name "Acme Ltd" --rate-limit 10/s
  $ printf '%s' "$KEY" | taskgate hash-key
  $ taskgate task show acme <request_id>
  $ taskgate delivery list acme --status failed
  $ taskgate reload --config Caddyfile
  $ taskgate version`
	for _, c := range root.Commands() {
		for _, name := range removedCommands {
			if c.Name() == name {
				root.RemoveCommand(c)
			}
		}
		if c.Name() == "version" {
			c.Short = "Prints taskgate's version and the Caddy version inside"
			c.Long = "\nPrints the version of taskgate and of the Caddy it is built on.\n"
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), versionText())
				return err
			}
			c.Run = nil
		}
	}
}

// versionText is what `taskgate version` prints.
func versionText() string {
	return "taskgate " + buildinfo.Version() + "\nCaddy " + buildinfo.CaddyVersion()
}

// longDescription is what `taskgate help` says first.
const longDescription = `taskgate is an edge for task APIs: Caddy with modules that authenticate
API accounts (account-id and api-key headers), enforce each account's IP
allowlist, rate limit and quota, accept asynchronous tasks, run them
against upstream sources, and deliver signed webhooks when they end.

Run it with a Caddyfile whose global taskgate option holds the storage,
accounts, task types and webhook policy:

	$ taskgate run --config Caddyfile

Accounts, keys and usage are managed at run time through the admin API
on Caddy's admin endpoint, or with 'taskgate account'; an account's
tasks, webhook deliveries and webhook endpoints with 'taskgate task',
'taskgate delivery' and 'taskgate webhook'. Every other
command is Caddy's: 'taskgate reload', 'taskgate adapt', 'taskgate
validate', 'taskgate list-modules' and so on work as they do for caddy.

A new taskgate (another version, more plugins) is built from source with
xcaddy (see xcaddy.toml), not downloaded: Caddy's upgrade, add-package
and remove-package commands are not part of taskgate.
`
