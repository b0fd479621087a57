package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/usage"
)

// accountCommand is `taskgate account`.
var accountCommand = caddycmd.Command{
	Name:  "account",
	Usage: "<command> [args]",
	Short: "Manages the accounts, keys and usage of a running taskgate",
	Long: `
Manages accounts, their API keys and their usage through the admin API of
a running taskgate (see docs/admin-api.md). Changes take effect at once,
with no reload.

The admin endpoint is --address if given; otherwise the admin address in
the --config file (adapted with --adapter, as for 'reload'); otherwise
localhost:2019. A unix socket is written unix//path/to/admin.sock.

Output is for people; --json prints the API's JSON answer instead, for
scripts. Any error, including an error answer of the API, exits non-zero.

Static accounts (defined in the Caddyfile) are listed and shown, but are
changed by editing the Caddyfile, not with these commands.
`,
	CobraFunc: configureAccountCommand,
}

// accountCLI holds the options that every `account` subcommand shares.
type accountCLI struct {
	address string
	config  string
	adapter string
	json    bool
}

// configureAccountCommand turns cmd into the `account` command: it adds the
// shared flags and the subcommands. Tests call it on a bare command.
func configureAccountCommand(cmd *cobra.Command) {
	c := &accountCLI{}
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.address, "address", "", "Address of the admin endpoint, if different from the config's")
	pf.StringVarP(&c.config, "config", "c", "", "Configuration file to read the admin address from")
	pf.StringVarP(&c.adapter, "adapter", "a", "", "Name of the config adapter for --config")
	pf.BoolVar(&c.json, "json", false, "Print the API's JSON answer instead of text")

	// Without this, cobra prints the help and exits 0 on an unknown
	// subcommand.
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	cmd.AddCommand(
		c.createCommand(),
		c.listCommand(),
		c.showCommand(),
		c.updateCommand(),
		c.rotateKeyCommand(),
		c.revokeKeyCommand(),
		c.disableCommand(),
		c.usageCommand(),
	)
}

func (c *accountCLI) createCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name <name> [--id <id>] [flags]",
		Short: "Creates an account and prints its first API key",
		Long: `
Creates a dynamic account and prints it with its first API key. The key is
shown only this once: store it before closing the terminal.

Without --id, an id is generated (acct_ and 16 characters). Without
--rate-limit, the account follows the configured default rate. Each
--allow adds a CIDR (none: any address); each --task-type adds a task type
the account may use (none: every task type).

Each --webhook URL adds a webhook receiving every event type. A signing
secret, if any, is the same for all of them: --webhook-secret gives it on
the command line (where it stays in the shell history), --webhook-secret-file
reads it from a file, or from standard input with "-":

	printf '%s' "$SECRET" | taskgate account create --name "Acme Ltd" \
		--webhook https://acme.example/hooks --webhook-secret-file -

Per-webhook secrets, event types and Authorization values are set through
the admin API directly (POST or PATCH /taskgate/accounts).
`,
		Example: `  taskgate account create --name "Acme Ltd" --id acme --rate-limit 100/s --allow 203.0.113.0/24`,
		Args:    cobra.NoArgs,
	}
	f := cmd.Flags()
	name := f.String("name", "", "Display name of the account (required)")
	id := f.String("id", "", "Account id; generated when absent")
	rate := f.String("rate-limit", "", `Rate limit: "N/s", "N/m", "N/h", "N/d" or "N/<duration>"`)
	burst := f.Int("burst", 0, "Burst; needs --rate-limit")
	allow := f.StringSlice("allow", nil, "CIDR the account may call from (repeatable, or comma-separated)")
	taskTypes := f.StringSlice("task-type", nil, "Task type the account may use (repeatable, or comma-separated)")
	failure := f.String("failure-webhook", "", "URL told about deliveries that failed for good")
	wh := cliAddWebhookFlags(cmd)
	_ = cmd.MarkFlagRequired("name")

	return cliCommand(c, cmd, func([]string) (*cliRequest, error) {
		body := map[string]any{"name": *name}
		if *id != "" {
			body["id"] = *id
		}
		if *rate != "" {
			body["rate_limit"] = *rate
		}
		if f.Changed("burst") {
			body["burst"] = *burst
		}
		if len(*allow) > 0 {
			body["allow"] = *allow
		}
		if len(*taskTypes) > 0 {
			body["task_types"] = *taskTypes
		}
		if *failure != "" {
			body["failure_webhook"] = *failure
		}
		if err := wh.addTo(cmd, body); err != nil {
			return nil, err
		}
		what := "new account"
		if *id != "" {
			what = "account " + *id
		}
		return &cliRequest{what, http.MethodPost, "/taskgate/accounts", body}, nil
	}, func(w io.Writer, _ []string, a *admin.CreatedAccount) {
		fmt.Fprintf(w, "Created account %s.\n\n", cliClean(a.ID))
		cliWriteAccount(w, &a.AccountView)
		fmt.Fprintf(w, "\nAPI key (shown once; store it now, it cannot be shown again):\n\n  %s\n", cliClean(a.APIKey))
	})
}

