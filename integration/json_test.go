package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestJSONConfig adapts a Caddyfile to JSON with `taskgate adapt`, runs the
// server from the JSON alone and checks that the chain works and that the
// admin API shows the taskgate app's config, with no key in plain text.
func TestJSONConfig(t *testing.T) {
	t.Parallel()
	const (
		envKey = "tg_json_env_key_0d9e61"
		shaKey = "tg_json_sha_key_77a4c3"
	)
	s := newServer(t)
	port := freePort(t)
	c := config{
		Global: fmt.Sprintf(`
taskgate {
	rate_limit 100/m burst 4
	account env {
		key {env.TG_TEST_JSON_KEY}
	}
	account sha {
		key_sha256 %s
		rate_limit 10/s burst 20
		allow 127.0.0.1/32 ::1/128
	}
}`, sha256Hex(shaKey)),
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "json {http.auth.user.id}" 200
}`, port),
	}
	writeFile(t, filepath.Join(s.dir, "Caddyfile"), s.caddyfile(c))
	out, errOut, code := taskgateCmd(t, s.dir, "adapt", "--config", "Caddyfile", "--adapter", "caddyfile")
	if code != 0 {
		t.Fatalf("adapt: exit %d:\n%s", code, errOut)
	}
	if strings.Contains(out, envKey) || strings.Contains(out, shaKey) {
		t.Fatalf("the adapted config holds a key in plain text:\n%s", out)
	}
	var adapted struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &adapted); err != nil {
		t.Fatalf("adapt output is not JSON: %v\n%s", err, out)
	}
	wantApp := map[string]any{
		"rate_limit": "100/m",
		"burst":      float64(4),
		"accounts": []any{
			map[string]any{"id": "env", "keys": []any{"{env.TG_TEST_JSON_KEY}"}},
			map[string]any{
				"id":         "sha",
				"key_sha256": []any{sha256Hex(shaKey)},
				"rate_limit": "10/s",
				"burst":      float64(20),
				"allow":      []any{"127.0.0.1/32", "::1/128"},
			},
		},
	}
	var gotApp map[string]any
	if err := json.Unmarshal(adapted.Apps["taskgate"], &gotApp); err != nil {
		t.Fatalf("apps.taskgate: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(gotApp, wantApp) {
		t.Errorf("adapted apps.taskgate:\n got %v\nwant %v", gotApp, wantApp)
	}

	jsonPath := filepath.Join(s.dir, "taskgate.json")
	writeFile(t, jsonPath, out)
	s.startFile(jsonPath, "", "TG_TEST_JSON_KEY="+envKey)

	t.Run("chain", func(t *testing.T) {
		u := siteURL(port, "/v3/tasks")
		wantError(t, s.get(t, u, nil), http.StatusUnauthorized, "MISSING_CREDENTIALS")
		wantError(t, s.get(t, u, creds("env", "{env.TG_TEST_JSON_KEY}")), http.StatusForbidden, "INVALID_CREDENTIALS")
		wantError(t, s.get(t, u, creds("sha", envKey)), http.StatusForbidden, "INVALID_CREDENTIALS")
		r := s.get(t, u, creds("env", envKey))
		wantOK(t, r, "json env")
		if got := r.header.Get("RateLimit-Policy"); got != `"default";q=4;w=3` {
			t.Errorf("env: RateLimit-Policy %q, want the global rate's \"default\";q=4;w=3", got)
		}
		r = s.get(t, u, creds("sha", shaKey))
		wantOK(t, r, "json sha")
		if got := r.header.Get("RateLimit-Policy"); got != `"default";q=20;w=2` {
			t.Errorf("sha: RateLimit-Policy %q, want \"default\";q=20;w=2", got)
		}
	})

	t.Run("admin API", func(t *testing.T) {
		r := s.get(t, "http://"+s.adminAddr+"/config/apps/taskgate", nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET /config/apps/taskgate: %d %s", r.status, r.body)
		}
		var served map[string]any
		if err := json.Unmarshal(r.body, &served); err != nil {
			t.Fatalf("GET /config/apps/taskgate: %v\n%s", err, r.body)
		}
		if !reflect.DeepEqual(served, wantApp) {
			t.Errorf("GET /config/apps/taskgate:\n got %v\nwant %v", served, wantApp)
		}
		r = s.get(t, "http://"+s.adminAddr+"/config/apps/taskgate/accounts/1/id", nil)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `"sha"` {
			t.Errorf("GET /config/apps/taskgate/accounts/1/id: %d %s, want \"sha\"", r.status, r.body)
		}
		all := s.get(t, "http://"+s.adminAddr+"/config/", nil)
		if strings.Contains(string(all.body), envKey) || strings.Contains(string(all.body), shaKey) {
			t.Errorf("GET /config/ shows a key in plain text")
		}
	})
}
