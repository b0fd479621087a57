package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/redistest"
)

// patience bounds every wait for a signal.
const patience = 10 * time.Second

// TestTaskToWebhook drives the engine as plain Go, on every store: a task
// accepted by the client API runs against its source, ends, and reaches
// the account's webhook, signed; Stop and Close leave no goroutine behind.
func TestTaskToWebhook(t *testing.T) {
	srv := redistest.Start(t)
	for _, cfg := range []storage.Config{{Type: "memory"}, {Type: "bolt", Path: t.TempDir() + "/tg.db"}, {Type: "redis", URL: srv.URL()}} {
		t.Run(cfg.Type, func(t *testing.T) {
			before := runtime.NumGoroutine()
			src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"status":"id_found"}`)
			}))
			defer src.Close()
			hooks := make(chan *http.Request, 4)
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				hooks <- r
				w.WriteHeader(http.StatusNoContent)
			}))
			defer recv.Close()

			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			core, err := engine.OpenCore(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			limiter, err := engine.NewLimiter(core, "", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			acct := &account.Account{
				ID:       "acme",
				Keys:     []account.Key{{Hash: account.HashKey("k")}},
				Webhooks: []account.Webhook{{URL: recv.URL + "/hooks", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
			}
			e, err := engine.New(core, limiter, engine.Config{
				Accounts:     []*account.Account{acct},
				DefaultLimit: ratelimit.DefaultLimit,
				TaskTypes:    []*task.Type{{Action: "verify", Type: "pan", Source: src.URL}},
				SyncTimeout:  patience,
				Retention:    time.Hour,
				MaxBody:      1 << 20,
				Webhooks: engine.WebhooksConfig{
					Policy: webhook.DefaultPolicy(),
					Egress: egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			e.Start()

			r := httptest.NewRequest(http.MethodPost, "/v3/tasks/async/verify/pan", strings.NewReader(`{"task_id":"t1","group_id":"g1","data":{}}`))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			e.API.Serve(w, r, acct)
			if w.Code != http.StatusAccepted {
				t.Fatalf("create: %d %s", w.Code, w.Body)
			}
			var created struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil {
				t.Fatal(err)
			}
			select {
			case h := <-hooks:
				if h.Header.Get("webhook-signature") == "" || !strings.HasPrefix(h.Header.Get("User-Agent"), "taskgate/") {
					t.Errorf("delivery headers %v: want a signature and taskgate's User-Agent", h.Header)
				}
			case <-time.After(patience):
				t.Fatal("no webhook delivery within", patience)
			}
			got, err := core.Store.Get(context.Background(), "acme", created.RequestID)
			if err != nil || got.Status != task.Completed {
				t.Fatalf("task %+v, %v: want completed", got, err)
			}

			e.Stop()
			if err := limiter.Close(); err != nil {
				t.Fatal(err)
			}
			if err := core.Close(); err != nil {
				t.Fatal(err)
			}
			src.Close()
			recv.Close()
			deadline := time.Now().Add(patience)
			for runtime.NumGoroutine() > before {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				}
				runtime.Gosched()
			}
		})
	}
}

// TestNodeTellsItsTaskTypes: the node tells, in its beats, the task types
// of the latest engine running: a new configuration's once it starts, and
// the one before's again should the new one stop first (a reload that
// fails after the engine started). While both run, neither takes the
// other's types for orphans.
func TestNodeTellsItsTaskTypes(t *testing.T) {
	core, err := engine.OpenCore(context.Background(), storage.Config{Type: "memory"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = core.Close() })
	limiter, err := engine.NewLimiter(core, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = limiter.Close() })
	start := func(types ...string) *engine.Engine {
		t.Helper()
		cfg := engine.Config{DefaultLimit: ratelimit.DefaultLimit, SyncTimeout: patience, MaxBody: 1 << 20,
			Webhooks: engine.WebhooksConfig{Policy: webhook.DefaultPolicy(), Egress: egress.New(egress.Config{})}}
		for _, name := range types {
			action, typ, _ := strings.Cut(name, "/")
			cfg.TaskTypes = append(cfg.TaskTypes, &task.Type{Action: action, Type: typ, Source: "http://127.0.0.1:9/"})
		}
		e, err := engine.New(core, limiter, cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.Start()
		return e
	}
	told := func(want ...string) {
		t.Helper()
		if got := core.Presence.Self().TaskTypes; !slices.Equal(got, want) {
			t.Errorf("the node tells %q, want %q", got, want)
		}
	}
	old := start("verify/pan", "verify/gst")
	told("verify/gst", "verify/pan")
	reloaded := start("verify/aadhaar")
	told("verify/aadhaar")
	ctx := context.Background()
	if !reloaded.Runner.Elsewhere(ctx)("verify/pan") || !old.Runner.Elsewhere(ctx)("verify/aadhaar") || old.Runner.Elsewhere(ctx)("verify/other") {
		t.Error("while two configurations run, one takes the other's task types for orphans, or a type neither runs for run")
	}
	reloaded.Stop()
	told("verify/gst", "verify/pan")
	if old.Runner.Elsewhere(ctx)("verify/aadhaar") {
		t.Error("a type of a configuration stopped is still taken for run")
	}
	old.Stop()
}

// TestConfigRefusesUndefinedTaskTypes: a task type an account names (for
// its access, a quota or a webhook) must be defined by a task_type: a typo
// would otherwise leave a webhook that never fires.
func TestConfigRefusesUndefinedTaskTypes(t *testing.T) {
	typ := &task.Type{Action: "verify", Type: "pan", Source: "http://127.0.0.1:9/"}
	for _, acct := range []*account.Account{
		{ID: "a", TaskTypes: []string{"verify/pann"}},
		{ID: "a", Webhooks: []account.Webhook{{URL: "https://hooks.example.com/", Types: []string{"verify/pann"}}}},
	} {
		cfg := engine.Config{Accounts: []*account.Account{acct}, TaskTypes: []*task.Type{typ}, Webhooks: engine.WebhooksConfig{Policy: webhook.DefaultPolicy()}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "verify/pann") {
			t.Errorf("Validate of %+v = %v; want the undefined type named", acct, err)
		}
	}
	ok := engine.Config{TaskTypes: []*task.Type{typ}, Webhooks: engine.WebhooksConfig{Policy: webhook.DefaultPolicy()},
		Accounts: []*account.Account{{ID: "a", Webhooks: []account.Webhook{{URL: "https://hooks.example.com/", Types: []string{"verify/pan"}}}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate of a webhook of a defined type: %v", err)
	}
}