func (c *accountCLI) listCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "Lists the accounts, static and dynamic",
		Example: "  taskgate account list",
		Args:    cobra.NoArgs,
	}
	return cliCommand(c, cmd, func([]string) (*cliRequest, error) {
		return &cliRequest{"accounts", http.MethodGet, "/taskgate/accounts", nil}, nil
	}, func(w io.Writer, _ []string, l *admin.AccountList) {
		if len(l.Accounts) == 0 {
			fmt.Fprintln(w, "No accounts.")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tKIND\tDISABLED\tRATE\tKEYS\tALLOW")
		for i := range l.Accounts {
			a := &l.Accounts[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				cliClean(a.ID), cliClean(a.Name), cliKind(a), cliYesNo(a.Disabled),
				cliRate(a), cliKeyCount(a), cliList(a.Allow, "any"))
		}
		tw.Flush()
	})
}

func (c *accountCLI) showCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "show <id>",
		Short:   "Shows an account, its webhooks and its keys",
		Example: "  taskgate account show acme",
		Args:    cobra.ExactArgs(1),
	}
	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		return cliOnAccount(args[0], http.MethodGet, "", nil), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) { cliWriteAccount(w, a) })
}

func (c *accountCLI) updateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update <id> [flags]",
		Short: "Changes an account; only the flags given are changed",
		Long: `
Changes a dynamic account. Only the settings whose flags are given change;
the others keep their value.

--allow and --task-type replace the whole list (give every entry again);
--clear-allow and --clear-task-types empty it (any address, every task
type). --rate-limit "" returns to the configured default rate, and
--failure-webhook "" removes the failure webhook. --webhook replaces all
the webhooks, and since secrets are never shown, --webhook-secret or
--webhook-secret-file must be given again if they are signed;
--clear-webhooks removes them all. --enable enables a disabled account.
`,
		Example: `  taskgate account update acme --rate-limit 200/s --burst 400 --allow 203.0.113.0/24 --allow 198.51.100.7/32`,
		Args:    cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	name := f.String("name", "", "Display name of the account")
	rate := f.String("rate-limit", "", `Rate limit: "N/s", "N/m", "N/h", "N/d" or "N/<duration>"; "" for the default`)
	burst := f.Int("burst", 0, "Burst")
	allow := f.StringSlice("allow", nil, "CIDR the account may call from (repeatable; replaces the list)")
	clearAllow := f.Bool("clear-allow", false, "Allow any address")
	taskTypes := f.StringSlice("task-type", nil, "Task type the account may use (repeatable; replaces the list)")
	clearTaskTypes := f.Bool("clear-task-types", false, "Allow every task type")
	failure := f.String("failure-webhook", "", `URL told about deliveries that failed for good; "" for none`)
	wh := cliAddWebhookFlags(cmd)
	clearWebhooks := f.Bool("clear-webhooks", false, "Remove every webhook")
	enable := f.Bool("enable", false, "Enable a disabled account")
	cmd.MarkFlagsMutuallyExclusive("allow", "clear-allow")
	cmd.MarkFlagsMutuallyExclusive("task-type", "clear-task-types")
	cmd.MarkFlagsMutuallyExclusive("webhook", "clear-webhooks")

	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		body := map[string]any{}
		if f.Changed("name") {
			body["name"] = *name
		}
		if f.Changed("rate-limit") {
			body["rate_limit"] = *rate
		}
		if f.Changed("burst") {
			body["burst"] = *burst
		}
		if f.Changed("allow") {
			body["allow"] = *allow
		}
		if *clearAllow {
			body["allow"] = []string{}
		}
		if f.Changed("task-type") {
			body["task_types"] = *taskTypes
		}
		if *clearTaskTypes {
			body["task_types"] = []string{}
		}
		if f.Changed("failure-webhook") {
			body["failure_webhook"] = *failure
		}
		if err := wh.addTo(cmd, body); err != nil {
			return nil, err
		}
		if *clearWebhooks {
			body["webhooks"] = []cliWebhookBody{}
		}
		if f.Changed("enable") {
			if !*enable {
				return nil, errors.New("--enable=false: to disable an account, use 'account disable'")
			}
			body["disabled"] = false
		}
		if len(body) == 0 {
			return nil, errors.New("nothing to change: give at least one flag (see --help)")
		}
		return cliOnAccount(args[0], http.MethodPatch, "", body), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) {
		fmt.Fprintf(w, "Updated account %s.\n\n", cliClean(a.ID))
		cliWriteAccount(w, a)
	})
}

