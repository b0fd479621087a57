package redis_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/usage/usagetest"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestUsageStore runs the suite on one redis-server, each subtest under a
// prefix of its own.
func TestUsageStore(t *testing.T) {
	srv := redistest.Start(t)
	usagetest.Run(t, func(t *testing.T) usage.Store { return openStore(t, srv.URL(), subtestPrefix(t)) })
}

// TestUsageStoreDurable reopens the store on a redis-server restarted in
// between.
func TestUsageStoreDurable(t *testing.T) {
	srv := redistest.Start(t)
	opened := false
	usagetest.RunDurable(t, func(t *testing.T, _ string) usagetest.Store {
		if opened {
			srv.Restart()
		}
		opened = true
		return openStore(t, srv.URL(), "durable")
	})
}

// TestUsageRefusesAmbiguousKeys checks that the store refuses what would
// make two rows share a key: an account id with ':' and a day that is not
// a date.
func TestUsageRefusesAmbiguousKeys(t *testing.T) {
	s := openStore(t, redistest.Start(t).URL(), "tg")
	ctx := t.Context()
	for _, r := range []usage.Row{
		{AccountID: "acme:2030-01-01", Day: "2030-01-02", TaskType: "a", Counts: usage.Counts{Requests: 1}},
		{AccountID: "acme", Day: "2030-1-2", TaskType: "a", Counts: usage.Counts{Requests: 1}},
		{AccountID: "acme", Day: "2030-01-02:a", TaskType: "b", Counts: usage.Counts{Requests: 1}},
	} {
		if err := s.AddUsage(ctx, []usage.Row{r}); err == nil {
			t.Errorf("AddUsage(%+v) succeeded, want an error", r)
		}
	}
	if _, err := s.Usage(ctx, "acme:x", "2030-01-01", "2030-01-02"); err == nil {
		t.Errorf("Usage of an account id with ':' succeeded, want an error")
	}
	if _, err := s.Usage(ctx, "acme", "2030-01-01", "tomorrow"); err == nil {
		t.Errorf("Usage to a day that is not a date succeeded, want an error")
	}
	if _, err := s.PurgeUsage(ctx, "yesterday"); err == nil {
		t.Errorf("PurgeUsage before a day that is not a date succeeded, want an error")
	}
	// Nothing was written: a refused row fails the whole call.
	valid := usage.Row{AccountID: "acme", Day: "2030-01-02", TaskType: "a", Counts: usage.Counts{Requests: 1}}
	bad := valid
	bad.AccountID = "ac:me"
	if err := s.AddUsage(ctx, []usage.Row{valid, bad}); err == nil {
		t.Fatalf("AddUsage of a valid and a refused row succeeded, want an error")
	}
	if rows, err := s.Usage(ctx, "acme", "2030-01-01", "2030-01-31"); err != nil || len(rows) != 0 {
		t.Errorf("Usage after refused AddUsage = %v, %v; want no rows", rows, err)
	}
	if n, err := s.PurgeUsage(ctx, "9999-12-31"); err != nil || n != 0 {
		t.Errorf("PurgeUsage after refused AddUsage = %d, %v; want 0", n, err)
	}
}
