package quota

import (
	"strings"
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	at := time.Date(2028, 2, 29, 23, 59, 59, 0, time.FixedZone("IST", 5*3600+1800))
	// 18:29:59 UTC on the 29th of February of a leap year.
	for _, tc := range []struct {
		p          Period
		start, end time.Time
	}{
		{Day, time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)},
		{Month, time.Date(2028, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if s, e := tc.p.Start(at), tc.p.End(at); !s.Equal(tc.start) || !e.Equal(tc.end) {
			t.Errorf("%s: %v to %v, want %v to %v", tc.p, s, e, tc.start, tc.end)
		}
	}
}

func TestParse(t *testing.T) {
	q, err := Parse("10000/month")
	if err != nil || q.Limit != 10000 || q.Period != Month {
		t.Fatalf("Parse: %+v, %v", q, err)
	}
	for _, bad := range []string{"", "10000", "0/day", "-1/day", "1/week", "1/Day", "x/day", "1/day/2", "99999999999999999999/day"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestValidateSet(t *testing.T) {
	ok := []Quota{{Limit: 1, Period: Day}, {Limit: 2, Period: Day, TaskTypes: []string{"a/b"}}, {Limit: 3, Period: Month}}
	if err := ValidateSet(ok); err != nil {
		t.Errorf("ValidateSet: %v", err)
	}
	same := []Quota{{Limit: 1, Period: Day, TaskTypes: []string{"a/b", "c/d"}}, {Limit: 2, Period: Day, TaskTypes: []string{"c/d", "a/b"}}}
	if err := ValidateSet(same); err == nil || !strings.Contains(err.Error(), "same period") {
		t.Errorf("quotas sharing a counter: %v", err)
	}
	if err := ValidateSet([]Quota{{Limit: 1, Period: Day, TaskTypes: []string{"a/b", "a/b"}}}); err == nil {
		t.Error("a task type named twice: no error")
	}
}

func TestHeaders(t *testing.T) {
	qs := []Quota{{Limit: 10, Period: Day}, {Limit: 100, Period: Month}, {Limit: 5, Period: Day, TaskTypes: []string{"a/b"}}}
	names := []string{PolicyName(qs, 0), PolicyName(qs, 1), PolicyName(qs, 2)}
	if strings.Join(names, " ") != "daily monthly daily-2" {
		t.Errorf("names %v", names)
	}
	feb := time.Date(2030, 2, 10, 0, 0, 0, 0, time.UTC)
	if got := qs[1].PolicyHeader("monthly", feb); got != `"monthly";q=100;w=2419200` {
		t.Errorf("policy %s", got)
	}
	if got := StateHeader("daily", 3, 1500*time.Millisecond); got != `"daily";r=3;t=2` {
		t.Errorf("state %s", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1/day", "10000/month", "0/day", "1/week", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			return
		}
		if q.Limit < 1 || (q.Period != Day && q.Period != Month) {
			t.Fatalf("Parse(%q) = %+v", s, q)
		}
		if back, err := Parse(q.String()); err != nil || back.Limit != q.Limit || back.Period != q.Period {
			t.Fatalf("Parse(%q).String() = %q does not parse back: %+v, %v", s, q.String(), back, err)
		}
	})
}
