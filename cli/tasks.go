package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/task"
)

// taskCommand is `taskgate task`: an account's tasks, as the account reads
// them through the client API (disabled accounts included).
var taskCommand = caddycmd.Command{
	Name:  "task",
	Usage: "<command> [args]",
	Short: "Shows the tasks of an account of a running taskgate",
	Long: `
Reads an account's tasks through the admin API of a running taskgate, as
the account itself reads them with GET /v3/tasks: by request id, or the
newest 100 of a group or of a task id. The admin endpoint and --json are
as for 'taskgate account'.
`,
	CobraFunc: configureTaskCommand,
}

// deliveryCommand is `taskgate delivery`: an account's webhook deliveries
// and their retry.
var deliveryCommand = caddycmd.Command{
	Name:  "delivery",
	Usage: "<command> [args]",
	Short: "Lists and retries the webhook deliveries of an account of a running taskgate",
	Long: `
Reads an account's webhook deliveries, with every attempt, through the
admin API of a running taskgate, and queues a delivery again. The admin
endpoint and --json are as for 'taskgate account'.
`,
	CobraFunc: configureDeliveryCommand,
}

// configureTaskCommand turns cmd into the `task` command.
func configureTaskCommand(cmd *cobra.Command) {
	c := newAdminClient(cmd)
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	show := &cobra.Command{
		Use:     "show <account> <request_id>",
		Short:   "Shows a task, its result and its error",
		Example: "  taskgate task show acme 019abf4e-1c2d-7a3b-9c4d-5e6f708192a3",
		Args:    cobra.ExactArgs(2),
	}
	wait := show.Flags().Int("wait", 0, "Seconds to wait for the task to end (at most 30)")
	apiCommand(c, show, func(args []string) (*apiRequest, error) {
		q := url.Values{"request_id": {args[1]}}
		if *wait > 0 {
			q.Set("wait", strconv.Itoa(*wait))
		}
		return onAccount(args[0], http.MethodGet, "/tasks?"+q.Encode(), nil), nil
	}, func(w io.Writer, _ []string, tasks *[]task.View) {
		for _, t := range *tasks {
			writeTask(w, &t)
		}
	})

	list := &cobra.Command{
		Use:     "list <account> (--group <group_id> | --task-id <task_id>)",
		Short:   "Lists the newest tasks of a group or of a task id",
		Example: "  taskgate task list acme --group onboarding-42",
		Args:    cobra.ExactArgs(1),
	}
	group := list.Flags().String("group", "", "The group_id of the tasks")
	taskID := list.Flags().String("task-id", "", "The task_id of the tasks")
	apiCommand(c, list, func(args []string) (*apiRequest, error) {
		q := url.Values{}
		switch {
		case (*group == "") == (*taskID == ""):
			return nil, fmt.Errorf("give one of --group and --task-id")
		case *group != "":
			q.Set("group_id", *group)
		default:
			q.Set("task_id", *taskID)
		}
		return onAccount(args[0], http.MethodGet, "/tasks?"+q.Encode(), nil), nil
	}, func(w io.Writer, _ []string, tasks *[]task.View) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUEST ID\tTYPE\tSTATUS\tERROR\tTASK ID\tCREATED")
		for _, t := range *tasks {
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\n", clean(t.RequestID), clean(t.Action), clean(t.Type),
				clean(string(t.Status)), dash(deref(t.Error)), clean(t.TaskID), clean(t.CreatedAt))
		}
		_ = tw.Flush()
	})
	cmd.AddCommand(show, list)
}

// configureDeliveryCommand turns cmd into the `delivery` command.
func configureDeliveryCommand(cmd *cobra.Command) {
	c := newAdminClient(cmd)
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	list := &cobra.Command{
		Use:   "list <account> [--status failed|pending|delivered] [--request-id <id>]",
		Short: "Lists an account's webhook deliveries, newest first, with their last attempt",
		Example: `  taskgate delivery list acme --status failed
  taskgate delivery list acme --request-id 019abf4e-1c2d-7a3b-9c4d-5e6f708192a3`,
		Args: cobra.ExactArgs(1),
	}
	status := list.Flags().String("status", "", "Only deliveries with this status")
	requestID := list.Flags().String("request-id", "", "Only the deliveries of this task")
	apiCommand(c, list, func(args []string) (*apiRequest, error) {
		q := url.Values{}
		if *status != "" {
			q.Set("status", *status)
		}
		if *requestID != "" {
			q.Set("request_id", *requestID)
		}
		return onAccount(args[0], http.MethodGet, "/deliveries?"+q.Encode(), nil), nil
	}, func(w io.Writer, _ []string, ds *[]api.DeliveryView) { writeDeliveries(w, *ds) })

	retry := &cobra.Command{
		Use:     "retry <account> <delivery_id>...",
		Short:   "Queues deliveries again, due at once",
		Example: "  taskgate delivery retry acme msg_0MlW0aQhB3cUjzFnMTx4Kq",
		Args:    cobra.MinimumNArgs(2),
	}
	retry.RunE = func(cmd *cobra.Command, args []string) error {
		for _, id := range args[1:] {
			raw, err := c.do(cmd, onAccount(args[0], http.MethodPost, "/deliveries/"+url.PathEscape(id)+"/retry", struct{}{}))
			if err != nil {
				return err
			}
			err = printAnswer(c, cmd, raw, func(w io.Writer, d *api.DeliveryView) {
				fmt.Fprintf(w, "Queued %s again (%s to %s).\n", clean(d.ID), clean(d.Event), clean(d.URL))
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	cmd.AddCommand(list, retry)
}

// writeTask writes one task for people.
func writeTask(w io.Writer, t *task.View) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Request id:\t%s\n", clean(t.RequestID))
	fmt.Fprintf(tw, "Type:\t%s/%s\n", clean(t.Action), clean(t.Type))
	fmt.Fprintf(tw, "Status:\t%s\n", clean(string(t.Status)))
	fmt.Fprintf(tw, "Task id:\t%s\n", clean(t.TaskID))
	fmt.Fprintf(tw, "Group id:\t%s\n", clean(t.GroupID))
	fmt.Fprintf(tw, "Created:\t%s\n", clean(t.CreatedAt))
	fmt.Fprintf(tw, "Completed:\t%s\n", dash(deref(t.CompletedAt)))
	if t.Error != nil {
		fmt.Fprintf(tw, "Error:\t%s: %s\n", clean(*t.Error), clean(deref(t.Message)))
	}
	if len(t.Result) > 0 && string(t.Result) != "null" {
		fmt.Fprintf(tw, "Result:\t%s\n", clean(string(t.Result)))
	}
	_ = tw.Flush()
}

// writeDeliveries writes deliveries as a table, with each one's attempts.
func writeDeliveries(w io.Writer, ds []api.DeliveryView) {
	if len(ds) == 0 {
		fmt.Fprintln(w, "No deliveries.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIVERY\tREQUEST ID\tEVENT\tSTATUS\tATTEMPTS\tLAST OUTCOME\tNEXT ATTEMPT\tURL")
	for _, d := range ds {
		last := "-"
		if n := len(d.Attempts); n > 0 {
			a := d.Attempts[n-1]
			switch {
			case a.Error != nil:
				last = *a.Error
			case a.StatusCode != nil:
				last = strconv.Itoa(*a.StatusCode)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", clean(d.ID), clean(d.RequestID), clean(d.Event), clean(string(d.Status)),
			len(d.Attempts), clean(last), dash(deref(d.NextAt)), clean(d.URL))
	}
	_ = tw.Flush()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