func (c *accountCLI) rotateKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-key <id> [--expire-others-in <duration>]",
		Short: "Adds a new API key to an account, optionally expiring the others",
		Long: `
Adds a new API key to the account and prints it; the key is shown only this
once. Without --expire-others-in the other keys stay live (revoke them
with 'account revoke-key'); with it they expire after that duration
(0s: now). A key already due to expire sooner keeps its date.
`,
		Example: "  taskgate account rotate-key acme --expire-others-in 24h",
		Args:    cobra.ExactArgs(1),
	}
	expire := cmd.Flags().Duration("expire-others-in", 0, "Expire the account's other keys after this duration (e.g. 24h; 0s: now)")

	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		var body any
		if cmd.Flags().Changed("expire-others-in") {
			if *expire < 0 {
				return nil, fmt.Errorf("--expire-others-in %s: must not be negative", *expire)
			}
			body = map[string]string{"expire_others_in": expire.String()}
		}
		return cliOnAccount(args[0], http.MethodPost, "/keys", body), nil
	}, func(w io.Writer, args []string, k *admin.NewKeyView) {
		fmt.Fprintf(w, "New key %s (prefix %s) for account %s, created %s.\n",
			cliClean(k.KeyID), cliClean(k.Prefix), cliClean(args[0]), cliTime(&k.CreatedAt))
		fmt.Fprintf(w, "\nAPI key (shown once; store it now, it cannot be shown again):\n\n  %s\n\n", cliClean(k.APIKey))
		if k.OthersExpireAt != nil {
			fmt.Fprintf(w, "The account's other keys expire at %s.\n", cliTime(k.OthersExpireAt))
		} else {
			fmt.Fprintf(w, "The account's other keys stay live; revoke them with '%s account revoke-key %s <key-id>'.\n",
				cmd.Root().Name(), cliClean(args[0]))
		}
	})
}

func (c *accountCLI) revokeKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke-key <id> <key-id>",
		Short:   "Revokes one API key of an account at once",
		Example: "  taskgate account revoke-key acme key_7Qd2kP0aXw1Lm9Zr",
		Args:    cobra.ExactArgs(2),
	}
	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		req := cliOnAccount(args[0], http.MethodDelete, "/keys/"+url.PathEscape(args[1]), nil)
		req.what += " key " + args[1]
		return req, nil
	}, func(w io.Writer, args []string, a *admin.AccountView) {
		live := cliLiveKeys(a)
		fmt.Fprintf(w, "Revoked key %s of account %s; %d live key(s) left.\n", cliClean(args[1]), cliClean(a.ID), live)
		if live == 0 {
			fmt.Fprintf(w, "The account authenticates nothing until it gets a new key: '%s account rotate-key %s'.\n",
				cmd.Root().Name(), cliClean(a.ID))
		}
	})
}

func (c *accountCLI) disableCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disable <id>",
		Short: "Disables an account: its keys stop working at once",
		Long: `
Disables the account: its keys stop working at once. Its tasks and usage
stay readable. 'account update <id> --enable' enables it again.
`,
		Example: "  taskgate account disable acme",
		Args:    cobra.ExactArgs(1),
	}
	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		return cliOnAccount(args[0], http.MethodDelete, "", nil), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) {
		fmt.Fprintf(w, "Disabled account %s: its keys no longer work. Enable it again with '%s account update %s --enable'.\n",
			cliClean(a.ID), cmd.Root().Name(), cliClean(a.ID))
	})
}

