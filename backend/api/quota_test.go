package api

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/internal/clocktest"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task"
)

// withQuotas gives the fixture's service a quota book on a store of its
// own, at a fixed time, and returns the clock.
func withQuotas(t testing.TB, f *fixture) *clocktest.Clock {
	c := clocktest.New(time.Date(2030, 2, 14, 23, 0, 0, 0, time.UTC))
	qs := memory.New()
	t.Cleanup(func() { _ = qs.Close() })
	f.api.Clock = c.Now
	f.api.Service = task.NewService(task.ServiceConfig{Store: f.store, Hub: f.hub,
		Quotas: quota.NewBook(quota.BookConfig{Store: qs, Clock: c.Now})})
	return c
}

func TestCreateOverQuota(t *testing.T) {
	f := newFixture(t)
	withQuotas(t, f)
	acct := &account.Account{ID: "q", Quotas: []quota.Quota{
		{Limit: 2, Period: quota.Day},
		{Limit: 100, Period: quota.Month, TaskTypes: []string{"verify_with_source/ind_aadhaar"}},
	}}
	for i := range 2 {
		w := f.do(t, acct, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody)
		if w.Code != http.StatusAccepted {
			t.Fatalf("create %d: %d %s", i+1, w.Code, w.Body)
		}
		want := []string{`"daily";q=2;w=86400`}
		if got := w.Header().Values("RateLimit-Policy"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := w.Header().Get("RateLimit"), `"daily";r=`+strconv.Itoa(1-i)+";t=3600"; got != want {
			t.Errorf("RateLimit %q, want %q", got, want)
		}
	}
	w := f.do(t, acct, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), `"QUOTA_EXCEEDED"`) {
		t.Fatalf("over quota: %d %s", w.Code, w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "3600" {
		t.Errorf("Retry-After %q, want 3600", got)
	}
	if got := w.Header().Get("RateLimit"); got != `"daily";r=0;t=3600` {
		t.Errorf("RateLimit %q", got)
	}
	tasks, err := f.store.ListByTaskID(t.Context(), "q", "t1", 10)
	if err != nil || len(tasks) != 2 {
		t.Errorf("stored %d tasks, %v; want the 2 accepted", len(tasks), err)
	}
	// The monthly quota of another type names itself after the daily one.
	w = f.do(t, acct, "POST", "/v3/tasks/async/verify_with_source/ind_aadhaar", panBody)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("aadhaar over the daily quota: %d %s", w.Code, w.Body)
	}
}

func TestCreateReplayDoesNotSpend(t *testing.T) {
	f := newFixture(t)
	withQuotas(t, f)
	acct := &account.Account{ID: "q", Quotas: []quota.Quota{{Limit: 2, Period: quota.Day}}}
	for range 3 {
		if w := f.do(t, acct, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody, "Idempotency-Key", "k1"); w.Code != http.StatusAccepted {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if w := f.do(t, acct, "POST", "/v3/tasks/async/verify_with_source/ind_pan", panBody); w.Code != http.StatusAccepted {
		t.Fatalf("second task: %d %s", w.Code, w.Body)
	}
}
