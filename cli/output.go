package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/usage"
)

func accountKind(a *admin.AccountView) string {
	if a.Static {
		return "static"
	}
	return "dynamic"
}

func rateText(a *admin.AccountView) string {
	s := fmt.Sprintf("%s burst %d", clean(a.RateLimit), a.Burst)
	if a.DefaultRateLimit {
		s += " (default)"
	}
	return s
}

func liveKeys(a *admin.AccountView) int {
	n := 0
	for _, k := range a.Keys {
		if !k.Expired {
			n++
		}
	}
	return n
}

// keyCount is the number of live keys, and of expired ones if any.
func keyCount(a *admin.AccountView) string {
	live := liveKeys(a)
	s := strconv.Itoa(live)
	if expired := len(a.Keys) - live; expired > 0 {
		s += fmt.Sprintf(" (+%d expired)", expired)
	}
	return s
}

// writeAccount writes an account for people.
func writeAccount(w io.Writer, a *admin.AccountView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	status := "enabled"
	if a.Disabled {
		status = "DISABLED"
	}
	fmt.Fprintf(tw, "id:\t%s\n", clean(a.ID))
	fmt.Fprintf(tw, "name:\t%s\n", clean(a.Name))
	fmt.Fprintf(tw, "kind:\t%s\n", accountKind(a))
	fmt.Fprintf(tw, "status:\t%s\n", status)
	fmt.Fprintf(tw, "rate limit:\t%s\n", rateText(a))
	fmt.Fprintf(tw, "allow:\t%s\n", listText(a.Allow, "any address"))
	fmt.Fprintf(tw, "task types:\t%s\n", listText(a.TaskTypes, "all"))
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
			notes = append(notes, "types "+listText(h.Types, ""))
		}
		if h.HasSecret {
			notes = append(notes, "signed")
		}
		if h.HasAuthorization {
			notes = append(notes, "with Authorization")
		}
		if !h.Enabled {
			notes = append(notes, "DISABLED")
		}
		line := clean(h.ID) + " " + clean(h.URL)
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, line)
	}
	if a.WebhooksLocked {
		fmt.Fprintf(tw, "webhook endpoints:\tlocked (the operator's)\n")
	}
	fmt.Fprintf(tw, "failure webhook:\t%s\n", orNone(clean(a.FailureWebhook)))
	quotas := make([]string, len(a.Quotas))
	for i, q := range a.Quotas {
		quotas[i] = q.Quota().String()
	}
	fmt.Fprintf(tw, "quotas:\t%s\n", listText(quotas, "none"))
	if t := timeText(a.CreatedAt); t != "" {
		fmt.Fprintf(tw, "created:\t%s\n", t)
	}
	if t := timeText(a.UpdatedAt); t != "" {
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
			state = "expired " + timeText(k.ExpiresAt)
		case k.Expired:
			state = "expired"
		case k.ExpiresAt != nil:
			state = "live, expires " + timeText(k.ExpiresAt)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", clean(k.ID), dash(clean(k.Prefix)), dash(timeText(k.CreatedAt)), state)
	}
	tw.Flush()
}

func writeUsageRow(tw io.Writer, day, taskType string, c *usage.Counts) {
	var rejected int64
	for _, n := range c.Rejected {
		rejected += n
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n",
		day, taskType, c.Requests, rejected, c.Created, c.Completed, c.Failed)
}

// rejectedByCode lists rejection counts as "code n, code n", by code.
func rejectedByCode(m map[string]int64) string {
	codes := make([]string, 0, len(m))
	for code := range m {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	parts := make([]string, 0, len(codes))
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%s %d", clean(code), m[code]))
	}
	return strings.Join(parts, ", ")
}

func listText(list []string, none string) string {
	if len(list) == 0 {
		return none
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = clean(s)
	}
	return strings.Join(out, ", ")
}

// timeText writes a time of an answer as the API sends it: RFC 3339 in UTC,
// with the fraction of a second it has; "" for none.
func timeText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// clean replaces control characters, so that a value set through the API
// cannot move the cursor or break a table on the operator's terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