func (c *accountCLI) usageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage <id> [--from <YYYY-MM-DD>] [--to <YYYY-MM-DD>]",
		Short: "Prints an account's usage per day and task type",
		Long: `
Prints the account's requests, rejections and tasks per UTC day and task
type, and their total. --from and --to are UTC days, inclusive; by default
the last 30 days up to today. The counts are at most a few seconds behind.
`,
		Example: "  taskgate account usage acme --from 2026-11-01 --to 2026-11-30",
		Args:    cobra.ExactArgs(1),
	}
	from := cmd.Flags().String("from", "", "First UTC day, YYYY-MM-DD")
	to := cmd.Flags().String("to", "", "Last UTC day, YYYY-MM-DD")

	return cliCommand(c, cmd, func(args []string) (*cliRequest, error) {
		q := url.Values{}
		if *from != "" {
			q.Set("from", *from)
		}
		if *to != "" {
			q.Set("to", *to)
		}
		sub := "/usage"
		if len(q) > 0 {
			sub += "?" + q.Encode()
		}
		return cliOnAccount(args[0], http.MethodGet, sub, nil), nil
	}, func(w io.Writer, _ []string, u *admin.UsageReport) {
		fmt.Fprintf(w, "Usage of account %s from %s to %s (UTC days):\n\n", cliClean(u.AccountID), cliClean(u.From), cliClean(u.To))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tTASK TYPE\tREQUESTS\tREJECTED\tCREATED\tCOMPLETED\tFAILED")
		for i := range u.Usage {
			r := &u.Usage[i]
			taskType := cliClean(r.TaskType)
			if taskType == "" {
				taskType = "(none)"
			}
			cliWriteUsageRow(tw, cliClean(r.Day), taskType, &r.Counts)
		}
		cliWriteUsageRow(tw, "total", "", &u.Total)
		tw.Flush()
		if by := cliRejectedByCode(u.Total.Rejected); by != "" {
			fmt.Fprintf(w, "\nRejected, by error code: %s\n", by)
		}
	})
}

// cliRequest is what a subcommand asks of the admin API.
type cliRequest struct {
	// what the request is about, such as "account acme"; its errors start
	// with it.
	what   string
	method string
	uri    string
	// body, when not nil, is sent as JSON.
	body any
}

// cliOnAccount is a request about the account id, to its path followed by
// sub ("", "/keys", …).
func cliOnAccount(id, method, sub string, body any) *cliRequest {
	return &cliRequest{"account " + id, method, cliAccountPath(id) + sub, body}
}

// cliCommand makes cmd run as every subcommand does: request turns the
// arguments and flags into a request (or refuses them, before anything is
// sent), the request is sent, and the answer is printed, as the API's JSON
// with --json, else decoded into T and written by human for people.
func cliCommand[T any](c *accountCLI, cmd *cobra.Command,
	request func(args []string) (*cliRequest, error),
	human func(w io.Writer, args []string, answer *T),
) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req, err := request(args)
		if err != nil {
			return err
		}
		raw, err := c.do(cmd, req)
		if err != nil {
			return err
		}
		return cliPrint(c, cmd, raw, func(w io.Writer, answer *T) { human(w, args, answer) })
	}
	return cmd
}

// cliWebhookFlags are the webhook flags that create and update share.
type cliWebhookFlags struct {
	urls       *[]string
	secret     *string
	secretFile *string
}

func cliAddWebhookFlags(cmd *cobra.Command) *cliWebhookFlags {
	f := cmd.Flags()
	w := &cliWebhookFlags{
		urls:       f.StringArray("webhook", nil, "Webhook URL (repeatable)"),
		secret:     f.String("webhook-secret", "", "Signing secret of every --webhook (whsec_...)"),
		secretFile: f.String("webhook-secret-file", "", `File holding the signing secret of every --webhook ("-": standard input)`),
	}
	cmd.MarkFlagsMutuallyExclusive("webhook-secret", "webhook-secret-file")
	return w
}

// cliWebhookBody is one webhook as the admin API takes it.
type cliWebhookBody struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// addTo sets body["webhooks"] to the webhooks the flags describe; it
// leaves body alone when no --webhook was given.
func (w *cliWebhookFlags) addTo(cmd *cobra.Command, body map[string]any) error {
	secret := *w.secret
	if *w.secretFile != "" {
		var err error
		if secret, err = cliReadSecret(cmd, *w.secretFile); err != nil {
			return err
		}
	}
	if len(*w.urls) == 0 {
		if secret != "" {
			return errors.New("a webhook secret needs at least one --webhook")
		}
		return nil
	}
	hooks := make([]cliWebhookBody, 0, len(*w.urls))
	for _, u := range *w.urls {
		hooks = append(hooks, cliWebhookBody{URL: u, Secret: secret})
	}
	body["webhooks"] = hooks
	return nil
}

