package console

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/usage"
)

// chart is a bar chart of one value per day, each bar stacked from
// series, drawn as SVG by the template "chart".
type chart struct {
	Title  string
	Width  int
	Height int
	// Max is the top of the scale.
	Max    int64
	Bars   []bar
	Series []series
	// Labels mark some days under the bars.
	Labels []label
}

type series struct {
	Name  string
	Class string
}

type bar struct {
	X, W     int
	Day      string
	Segments []segment
}

type segment struct {
	Y, H  int
	Class string
	Title string
}

type label struct {
	X    int
	Text string
}

const (
	chartHeight = 120
	chartBar    = 14
	chartGap    = 4
)

// dayChart draws one bar per day from `from` to `to` (both included), each
// stacked from the values that pick gives a day's counts, named by names;
// detail, when set, adds to a segment's title (its j-th value's
// breakdown that day).
func dayChart(title string, from, to time.Time, perDay map[string]usage.Counts, names []series, pick func(usage.Counts) []int64, detail func(day string, j int) string) chart {
	c := chart{Title: title, Height: chartHeight, Series: names}
	var days []string
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		days = append(days, usage.Day(d))
	}
	for _, day := range days {
		var total int64
		for _, v := range pick(perDay[day]) {
			total += v
		}
		c.Max = max(c.Max, total)
	}
	scale := func(v int64) int {
		if c.Max == 0 {
			return 0
		}
		return int(v * chartHeight / c.Max)
	}
	for i, day := range days {
		b := bar{X: i * (chartBar + chartGap), W: chartBar, Day: day}
		y := chartHeight
		for j, v := range pick(perDay[day]) {
			h := scale(v)
			if v > 0 && h == 0 {
				h = 1
			}
			y -= h
			title := fmt.Sprintf("%s: %s %s", day, strconv.FormatInt(v, 10), names[j].Name)
			if detail != nil && v > 0 {
				if d := detail(day, j); d != "" {
					title += " (" + d + ")"
				}
			}
			b.Segments = append(b.Segments, segment{Y: y, H: h, Class: names[j].Class, Title: title})
		}
		c.Bars = append(c.Bars, b)
		if i%7 == 0 || (i == len(days)-1 && i%7 >= 4) {
			c.Labels = append(c.Labels, label{X: b.X, Text: day[5:]})
		}
	}
	// Room for the last label, which starts at its bar.
	c.Width = len(days)*(chartBar+chartGap) + 24
	return c
}

// usageView is the usage section of an account's page.
type usageView struct {
	From, To string
	Total    usage.Counts
	Requests chart
	Tasks    chart
	// Rejections are the refused requests by reason, most first.
	Rejections []count
	// ByType are the tasks by type over the period.
	ByType []typeCounts
	Quotas []quotaView
}

type count struct {
	Name  string
	Count int64
}

type typeCounts struct {
	TaskType string
	usage.Counts
}

type quotaView struct {
	Policy string
	Left   string
}

func newUsageView(rep *admin.UsageReport, from, to time.Time) usageView {
	perDay := map[string]usage.Counts{}
	perType := map[string]usage.Counts{}
	perDayType := map[string][]typeCounts{}
	for _, r := range rep.Usage {
		c := perDay[r.Day]
		c.Add(r.Counts)
		perDay[r.Day] = c
		if r.TaskType != "" {
			t := perType[r.TaskType]
			t.Add(r.Counts)
			perType[r.TaskType] = t
			perDayType[r.Day] = append(perDayType[r.Day], typeCounts{TaskType: r.TaskType, Counts: r.Counts})
		}
	}
	// A day's rejections by reason, and its tasks ended by type.
	reasons := func(day string, _ int) string {
		var parts []string
		for _, reason := range slices.Sorted(maps.Keys(perDay[day].Rejected)) {
			parts = append(parts, fmt.Sprintf("%s %d", reason, perDay[day].Rejected[reason]))
		}
		return strings.Join(parts, ", ")
	}
	byType := func(day string, j int) string {
		var parts []string
		for _, t := range perDayType[day] {
			if n := []int64{t.Completed, t.Failed}[j]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", t.TaskType, n))
			}
		}
		slices.Sort(parts)
		return strings.Join(parts, ", ")
	}
	v := usageView{From: rep.From, To: rep.To, Total: rep.Total}
	v.Requests = dayChart("Requests per day", from, to, perDay,
		[]series{{"accepted", "ok"}, {"rejected", "bad"}},
		func(c usage.Counts) []int64 {
			var rejected int64
			for _, n := range c.Rejected {
				rejected += n
			}
			return []int64{c.Requests - rejected, rejected}
		},
		func(day string, j int) string {
			if j == 1 {
				return reasons(day, j)
			}
			return ""
		})
	v.Tasks = dayChart("Tasks ended per day", from, to, perDay,
		[]series{{"completed", "ok"}, {"failed", "bad"}},
		func(c usage.Counts) []int64 { return []int64{c.Completed, c.Failed} }, byType)
	for reason, n := range rep.Total.Rejected {
		v.Rejections = append(v.Rejections, count{Name: reason, Count: n})
	}
	slices.SortFunc(v.Rejections, func(a, b count) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for t, c := range perType {
		v.ByType = append(v.ByType, typeCounts{TaskType: t, Counts: c})
	}
	slices.SortFunc(v.ByType, func(a, b typeCounts) int { return strings.Compare(a.TaskType, b.TaskType) })
	for _, q := range rep.Quotas {
		policy := strconv.FormatInt(q.Limit, 10) + " per " + q.Period
		if len(q.TaskTypes) > 0 {
			policy += " of " + strings.Join(q.TaskTypes, ", ")
		}
		v.Quotas = append(v.Quotas, quotaView{Policy: policy, Left: strconv.FormatInt(q.Left, 10) + " left, resets " + formatTime(q.ResetsAt)})
	}
	return v
}
