package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/quota"
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

// adminClient holds the options that every `account` subcommand shares.
type adminClient struct {
	address string
	config  string
	adapter string
	json    bool
}

// configureAccountCommand turns cmd into the `account` command: it adds the
// shared flags and the subcommands. Tests call it on a bare command.
func configureAccountCommand(cmd *cobra.Command) {
	c := newAdminClient(cmd)

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

func (c *adminClient) createCommand() *cobra.Command {
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

Each --quota adds a quota: N/day or N/month (UTC calendar periods) counts
the account's tasks of every type; N/month:type,type counts only those
task types, e.g. --quota 10000/month:verify_with_source/ind_pan.

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
	quotas := f.StringArray("quota", nil, `Quota: "N/day" or "N/month", optionally ":type,type" (repeatable)`)
	wh := addWebhookFlags(cmd)
	_ = cmd.MarkFlagRequired("name")

	return apiCommand(c, cmd, func([]string) (*apiRequest, error) {
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
		if len(*quotas) > 0 {
			qs, err := parseQuotaFlags(*quotas)
			if err != nil {
				return nil, err
			}
			body["quotas"] = qs
		}
		if err := wh.addTo(cmd, body); err != nil {
			return nil, err
		}
		what := "new account"
		if *id != "" {
			what = "account " + *id
		}
		return &apiRequest{what, http.MethodPost, "/taskgate/accounts", body}, nil
	}, func(w io.Writer, _ []string, a *admin.CreatedAccount) {
		fmt.Fprintf(w, "Created account %s.\n\n", clean(a.ID))
		writeAccount(w, &a.AccountView)
		fmt.Fprintf(w, "\nAPI key (shown once; store it now, it cannot be shown again):\n\n  %s\n", clean(a.APIKey))
	})
}

func (c *adminClient) listCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "Lists the accounts, static and dynamic",
		Example: "  taskgate account list",
		Args:    cobra.NoArgs,
	}
	return apiCommand(c, cmd, func([]string) (*apiRequest, error) {
		return &apiRequest{"accounts", http.MethodGet, "/taskgate/accounts", nil}, nil
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
				clean(a.ID), clean(a.Name), accountKind(a), yesNo(a.Disabled),
				rateText(a), keyCount(a), listText(a.Allow, "any"))
		}
		tw.Flush()
	})
}

func (c *adminClient) showCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "show <id>",
		Short:   "Shows an account, its webhooks and its keys",
		Example: "  taskgate account show acme",
		Args:    cobra.ExactArgs(1),
	}
	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodGet, "", nil), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) { writeAccount(w, a) })
}

func (c *adminClient) updateCommand() *cobra.Command {
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
--clear-webhooks removes them all. --quota replaces all the quotas (the
counts of the current periods stay), --clear-quotas removes them. --enable
enables a disabled account. --lock-webhooks keeps the account from changing
its webhook endpoints through the client API (the operator still can, with
'taskgate webhook'); --unlock-webhooks gives that back.
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
	wh := addWebhookFlags(cmd)
	clearWebhooks := f.Bool("clear-webhooks", false, "Remove every webhook")
	quotas := f.StringArray("quota", nil, `Quota: "N/day" or "N/month", optionally ":type,type" (repeatable; replaces the list)`)
	clearQuotas := f.Bool("clear-quotas", false, "Remove every quota")
	enable := f.Bool("enable", false, "Enable a disabled account")
	lock := f.Bool("lock-webhooks", false, "Keep the account from changing its webhook endpoints itself")
	unlock := f.Bool("unlock-webhooks", false, "Let the account change its webhook endpoints itself")
	cmd.MarkFlagsMutuallyExclusive("lock-webhooks", "unlock-webhooks")
	cmd.MarkFlagsMutuallyExclusive("allow", "clear-allow")
	cmd.MarkFlagsMutuallyExclusive("task-type", "clear-task-types")
	cmd.MarkFlagsMutuallyExclusive("webhook", "clear-webhooks")
	cmd.MarkFlagsMutuallyExclusive("quota", "clear-quotas")

	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
		body := map[string]any{}
		if f.Changed("quota") {
			qs, err := parseQuotaFlags(*quotas)
			if err != nil {
				return nil, err
			}
			body["quotas"] = qs
		}
		if *clearQuotas {
			body["quotas"] = []account.QuotaRecord{}
		}
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
			body["webhooks"] = []webhookBody{}
		}
		if f.Changed("enable") {
			if !*enable {
				return nil, errors.New("--enable=false: to disable an account, use 'account disable'")
			}
			body["disabled"] = false
		}
		switch {
		case *lock:
			body["webhooks_locked"] = true
		case *unlock:
			body["webhooks_locked"] = false
		}
		if len(body) == 0 {
			return nil, errors.New("nothing to change: give at least one flag (see --help)")
		}
		return onAccount(args[0], http.MethodPatch, "", body), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) {
		fmt.Fprintf(w, "Updated account %s.\n\n", clean(a.ID))
		writeAccount(w, a)
	})
}

func (c *adminClient) rotateKeyCommand() *cobra.Command {
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

	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
		var body any
		if cmd.Flags().Changed("expire-others-in") {
			if *expire < 0 {
				return nil, fmt.Errorf("--expire-others-in %s: must not be negative", *expire)
			}
			body = map[string]string{"expire_others_in": expire.String()}
		}
		return onAccount(args[0], http.MethodPost, "/keys", body), nil
	}, func(w io.Writer, args []string, k *admin.NewKeyView) {
		fmt.Fprintf(w, "New key %s (prefix %s) for account %s, created %s.\n",
			clean(k.KeyID), clean(k.Prefix), clean(args[0]), timeText(&k.CreatedAt))
		fmt.Fprintf(w, "\nAPI key (shown once; store it now, it cannot be shown again):\n\n  %s\n\n", clean(k.APIKey))
		if k.OthersExpireAt != nil {
			fmt.Fprintf(w, "The account's other keys expire at %s.\n", timeText(k.OthersExpireAt))
		} else {
			fmt.Fprintf(w, "The account's other keys stay live; revoke them with '%s account revoke-key %s <key-id>'.\n",
				cmd.Root().Name(), clean(args[0]))
		}
	})
}