// cliReadSecret reads a secret from the file name, or standard input for "-",
// ignoring a trailing newline.
func cliReadSecret(cmd *cobra.Command, name string) (string, error) {
	var r io.Reader
	if name == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("webhook secret: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("webhook secret: %s is empty", name)
	}
	return secret, nil
}

// cliAccountPath is the admin API path of one account.
func cliAccountPath(id string) string {
	return "/taskgate/accounts/" + url.PathEscape(id)
}

// cliAPIError is an error answer of the admin API.
type cliAPIError struct {
	// Status is the HTTP status.
	Status int
	// Code is the wire code, such as ACCOUNT_EXISTS; empty when the answer
	// did not come from taskgate (e.g. Caddy's own 404).
	Code string
	// Message explains the error.
	Message string
}

func (e *cliAPIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// cliTimeout bounds one call to the admin API.
const cliTimeout = time.Minute

// cliMaxAnswer bounds the size of an admin API answer.
const cliMaxAnswer = 16 << 20

// do sends one request to the admin API and returns the body of a
// successful answer.
func (c *accountCLI) do(cmd *cobra.Command, r *cliRequest) ([]byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(c.address, nil, c.config, c.adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin address: %w", err)
	}
	var reqBody io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(b)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()

	status, answer, err := cliAdminRequest(ctx, addr, r.method, r.uri, reqBody)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.what, err)
	}
	if status >= 400 {
		return nil, fmt.Errorf("%s: %w", r.what, cliDecodeError(status, answer))
	}
	return answer, nil
}

