package ratelimit

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in     string
		count  int64
		period time.Duration
	}{
		{"30/s", 30, time.Second},
		{"100/m", 100, time.Minute},
		{"5000/h", 5000, time.Hour},
		{"1/d", 1, 24 * time.Hour},
		{"10/500ms", 10, 500 * time.Millisecond},
		{" 7/2s ", 7, 2 * time.Second},
	} {
		count, period, err := ParseRate(tc.in)
		if err != nil || count != tc.count || period != tc.period {
			t.Errorf("ParseRate(%q) = %d, %v, %v; want %d, %v", tc.in, count, period, err, tc.count, tc.period)
		}
	}
	for _, bad := range []string{"", "30", "30/", "/s", "0/s", "-1/s", "x/s", "30/y", "30/-1s", "30/0s", "2/1ns", "1.5/s", "99999999999999999999/s"} {
		if _, _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q): want an error", bad)
		}
	}
}

func TestNewLimitDefaultsBurstToOneSecond(t *testing.T) {
	for _, tc := range []struct {
		rate  string
		burst int64
	}{
		{"30/s", 30},
		{"10/500ms", 20},
		{"100/m", 2},
		{"1/h", 1},
	} {
		l, err := ParseLimit(tc.rate, 0)
		if err != nil || l.Burst != tc.burst {
			t.Errorf("ParseLimit(%q, 0).Burst = %d, %v; want %d", tc.rate, l.Burst, err, tc.burst)
		}
	}
	if _, err := NewLimit(1, time.Hour, 1<<62); err == nil {
		t.Error("a burst whose window overflows: want an error")
	}
	if _, err := NewLimit(1, time.Second, -1); err == nil {
		t.Error("negative burst: want an error")
	}
}

func TestLimitString(t *testing.T) {
	l, _ := ParseLimit("30/s", 0)
	if got := l.String(); got != "30/s burst 30" {
		t.Errorf("String() = %q", got)
	}
	l, _ = ParseLimit("3/250ms", 5)
	if got := l.String(); got != "3/250ms burst 5" {
		t.Errorf("String() = %q", got)
	}
}
