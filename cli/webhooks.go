package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/backend/endpoints"
)

// webhookCommand is `taskgate webhook`: an account's webhook endpoints,
// as the operator manages them (whatever the account's self-service).
var webhookCommand = caddycmd.Command{
	Name:  "webhook",
	Usage: "<command> [args]",
	Short: "Manages the webhook endpoints of an account of a running taskgate",
	Long: `
Lists, creates, changes, deletes, rotates the secret of and tests an
account's webhook endpoints through the admin API of a running taskgate,
as the account does with /v3/webhooks, whether or not its self-service is
on. A new secret is printed once. The admin endpoint and --json are as for
'taskgate account'.
`,
	CobraFunc: configureWebhookCommand,
}

// configureWebhookCommand turns cmd into the `webhook` command.
func configureWebhookCommand(cmd *cobra.Command) {
	c := newAdminClient(cmd)
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	path := func(rest ...string) string {
		p := "/webhooks"
		for _, r := range rest {
			p += "/" + url.PathEscape(r)
		}
		return p
	}

	list := &cobra.Command{
		Use: "list <account>", Short: "Lists an account's webhook endpoints",
		Example: "  taskgate webhook list acme", Args: cobra.ExactArgs(1),
	}
	apiCommand(c, list, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodGet, path(), nil), nil
	}, func(w io.Writer, _ []string, l *struct {
		Webhooks []endpoints.View `json:"webhooks"`
	}) {
		writeEndpoints(w, l.Webhooks)
	})

	create := &cobra.Command{
		Use: "create <account> <url>", Short: "Adds an endpoint, with a new secret printed once",
		Example: "  taskgate webhook create acme https://acme.example/hooks --task-type verify_with_source/ind_pan --description prod",
		Args:    cobra.ExactArgs(2),
	}
	types := create.Flags().StringSlice("task-type", nil, "Only deliveries of these task types (default: all)")
	description := create.Flags().String("description", "", "What the endpoint is for")
	apiCommand(c, create, func(args []string) (*apiRequest, error) {
		in := endpoints.Input{URL: &args[1], Description: description}
		if len(*types) > 0 {
			in.TaskTypes = types
		}
		return onAccount(args[0], http.MethodPost, path(), in), nil
	}, writeEndpointSecret)

	var enable, disable bool
	update := &cobra.Command{
		Use: "update <account> <endpoint_id>", Short: "Changes an endpoint: its URL, task types, description, or enables or disables it",
		Example: "  taskgate webhook update acme we_7Qd2kP0aXw1Lm9Zr --disable", Args: cobra.ExactArgs(2),
	}
	newURL := update.Flags().String("url", "", "The endpoint's new URL")
	newTypes := update.Flags().StringSlice("task-type", nil, "Only deliveries of these task types")
	allTypes := update.Flags().Bool("all-task-types", false, "Deliveries of every task type")
	newDescription := update.Flags().String("description", "", "What the endpoint is for")
	update.Flags().BoolVar(&enable, "enable", false, "Enable the endpoint")
	update.Flags().BoolVar(&disable, "disable", false, "Disable the endpoint: it gets no deliveries")
	apiCommand(c, update, func(args []string) (*apiRequest, error) {
		var in endpoints.Input
		flags := update.Flags()
		if flags.Changed("url") {
			in.URL = newURL
		}
		switch {
		case *allTypes && flags.Changed("task-type"):
			return nil, fmt.Errorf("give one of --task-type and --all-task-types")
		case *allTypes:
			in.TaskTypes = &[]string{}
		case flags.Changed("task-type"):
			in.TaskTypes = newTypes
		}
		if flags.Changed("description") {
			in.Description = newDescription
		}
		if enable && disable {
			return nil, fmt.Errorf("give one of --enable and --disable")
		}
		if enable || disable {
			in.Enabled = &enable
		}
		return onAccount(args[0], http.MethodPatch, path(args[1]), in), nil
	}, func(w io.Writer, _ []string, v *endpoints.View) { writeEndpoints(w, []endpoints.View{*v}) })

	remove := &cobra.Command{
		Use: "delete <account> <endpoint_id>", Short: "Deletes an endpoint",
		Example: "  taskgate webhook delete acme we_7Qd2kP0aXw1Lm9Zr", Args: cobra.ExactArgs(2),
	}
	apiCommand(c, remove, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodDelete, path(args[1]), nil), nil
	}, func(w io.Writer, args []string, _ *struct{}) { fmt.Fprintf(w, "Deleted %s.\n", clean(args[1])) })

	rotate := &cobra.Command{
		Use:     "rotate-secret <account> <endpoint_id>",
		Short:   "Gives an endpoint a new secret, printed once; the old one keeps signing during --grace",
		Example: "  taskgate webhook rotate-secret acme we_7Qd2kP0aXw1Lm9Zr --grace 48h",
		Args:    cobra.ExactArgs(2),
	}
	grace := rotate.Flags().String("grace", "24h", "How long the old secret signs next to the new one (0s: not at all)")
	apiCommand(c, rotate, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodPost, path(args[1], "rotate-secret"), endpoints.Rotation{Grace: grace}), nil
	}, writeEndpointSecret)

	test := &cobra.Command{
		Use: "test <account> <endpoint_id>", Short: "Sends a signed webhook.test event to an endpoint at once",
		Example: "  taskgate webhook test acme we_7Qd2kP0aXw1Lm9Zr", Args: cobra.ExactArgs(2),
	}
	apiCommand(c, test, func(args []string) (*apiRequest, error) {
		return onAccount(args[0], http.MethodPost, path(args[1], "test"), struct{}{}), nil
	}, func(w io.Writer, _ []string, r *endpoints.TestResult) {
		outcome := "no answer"
		switch {
		case r.Attempt.Error != nil:
			outcome = *r.Attempt.Error
		case r.Attempt.StatusCode != nil:
			outcome = fmt.Sprintf("HTTP %d", *r.Attempt.StatusCode)
		}
		verdict := "not delivered"
		if r.Delivered {
			verdict = "delivered"
		}
		fmt.Fprintf(w, "%s %s: %s, %s in %d ms.\n", clean(r.Event), clean(r.DeliveryID), verdict, clean(outcome), r.Attempt.DurationMS)
	})
	cmd.AddCommand(list, create, update, remove, rotate, test)
}

// writeEndpointSecret writes an endpoint and the secret it was just given.
func writeEndpointSecret(w io.Writer, _ []string, v *endpoints.View) {
	writeEndpoints(w, []endpoints.View{*v})
	fmt.Fprintf(w, "\nSecret (shown once): %s\n", clean(v.Secret))
}

// writeEndpoints writes endpoints as a table.
func writeEndpoints(w io.Writer, vs []endpoints.View) {
	if len(vs) == 0 {
		fmt.Fprintln(w, "No webhook endpoints.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tENABLED\tTASK TYPES\tSIGNED\tREAD-ONLY\tDESCRIPTION\tURL")
	for _, v := range vs {
		types := "all"
		if len(v.TaskTypes) > 0 {
			types = strings.Join(v.TaskTypes, ",")
		}
		fmt.Fprintf(tw, "%s\t%t\t%s\t%t\t%t\t%s\t%s\n", clean(v.ID), v.Enabled, clean(types), v.Signed, v.ReadOnly, dash(clean(v.Description)), clean(v.URL))
	}
	_ = tw.Flush()
}
