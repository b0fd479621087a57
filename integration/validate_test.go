package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// errorMark marks, in the Caddyfiles of TestConfigErrors, the line the
// error must name.
const errorMark = "# <- error"

// TestConfigErrors checks that a bad config fails `taskgate validate` with a
// message that names the file, the line and what is wrong.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		caddyfile string
		// phrase must appear in the output.
		phrase string
		// noLine is set for errors found when the config is provisioned,
		// after adapting: they cannot name a line.
		noLine bool
	}{
		{
			name: "bad CIDR",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
			allow 10.0.0.0/33 # <- error
		}
	}
}`,
			phrase: `allow: network "10.0.0.0/33": not a CIDR or IP address`,
		},
		{
			name: "address with a zone",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
			allow 127.0.0.1/32
			allow fe80::1%eth0 # <- error
		}
	}
}`,
			phrase: "zones are not allowed",
		},
		{
			name: "bad rate",
			caddyfile: `{
	taskgate {
		rate_limit fast # <- error
	}
}`,
			phrase: `rate "fast": want N/s, N/m, N/h, N/d or N/<duration>`,
		},
		{
			name: "zero rate of an account",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
			rate_limit 0/s # <- error
		}
	}
}`,
			phrase: "count must be a positive integer",
		},
		{
			name: "zero burst",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
			rate_limit 10/s burst 0 # <- error
		}
	}
}`,
			phrase: `burst "0" must be a positive integer`,
		},
		{
			name: "duplicate account",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
		}
		account b {
			key key-b
		}
		account a { # <- error
			key key-a2
			rate_limit 10/s
		}
	}
}`,
			phrase: "account a: defined more than once",
		},
		{
			name: "key_sha256 too short",
			caddyfile: `{
	taskgate {
		account a {
			key_sha256 abc123 # <- error
		}
	}
}`,
			phrase: "key_sha256 must be 64 hex digits",
		},
		{
			name: "key_sha256 not hex",
			caddyfile: `{
	taskgate {
		account a {
			key_sha256 ` + strings.Repeat("zz", 32) + ` # <- error
		}
	}
}`,
			phrase: "key_sha256 must be 64 hex digits",
		},
		{
			name: "empty key",
			caddyfile: `{
	taskgate {
		account a {
			key "" # <- error
		}
	}
}`,
			phrase: "account a: key is empty",
		},
		{
			name: "account without key",
			caddyfile: `{
	taskgate {
		account a { # <- error
			allow 127.0.0.1
		}
	}
}`,
			phrase: "account a: no key",
		},
		{
			name: "bad account id",
			caddyfile: `{
	taskgate {
		account "a b" { # <- error
			key key-a
		}
	}
}`,
			phrase: `account id "a b"`,
		},
		{
			name: "unknown account option",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
			colour blue # <- error
		}
	}
}`,
			phrase: `account a: unknown option "colour"`,
		},
		{
			name: "unknown taskgate option",
			caddyfile: `{
	taskgate {
		storage memory
		frobnicate yes # <- error
	}
}`,
			phrase: `taskgate: unknown option "frobnicate"`,
		},
		{
			name: "handler with an argument",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
		}
	}
}

http://127.0.0.1:9 {
	api_key_auth a # <- error
	respond ok
}`,
			phrase: "wrong argument count",
		},
		{
			name: "handler with a block",
			caddyfile: `{
	taskgate {
		account a {
			key key-a
		}
	}
}

http://127.0.0.1:9 {
	api_key_auth
	ip_allowlist {
		allow 10.0.0.0/8 # <- error
	}
	respond ok
}`,
			phrase: "ip_allowlist takes no block",
		},
		{
			name: "key from an unset environment variable",
			caddyfile: `{
	taskgate {
		account a {
			key {env.TG_TEST_SURELY_UNSET_VAR}
		}
	}
}`,
			phrase: "account a: a key is empty (is its environment variable set?)",
			noLine: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "Caddyfile"), tc.caddyfile+"\n")
			out, errOut, code := taskgateCmd(t, dir, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
			all := logText(out + errOut)
			if code == 0 {
				t.Fatalf("validate succeeded, want an error:\n%s", all)
			}
			if !strings.Contains(all, tc.phrase) {
				t.Errorf("output lacks %q:\n%s", tc.phrase, all)
			}
			if tc.noLine {
				return
			}
			line := 0
			for i, l := range strings.Split(tc.caddyfile, "\n") {
				if strings.Contains(l, errorMark) {
					line = i + 1
				}
			}
			if want := fmt.Sprintf("Caddyfile:%d", line); !containsLineRef(all, want) {
				t.Errorf("output does not name %s:\n%s", want, all)
			}
		})
	}

	t.Run("valid config", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "Caddyfile"), fmt.Sprintf(`{
	taskgate {
		rate_limit 100/m burst 10
		account a {
			key_sha256 %s
			key key-a2
			rate_limit 10/s burst 20
			allow 127.0.0.1/32 ::1/128
		}
	}
}

http://127.0.0.1:9 {
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond ok
}
`, sha256Hex("key-a")))
		out, errOut, code := taskgateCmd(t, dir, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
		if code != 0 || !strings.Contains(out+errOut, "Valid configuration") {
			t.Errorf("validate: exit %d, want 0 and \"Valid configuration\":\n%s%s", code, out, errOut)
		}
	})
}

// logText returns out with each JSON log line replaced by its message, so
// that messages can be matched without JSON escaping.
func logText(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var entry struct {
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg != "" {
			line = strings.TrimSpace(entry.Msg + " " + entry.Error)
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// containsLineRef tells whether out names ref ("Caddyfile:7") as a whole,
// not as the start of a longer number ("Caddyfile:71").
func containsLineRef(out, ref string) bool {
	for rest := out; ; {
		i := strings.Index(rest, ref)
		if i < 0 {
			return false
		}
		rest = rest[i+len(ref):]
		if rest == "" || rest[0] < '0' || rest[0] > '9' {
			return true
		}
	}
}
