package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/backend/admin"
)

// maintenanceCommand is `taskgate maintenance`: the sources' planned
// downtime.
var maintenanceCommand = caddycmd.Command{
	Name:  "maintenance",
	Usage: "<command> [args]",
	Short: "Schedules, lists and cancels planned downtime of sources",
	Long: `
Schedules a task type's source down for a window, through the admin API of
a running taskgate: from its start to its end, the type's tasks fail at
once as SOURCE_DOWN with the window's message, and GET /v3/status shows
"maintenance". The window holds on every node within seconds. The admin
endpoint and --json are as for 'taskgate account'.
`,
	CobraFunc: configureMaintenanceCommand,
}

// configureMaintenanceCommand turns cmd into the `maintenance` command.
func configureMaintenanceCommand(cmd *cobra.Command) {
	c := newAdminClient(cmd)
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	add := &cobra.Command{
		Use:   "add <action/type> (--until <time> | --for <duration>) --message <text> [--from <time>]",
		Short: "Schedules a window of planned downtime",
		Example: `  taskgate maintenance add verify_with_source/ind_pan --for 2h --message "NSDL maintenance until 02:00 IST"
  taskgate maintenance add verify_with_source/ind_pan --from 2026-12-06T20:30:00Z --until 2026-12-06T22:30:00Z --message "registry upgrade"`,
		Args: cobra.ExactArgs(1),
	}
	from := add.Flags().String("from", "", "Start (RFC 3339); default now")
	until := add.Flags().String("until", "", "End (RFC 3339)")
	forDur := add.Flags().Duration("for", 0, "Length, from the start (instead of --until)")
	message := add.Flags().String("message", "", "The tasks' message during the window")
	apiCommand(c, add, func(args []string) (*apiRequest, error) {
		body := map[string]any{"task_type": args[0], "message": *message}
		start := time.Now().UTC()
		if *from != "" {
			t, err := time.Parse(time.RFC3339, *from)
			if err != nil {
				return nil, fmt.Errorf("--from %q: want an RFC 3339 time such as 2026-12-06T20:30:00Z", *from)
			}
			start = t
			body["from"] = t
		}
		switch {
		case (*until == "") == (*forDur == 0):
			return nil, fmt.Errorf("give one of --until and --for")
		case *until != "":
			t, err := time.Parse(time.RFC3339, *until)
			if err != nil {
				return nil, fmt.Errorf("--until %q: want an RFC 3339 time such as 2026-12-06T22:30:00Z", *until)
			}
			body["until"] = t
		default:
			body["until"] = start.Add(*forDur)
		}
		return &apiRequest{"maintenance of " + args[0], http.MethodPost, "/taskgate/maintenance", body}, nil
	}, func(w io.Writer, _ []string, win *admin.MaintenanceView) {
		fmt.Fprintf(w, "Scheduled %s: %s down from %s until %s (%s).\n", clean(win.ID), clean(win.TaskType),
			win.From.Format(time.RFC3339), win.Until.Format(time.RFC3339), clean(win.Message))
	})

	list := &cobra.Command{
		Use:     "list",
		Short:   "Lists the windows, by start (those ended within a week too)",
		Example: "  taskgate maintenance list",
		Args:    cobra.NoArgs,
	}
	apiCommand(c, list, func([]string) (*apiRequest, error) {
		return &apiRequest{"maintenance", http.MethodGet, "/taskgate/maintenance", nil}, nil
	}, func(w io.Writer, _ []string, l *admin.MaintenanceList) {
		if len(l.Windows) == 0 {
			fmt.Fprintln(w, "No maintenance windows.")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTASK TYPE\tFROM\tUNTIL\tACTIVE\tMESSAGE")
		for _, win := range l.Windows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(win.ID), clean(win.TaskType), win.From.Format(time.RFC3339),
				win.Until.Format(time.RFC3339), yesNo(win.Active), clean(win.Message))
		}
		_ = tw.Flush()
	})

	remove := &cobra.Command{
		Use:     "remove <id>",
		Short:   "Cancels a window",
		Example: "  taskgate maintenance remove mw_Xk2…",
		Args:    cobra.ExactArgs(1),
	}
	apiCommand(c, remove, func(args []string) (*apiRequest, error) {
		return &apiRequest{"maintenance window " + args[0], http.MethodDelete, "/taskgate/maintenance/" + url.PathEscape(args[0]), nil}, nil
	}, func(w io.Writer, _ []string, win *admin.MaintenanceView) {
		fmt.Fprintf(w, "Cancelled %s (%s).\n", clean(win.ID), clean(win.TaskType))
	})
	cmd.AddCommand(add, list, remove)
}
