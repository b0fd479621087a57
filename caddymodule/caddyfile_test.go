package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the golden adapt tests")

// TestCaddyfileAdapt adapts each testdata/caddyfile_adapt/*.txt Caddyfile
// (the part before the ---------- line) and compares the JSON with the part
// after it.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/caddyfile_adapt/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			got := adapt(t, input+"\n")
			if *update {
				if err := os.WriteFile(file, []byte(input+"\n----------\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("adapted JSON differs (run with -update to accept)\n--- got\n%s\n--- want\n%s", got, want)
			}
			// The JSON loads: it round-trips through the app's own types.
			var cfg struct {
				Apps map[string]json.RawMessage `json:"apps"`
			}
			if err := json.Unmarshal([]byte(got), &cfg); err != nil {
				t.Fatal(err)
			}
			if tg, ok := cfg.Apps["taskgate"]; ok {
				var app App
				dec := json.NewDecoder(bytes.NewReader(tg))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&app); err != nil {
					t.Fatalf("taskgate app JSON does not decode: %v", err)
				}
				if again := caddyconfig.JSON(app, nil); !jsonEqual(t, again, tg) {
					t.Errorf("taskgate app JSON does not round-trip:\n%s\n%s", again, tg)
				}
			}
		})
	}
}

func adapt(t *testing.T, input string) string {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestCaddyfileErrorsNameTheLine checks that bad config fails with the
// line of the mistake and a useful message.
func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	const key = "ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22"
	for _, tc := range []struct {
		name, body, line, phrase string
	}{
		{"bad CIDR", "account a {\nkey_sha256 " + key + "\nallow 10.0.0.0/33\n}", ":5", "not a CIDR"},
		{"bad rate", "rate_limit fast", ":3", "want N/s"},
		{"bad account rate", "account a {\nkey_sha256 " + key + "\nrate_limit 0/s\n}", ":5", "positive integer"},
		{"bad burst", "account a {\nkey_sha256 " + key + "\nrate_limit 5/s burst -1\n}", ":5", "burst"},
		{"duplicate account", "account a {\nkey_sha256 " + key + "\n}\naccount a {\nkey_sha256 " + key + "\n}", ":6", "more than once"},
		{"short hash", "account a {\nkey_sha256 abc123\n}", ":4", "64 hex digits"},
		{"no key", "account a {\nrate_limit 5/s\n}", ":3", "no key"},
		{"empty key", "account a {\nkey \"\"\n}", ":4", "key is empty"},
		{"bad id", "account \"a b\" {\n}", ":3", "account id"},
		{"unknown account option", "account a {\nkey_sha256 " + key + "\nfrobnicate\n}", ":5", "unknown option"},
		{"unknown option", "frobnicate 1", ":3", "unknown option"},
		{"bad webhook", "account a {\nkey_sha256 " + key + "\nwebhook /hooks\n}", ":5", "absolute"},
		{"bad secret", "account a {\nkey_sha256 " + key + "\nwebhook http://h/x {\nsecret nope\n}\n}", ":6", "whsec_"},
		{"bad quota", "account a {\nkey_sha256 " + key + "\nquota 10/week\n}", ":5", "day or month"},
		{"zero quota", "account a {\nkey_sha256 " + key + "\nquota 0/day\n}", ":5", "want N/day or N/month"},
		{"bad quota type", "account a {\nkey_sha256 " + key + "\nquota 10/day pan\n}", ":5", "action/type"},
		{"quota twice", "account a {\nkey_sha256 " + key + "\nquota 10/day a/b\nquota 20/day a/b\n}", ":6", "same period and task types"},
		{"sync_timeout twice", "sync_timeout 10s\nsync_timeout 20s", ":4", "taskgate: sync_timeout given more than once"},
		{"source twice", "task_type a/b {\nsource http://127.0.0.1:9/\nsource http://127.0.0.1:8/\n}", ":5", "task_type a/b: source given more than once"},
		{"failure_webhook twice", "account a {\nkey_sha256 " + key + "\nfailure_webhook https://hooks.example.com/a\nfailure_webhook https://hooks.example.com/b\n}", ":6", "account a: failure_webhook given more than once"},
		{"webhook secret twice", "account a {\nkey_sha256 " + key + "\nwebhook https://hooks.example.com {\nsecret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nsecret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n}\n}", ":7", "webhook https://hooks.example.com: secret given more than once"},
		{"webhooks timeout twice", "webhooks {\ntimeout 5s\ntimeout 6s\n}", ":5", "webhooks: timeout given more than once"},
		{"storage option twice", "storage redis redis://127.0.0.1:6379 {\nshards 3\nshards 6\n}", ":5", "storage redis: shards given more than once"},
		{"quota without limit", "account a {\nkey_sha256 " + key + "\nquota\n}", ":5", "wrong argument count"},
		{"bad task type", "account a {\nkey_sha256 " + key + "\ntask_types verify\n}", ":5", "action/type"},
		{"bad storage", "storage floppy", ":3", "want memory"},
		{"bad on_store_error", "on_store_error panic", ":3", "want local, allow or deny"},
		{"on_store_error after nothing", "on_store_error local after", ":3", "wrong argument count"},
		{"on_store_error bad word", "on_store_error local within 1s", ":3", "wrong argument count"},
		{"on_store_error bad after", "on_store_error local after soon", ":3", "on_store_error after"},
		{"on_store_error after too long", "on_store_error local after 2s", ":3", "want from 1ms to 1s"},
		{"on_store_error after zero", "on_store_error local after 0s", ":3", "want from 1ms to 1s"},
		{"bad client_ip", "client_ip leftmost", ":3", "want rightmost_untrusted or caddy"},
		{"bad auth_failures", "auth_failures fast", ":3", "auth_failures: rate"},
		{"bad auth_failures burst", "auth_failures 5/m burst 0", ":3", "auth_failures: burst"},
		{"auth_failures off with a burst", "auth_failures off burst 3", ":3", "wrong argument count"},
		{"auth_failures without a rate", "auth_failures", ":3", "wrong argument count"},
		{"redis without URL", "storage redis", ":3", "redis://"},
		{"bad replicas", "storage redis redis://127.0.0.1:6379 {\nreplicas many\n}", ":4", "number of replicas"},
		{"bad replicas_timeout", "storage redis redis://127.0.0.1:6379 {\nreplicas_timeout 0s\n}", ":4", "positive duration"},
		{"replicas_timeout alone", "storage redis redis://127.0.0.1:6379 {\nreplicas_timeout 2s\n}", ":5", "without replicas"},
		{"bad shards", "storage redis redis://127.0.0.1:6379 {\nshards 0\n}", ":4", "number of shards"},
		{"too many shards", "storage redis redis://127.0.0.1:6379 {\nshards 1000\n}", ":4", "1 to 256"},
		{"replicas of bolt", "storage bolt tg.db {\nreplicas 1\n}", ":4", "takes no block"},
		{"unknown storage option", "storage redis redis://127.0.0.1:6379 {\nwait 1\n}", ":4", "unknown option"},
		{"bad duration", "retention soon", ":3", "duration"},
		{"bad size", "max_body big", ":3", "size"},
		{"bad body_timeout", "body_timeout 0s", ":3", "positive duration"},
		{"bad retry", "webhooks {\nretry 1h 2s 24h\n}", ":4", "max delay"},
		{"webhook to loopback", "account a {\nkey_sha256 " + key + "\nwebhook http://127.0.0.1:2019/stop\n}", ":5", "loopback address"},
		{"webhook to metadata", "account a {\nkey_sha256 " + key + "\nwebhook http://169.254.169.254/ {\ntypes a/b\n}\n}", ":5", "link-local address"},
		{"failure webhook to a private network", "account a {\nkey_sha256 " + key + "\nfailure_webhook http://10.0.0.8/f\n}\nwebhooks {\nallow_private 10.1.0.0/16\n}", ":5", "failure_webhook: destination 10.0.0.8 is not allowed: private address"},
		{"webhook to localhost", "account a {\nkey_sha256 " + key + "\nwebhook http://localhost:9002/\n}", ":5", "loopback"},
		{"bad allow_private", "webhooks {\nallow_private 10.0.0.0/33\n}", ":4", "allow_private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := "{\n\ttaskgate {\n" + tc.body + "\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatal("adapt succeeded, want an error")
			}
			at := regexp.MustCompile(`Caddyfile` + tc.line + `\b`)
			if msg := err.Error(); !at.MatchString(msg) || !strings.Contains(msg, tc.phrase) {
				t.Errorf("error %q: want line %q and %q", msg, "Caddyfile"+tc.line, tc.phrase)
			}
		})
	}
}

