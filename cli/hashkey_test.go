package cli

import (
	"strings"
	"testing"
)

func TestHashKeyFrom(t *testing.T) {
	for _, in := range []string{"demo-api-key", "demo-api-key\n", "demo-api-key\r\n"} {
		got, err := hashKeyFrom(strings.NewReader(in))
		if err != nil || got != demoKeyHash {
			t.Errorf("hashKeyFrom(%q) = %q, %v; want %s", in, got, err, demoKeyHash)
		}
	}
	for _, in := range []string{"", "\n"} {
		if _, err := hashKeyFrom(strings.NewReader(in)); err == nil {
			t.Errorf("hashKeyFrom(%q): want an error", in)
		}
	}
}

// demoKeyHash is the SHA-256 of the demo Caddyfile's key, "demo-api-key".
const demoKeyHash = "ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22"
