package caddymodule

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/taskgate/taskgate/backend/endpoints"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestAppLeavesNoGoroutines starts and stops the app (workers, dispatcher,
// stores) a few times, then checks that every goroutine it started ended.
func TestAppLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	before := runtime.NumGoroutine()
	for _, storage := range []*StorageConfig{{Type: "memory"}, {Type: "bolt", Path: t.TempDir() + "/tg.db"}, {Type: "redis", URL: srv.URL()}} {
		for range 3 {
			app := &App{
				Storage:   storage,
				Accounts:  []AccountConfig{{ID: "a", Keys: []string{"k"}, Webhooks: []WebhookConfig{{URL: "http://127.0.0.1:9/hooks"}}}},
				Webhooks:  &WebhooksConfig{AllowPrivate: []string{"127.0.0.1/32"}},
				TaskTypes: []TaskTypeConfig{{Name: "verify/pan", Source: "http://127.0.0.1:9/pan"}},
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			if err := app.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			if err := app.Start(); err != nil {
				t.Fatal(err)
			}
			if err := app.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := app.Cleanup(); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	// Goroutines end a moment after they are told to: wait, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

// TestCleanupAfterFailedProvision cleans up an app whose Provision failed
// half-way.
func TestCleanupAfterFailedProvision(t *testing.T) {
	app := &App{TaskTypes: []TaskTypeConfig{{Name: "verify/pan", Source: "ftp://nowhere"}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := app.Provision(ctx); err == nil {
		t.Fatal("Provision accepted an ftp source")
	}
	if err := app.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// TestWebhooksDisableAfter checks the default of disable_after, with a
// webhooks block and without one, and its off.
func TestWebhooksDisableAfter(t *testing.T) {
	for _, tc := range []struct {
		c    *WebhooksConfig
		want time.Duration
	}{
		{nil, endpoints.DefaultDisableAfter},
		{&WebhooksConfig{}, endpoints.DefaultDisableAfter},
		{&WebhooksConfig{DisableAfter: "36h"}, 36 * time.Hour},
		{&WebhooksConfig{DisableAfter: "off"}, 0},
	} {
		got, err := tc.c.build(nil)
		if err != nil || got.DisableAfter != tc.want {
			t.Errorf("%+v: DisableAfter %s, %v; want %s", tc.c, got.DisableAfter, err, tc.want)
		}
	}
	if _, err := (&WebhooksConfig{DisableAfter: "soon"}).build(nil); err == nil {
		t.Error("disable_after soon: want an error")
	}
}
