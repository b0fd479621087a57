package console

import (
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/usage"
)

// TestUsageCharts: a bar per day, days without counts included, stacked
// in proportion, with each day's breakdown in the titles.
func TestUsageCharts(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 89)
	rep := &admin.UsageReport{From: "2026-11-01", To: "2026-12-30", Usage: []admin.UsageRow{
		{Day: "2026-11-02", TaskType: "kyc/pan", Counts: usage.Counts{Requests: 10, Created: 8, Completed: 6, Failed: 2}},
		{Day: "2026-11-02", TaskType: "kyc/aadhaar", Counts: usage.Counts{Requests: 10, Created: 4, Completed: 4}},
		{Day: "2026-11-02", Counts: usage.Counts{Requests: 20, Rejected: map[string]int64{"too_many_requests": 15, "ip_not_allowed": 5}}},
		{Day: "2026-12-30", TaskType: "kyc/pan", Counts: usage.Counts{Requests: 4, Completed: 4}},
	}}
	for _, r := range rep.Usage {
		rep.Total.Add(r.Counts)
	}
	v := newUsageView(rep, from, to)
	if n := len(v.Requests.Bars); n != 90 {
		t.Fatalf("%d bars for 90 days", n)
	}
	day := v.Requests.Bars[1] // 2026-11-02: 20 accepted, 20 rejected of the most, 40
	if v.Requests.Max != 40 || day.Segments[0].H != chartHeight/2 || day.Segments[1].H != chartHeight/2 {
		t.Errorf("max %d, segments %+v", v.Requests.Max, day.Segments)
	}
	if got := day.Segments[1].Title; !strings.Contains(got, "20 rejected (ip_not_allowed 5, too_many_requests 15)") {
		t.Errorf("rejected title %q", got)
	}
	if got := v.Tasks.Bars[1].Segments[0].Title; !strings.Contains(got, "10 completed (kyc/aadhaar 4, kyc/pan 6)") {
		t.Errorf("completed title %q", got)
	}
	if seg := v.Requests.Bars[0].Segments; seg[0].H != 0 || seg[1].H != 0 {
		t.Errorf("an empty day: %+v", seg)
	}
	if len(v.Rejections) != 2 || v.Rejections[0].Name != "too_many_requests" {
		t.Errorf("rejections %+v, most first", v.Rejections)
	}
	if len(v.ByType) != 2 || v.ByType[1].TaskType != "kyc/pan" || v.ByType[1].Completed != 10 {
		t.Errorf("by type %+v", v.ByType)
	}
	// The labels do not crowd: none closer than 4 bars.
	for i := 1; i < len(v.Requests.Labels); i++ {
		if d := v.Requests.Labels[i].X - v.Requests.Labels[i-1].X; d < 4*(chartBar+chartGap) {
			t.Errorf("labels %d and %d are %d apart", i-1, i, d)
		}
	}
}