func (c *adminClient) revokeKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke-key <id> <key-id>",
		Short:   "Revokes one API key of an account at once",
		Example: "  taskgate account revoke-key acme key_7Qd2kP0aXw1Lm9Zr",
		Args:    cobra.ExactArgs(2),
	}
	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
		req := onAccount(args[0], http.MethodDelete, "/keys/"+url.PathEscape(args[1]), nil)
		req.what += " key " + args[1]
		return req, nil
	}, func(w io.Writer, args []string, a *admin.AccountView) {
		live := liveKeys(a)
		fmt.Fprintf(w, "Revoked key %s of account %s; %d live key(s) left.\n", clean(args[1]), clean(a.ID), live)
		if live == 0 {
			fmt.Fprintf(w, "The account authenticates nothing until it gets a new key: '%s account rotate-key %s'.\n",
				cmd.Root().Name(), clean(a.ID))
		}
	})
}

func (c *adminClient) disableCommand() *cobra.Command {
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
	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodDelete, "", nil), nil
	}, func(w io.Writer, _ []string, a *admin.AccountView) {
		fmt.Fprintf(w, "Disabled account %s: its keys no longer work. Enable it again with '%s account update %s --enable'.\n",
			clean(a.ID), cmd.Root().Name(), clean(a.ID))
	})
}

func (c *adminClient) usageCommand() *cobra.Command {
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

	return apiCommand(c, cmd, func(args []string) (*apiRequest, error) {
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
		return onAccount(args[0], http.MethodGet, sub, nil), nil
	}, func(w io.Writer, _ []string, u *admin.UsageReport) {
		fmt.Fprintf(w, "Usage of account %s from %s to %s (UTC days):\n\n", clean(u.AccountID), clean(u.From), clean(u.To))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tTASK TYPE\tREQUESTS\tREJECTED\tCREATED\tCOMPLETED\tFAILED")
		for i := range u.Usage {
			r := &u.Usage[i]
			taskType := clean(r.TaskType)
			if taskType == "" {
				taskType = "(none)"
			}
			writeUsageRow(tw, clean(r.Day), taskType, &r.Counts)
		}
		writeUsageRow(tw, "total", "", &u.Total)
		tw.Flush()
		if by := rejectedByCode(u.Total.Rejected); by != "" {
			fmt.Fprintf(w, "\nRejected, by error code: %s\n", by)
		}
		for i, q := range u.Quotas {
			if i == 0 {
				fmt.Fprintln(w, "\nQuotas, this period:")
			}
			limit := quota.Quota{Limit: q.Limit, Period: quota.Period(q.Period), TaskTypes: q.TaskTypes}
			fmt.Fprintf(w, "  %s: %d used, %d left, resets %s\n", clean(limit.String()), q.Used, q.Left, q.ResetsAt.UTC().Format(time.RFC3339))
		}
	})
}

// webhookFlags are the webhook flags that create and update share.
type webhookFlags struct {
	urls       *[]string
	secret     *string
	secretFile *string
}

func addWebhookFlags(cmd *cobra.Command) *webhookFlags {
	f := cmd.Flags()
	w := &webhookFlags{
		urls:       f.StringArray("webhook", nil, "Webhook URL (repeatable)"),
		secret:     f.String("webhook-secret", "", "Signing secret of every --webhook (whsec_...)"),
		secretFile: f.String("webhook-secret-file", "", `File holding the signing secret of every --webhook ("-": standard input)`),
	}
	cmd.MarkFlagsMutuallyExclusive("webhook-secret", "webhook-secret-file")
	return w
}

// webhookBody is one webhook as the admin API takes it.
type webhookBody struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// addTo sets body["webhooks"] to the webhooks the flags describe; it
// leaves body alone when no --webhook was given.
func (w *webhookFlags) addTo(cmd *cobra.Command, body map[string]any) error {
	secret := *w.secret
	if *w.secretFile != "" {
		var err error
		if secret, err = readSecret(cmd, *w.secretFile); err != nil {
			return err
		}
	}
	if len(*w.urls) == 0 {
		if secret != "" {
			return errors.New("a webhook secret needs at least one --webhook")
		}
		return nil
	}
	hooks := make([]webhookBody, 0, len(*w.urls))
	for _, u := range *w.urls {
		hooks = append(hooks, webhookBody{URL: u, Secret: secret})
	}
	body["webhooks"] = hooks
	return nil
}

// readSecret reads a secret from the file name, or standard input for "-",
// ignoring a trailing newline.
func readSecret(cmd *cobra.Command, name string) (string, error) {
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

// parseQuotaFlags reads --quota values: "N/day" or "N/month", optionally
// followed by ":" and comma-separated task types.
func parseQuotaFlags(vals []string) ([]account.QuotaRecord, error) {
	out := make([]account.QuotaRecord, 0, len(vals))
	for _, v := range vals {
		limit, types, _ := strings.Cut(v, ":")
		q, err := quota.Parse(limit)
		if err != nil {
			return nil, fmt.Errorf("--quota %s: %w", v, err)
		}
		if types != "" {
			q.TaskTypes = strings.Split(types, ",")
		}
		out = append(out, account.QuotaRecordOf(q))
	}
	return out, nil
}