// cliAdminRequest does what caddycmd.AdminAPIRequest does (the admin address
// may be tcp or a unix socket; Origin is set for tcp), but returns error
// answers to the caller rather than folding them into a string.
func cliAdminRequest(ctx context.Context, addr, method, uri string, body io.Reader) (int, []byte, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return 0, nil, fmt.Errorf("invalid admin address %q: %v", addr, err)
	}
	if na.IsFdNetwork() {
		return 0, nil, fmt.Errorf("admin address %s is a file descriptor, which this command cannot reach; give --address", addr)
	}
	origin := "http://" + na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		// The host is never used, but keeps the request well-formed and,
		// should it be used, local. Unix socket permission bits
		// ("path|0220") are part of the listen address, not of the path.
		origin = "http://127.0.0.1"
		na.Host, _, _ = strings.Cut(na.Host, "|")
	}
	req, err := http.NewRequestWithContext(ctx, method, origin+uri, body)
	if err != nil {
		return 0, nil, fmt.Errorf("making request: %v", err)
	}
	if !na.IsUnixNetwork() {
		req.Header.Set("Origin", origin)
	}
	// The admin API refuses writes not said to be JSON, body or not.
	if body != nil || method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")

	client := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, na.Network, na.JoinHostPort(0))
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("reaching the admin API at %s (is taskgate running?): %v", addr, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, cliMaxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("HTTP %d: reading the answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, answer, nil
}

// cliDecodeError makes an error of an error answer: taskgate's
// {"error","message"}, Caddy's {"error"} or anything else.
func cliDecodeError(status int, answer []byte) *cliAPIError {
	e := &cliAPIError{Status: status}
	var wire struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	switch {
	case json.Unmarshal(answer, &wire) == nil && wire.Error != "" && wire.Message != "":
		e.Code, e.Message = cliClean(wire.Error), cliClean(wire.Message)
	case wire.Error != "":
		e.Message = cliClean(wire.Error)
	default:
		e.Message = cliClean(strings.TrimSpace(string(answer)))
		if r := []rune(e.Message); len(r) > 300 {
			e.Message = string(r[:300]) + "…"
		}
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

// cliPrint prints a successful answer: as indented JSON with --json, else
// decoded into T and written by human.
func cliPrint[T any](c *accountCLI, cmd *cobra.Command, raw []byte, human func(io.Writer, *T)) error {
	w := cmd.OutOrStdout()
	if c.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("the admin API answered with invalid JSON: %v", err)
		}
		buf.WriteByte('\n')
		_, err := buf.WriteTo(w)
		return err
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the admin API's answer: %v", err)
	}
	human(w, v)
	return nil
}

func cliKind(a *admin.AccountView) string {
	if a.Static {
		return "static"
	}
	return "dynamic"
}

func cliRate(a *admin.AccountView) string {
	s := fmt.Sprintf("%s burst %d", cliClean(a.RateLimit), a.Burst)
	if a.DefaultRateLimit {
		s += " (default)"
	}
	return s
}

func cliLiveKeys(a *admin.AccountView) int {
	n := 0
	for _, k := range a.Keys {
		if !k.Expired {
			n++
		}
	}
	return n
}

// cliKeyCount is the number of live keys, and of expired ones if any.
func cliKeyCount(a *admin.AccountView) string {
	live := cliLiveKeys(a)
	s := strconv.Itoa(live)
	if expired := len(a.Keys) - live; expired > 0 {
		s += fmt.Sprintf(" (+%d expired)", expired)
	}
	return s
}

// cliWriteAccount writes an account for people.
func cliWriteAccount(w io.Writer, a *admin.AccountView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	status := "enabled"
	if a.Disabled {
		status = "DISABLED"
	}
	fmt.Fprintf(tw, "id:\t%s\n", cliClean(a.ID))
	fmt.Fprintf(tw, "name:\t%s\n", cliClean(a.Name))
	fmt.Fprintf(tw, "kind:\t%s\n", cliKind(a))
	fmt.Fprintf(tw, "status:\t%s\n", status)
	fmt.Fprintf(tw, "rate limit:\t%s\n", cliRate(a))
	fmt.Fprintf(tw, "allow:\t%s\n", cliList(a.Allow, "any address"))
	fmt.Fprintf(tw, "task types:\t%s\n", cliList(a.TaskTypes, "all"))
	if len(a.Webhooks) == 0 {
		fmt.Fprintf(tw, "webhooks:\tnone\n")
	}
	for i, h := range a.Webhooks {
		label := ""
		if i == 0 {
			label = "webhooks:"
		}
		var notes []string
		if len(h.Types) > 0 {
			notes = append(notes, "types "+cliList(h.Types, ""))
		}
		if h.HasSecret {
			notes = append(notes, "signed")
		}
		if h.HasAuthorization {
			notes = append(notes, "with Authorization")
		}
		line := cliClean(h.URL)
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, line)
	}
	fmt.Fprintf(tw, "failure webhook:\t%s\n", cliOrNone(cliClean(a.FailureWebhook)))
	if t := cliTime(a.CreatedAt); t != "" {
		fmt.Fprintf(tw, "created:\t%s\n", t)
	}
	if t := cliTime(a.UpdatedAt); t != "" {
		fmt.Fprintf(tw, "updated:\t%s\n", t)
	}
	tw.Flush()

	if len(a.Keys) == 0 {
		fmt.Fprintln(w, "\nkeys: none (the account authenticates nothing)")
		return
	}
	fmt.Fprintln(w, "\nkeys:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY ID\tPREFIX\tCREATED\tSTATE")
	for _, k := range a.Keys {
		state := "live"
		switch {
		case k.Expired && k.ExpiresAt != nil:
			state = "expired " + cliTime(k.ExpiresAt)
		case k.Expired:
			state = "expired"
		case k.ExpiresAt != nil:
			state = "live, expires " + cliTime(k.ExpiresAt)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cliClean(k.ID), cliDash(cliClean(k.Prefix)), cliDash(cliTime(k.CreatedAt)), state)
	}
	tw.Flush()
}

func cliWriteUsageRow(tw io.Writer, day, taskType string, c *usage.Counts) {
	var rejected int64
	for _, n := range c.Rejected {
		rejected += n
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n",
		day, taskType, c.Requests, rejected, c.Created, c.Completed, c.Failed)
}

// cliRejectedByCode lists rejection counts as "code n, code n", by code.
func cliRejectedByCode(m map[string]int64) string {
	codes := make([]string, 0, len(m))
	for code := range m {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	parts := make([]string, 0, len(codes))
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%s %d", cliClean(code), m[code]))
	}
	return strings.Join(parts, ", ")
}

func cliList(list []string, none string) string {
	if len(list) == 0 {
		return none
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = cliClean(s)
	}
	return strings.Join(out, ", ")
}

// cliTime writes a time of an answer as the API sends it: RFC 3339 in UTC,
// with the fraction of a second it has; "" for none.
func cliTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func cliOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func cliDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cliYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// cliClean replaces control characters, so that a value set through the API
// cannot move the cursor or break a table on the operator's terminal.
func cliClean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