// TestCaddyfileStorageReplicas checks that `replicas` and
// `replicas_timeout` reach the app's JSON.
func TestCaddyfileStorageReplicas(t *testing.T) {
	input := "{\n\ttaskgate {\n\t\tstorage redis redis://127.0.0.1:6379 {\n\t\t\treplicas 2\n\t\t\treplicas_timeout 1500ms\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"storage":{"type":"redis","url":"redis://127.0.0.1:6379","replicas":2,"replicas_timeout":1500000000}`) {
		t.Errorf("adapted config lacks the replicas: %s", out)
	}
}

func TestHandlerDirectivesTakeNoArguments(t *testing.T) {
	for _, input := range []string{
		":8080 {\n\tapi_key_auth extra\n}\n",
		":8080 {\n\taccount_rate_limit {\n\t\tfoo\n\t}\n}\n",
	} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil); err == nil {
			t.Errorf("%q: want an error", input)
		}
	}
}

// FuzzCaddyfile feeds arbitrary text to the taskgate option's parser. It
// must never panic, and whatever it accepts must also provision: every
// check of Provision is made, with its line, at parse time.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"rate_limit 30/s",
		"rate_limit 10/m burst 3\nstorage memory",
		"account a {\nkey_sha256 ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22\nallow 10.0.0.0/8 ::1\n}",
		"account a {\nkey k\nrate_limit 1/500ms\ntask_types a/b c/d\nwebhook https://h/x {\nsecret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\ntypes a/b\n}\nfailure_webhook http://h/f\n}",
		"webhooks {\ntimeout 15s\nretry 2s 1h 24h\nproxy http://p:3128\n}",
		"task_type a/b {\nsource http://127.0.0.1:9/x\ntimeout 2s\nconcurrency 4\noutput_key out\n}\naccount a {\nkey k\ntask_types a/b\n}",
		"storage bolt x.db",
		"max_body 4MiB\nretention 7d\nsync_timeout 50s\nbody_timeout 30s",
		"client_ip caddy\nauth_failures 5/m burst 5",
		"auth_failures off",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		// Tokenized here, not by NewTestDispenser, which ends the process
		// on input it cannot tokenize (a bad heredoc, say): Caddy refuses
		// such a file before any option parser sees it.
		tokens, err := caddyfile.Tokenize([]byte("taskgate {\n"+body+"\n}"), "Caddyfile")
		if err != nil {
			return
		}
		d := caddyfile.NewDispenser(tokens)
		app := new(App)
		if err := app.UnmarshalCaddyfile(d); err != nil {
			return
		}
		for i := range app.Accounts {
			for j, k := range app.Accounts[i].Keys {
				if strings.Contains(k, "{") {
					app.Accounts[i].Keys[j] = "placeholder-free"
				}
			}
		}
		if app.Storage != nil && app.Storage.Type == "bolt" {
			app.Storage.Path = filepath.Join(t.TempDir(), "fuzz.db")
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		defer cancel()
		if err := app.Provision(ctx); err != nil {
			if strings.Contains(err.Error(), "not available in this version") {
				return
			}
			t.Fatalf("parsed but does not provision: %v\n%s", err, body)
		}
		_ = app.Cleanup()
	})
}
