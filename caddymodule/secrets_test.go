package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskgate/taskgate/backend/account"
)

func TestLiteralSecret(t *testing.T) {
	for v, want := range map[string]bool{
		"":                                  false,
		"{env.HOOK_SECRET}":                 false,
		"{file./run/secrets/hook}":          false,
		"Bearer {env.RECEIVER_TOKEN}":       false,
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2L": true,
		"Bearer s3cret":                     true,
		"{vars.secret}":                     true,
		"{env.}":                            true,
	} {
		if got := literalSecret(v); got != want {
			t.Errorf("literalSecret(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestSecretPlaceholders checks that a static account's key and its
// webhooks' secret and authorization may come from the environment or
// from a file, a trailing newline removed.
func TestSecretPlaceholders(t *testing.T) {
	dir := t.TempDir()
	secretFile, keyFile := filepath.Join(dir, "hook-secret"), filepath.Join(dir, "key")
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("key-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TG_TEST_RECEIVER_TOKEN", "token-from-env")
	c := AccountConfig{
		ID:   "acme",
		Keys: []string{"{file." + keyFile + "}"},
		Webhooks: []WebhookConfig{{
			URL:           "https://hooks.example.com/tasks",
			Secret:        "{file." + secretFile + "}",
			Authorization: "Bearer {env.TG_TEST_RECEIVER_TOKEN}",
		}},
	}
	acct, err := c.build(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if got := acct.Webhooks[0].Secret; got != secret {
		t.Errorf("secret %q, want the file's %q", got, secret)
	}
	if got := acct.Webhooks[0].Authorization; got != "Bearer token-from-env" {
		t.Errorf("authorization %q, want the environment's", got)
	}
	if len(acct.Keys) != 1 || acct.Keys[0].Hash != account.HashKey("key-from-file") {
		t.Errorf("the key is not the file's")
	}

	// A file that is not there is an empty secret: the account is refused.
	c.Webhooks[0].Secret = "{file." + filepath.Join(dir, "missing") + "}"
	if _, err := c.build(caddy.NewReplacer()); err == nil {
		t.Error("a secret from a missing file was accepted")
	}
}

func TestWarnLiteralSecrets(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	app := &App{logger: zap.New(core), Accounts: []AccountConfig{
		{ID: "literal", Keys: []string{"plain-key"}, Webhooks: []WebhookConfig{{URL: "https://h.example/a", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Authorization: "Bearer s3cret"}}},
		{ID: "placeholders", Keys: []string{"{env.KEY}"}, KeySHA256: []string{demoKeyHash}, Webhooks: []WebhookConfig{{URL: "https://h.example/b", Secret: "{env.SECRET}", Authorization: "Bearer {file./run/token}"}}},
	}}
	app.warnLiteralSecrets()
	var got []string
	for _, e := range logs.All() {
		f := e.ContextMap()
		got = append(got, f["account_id"].(string)+" "+f["option"].(string))
		if f["option"] != "key" && (f["webhook_host"] != "h.example" || f["webhook_index"] != int64(0)) {
			t.Errorf("warning does not name the webhook: %v", f)
		}
	}
	want := []string{"literal key", "literal secret", "literal authorization"}
	if len(got) != len(want) {
		t.Fatalf("warnings %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("warnings %v, want %v", got, want)
		}
	}
}

// TestStoragePlaceholders: the bolt file and the Redis URL are read with
// their placeholders replaced, as systemd's {env.STATE_DIRECTORY} asks.
func TestStoragePlaceholders(t *testing.T) {
	t.Setenv("TG_TEST_STATE", "/var/lib/taskgate")
	t.Setenv("TG_TEST_REDIS", "redis://127.0.0.1:6379/2")
	if got := (&App{Storage: &StorageConfig{Type: "bolt", Path: "{env.TG_TEST_STATE}/tg.db"}}).storageConfig().Path; got != "/var/lib/taskgate/tg.db" {
		t.Errorf("bolt path %q, want /var/lib/taskgate/tg.db", got)
	}
	if got := (&App{Storage: &StorageConfig{Type: "redis", URL: "{env.TG_TEST_REDIS}"}}).storageConfig().URL; got != "redis://127.0.0.1:6379/2" {
		t.Errorf("redis URL %q, want redis://127.0.0.1:6379/2", got)
	}
}
