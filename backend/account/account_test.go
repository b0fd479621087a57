package account

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func mustAccount(t *testing.T, id string, keys ...string) *Account {
	t.Helper()
	a := &Account{ID: id}
	for _, k := range keys {
		a.Keys = append(a.Keys, Key{Hash: HashKey(k)})
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	rotating := mustAccount(t, "rotating", "old-key", "new-key")
	rotating.Keys[0].ExpiresAt = now.Add(time.Hour)
	expired := mustAccount(t, "expired", "gone-key", "live-key")
	expired.Keys[0].ExpiresAt = now
	disabled := mustAccount(t, "disabled", "key")
	disabled.Disabled = true
	keyless := mustAccount(t, "keyless")
	r, err := NewRegistry(RegistryConfig{Static: []*Account{mustAccount(t, "acme", "acme-key"), rotating, expired, disabled, keyless}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, key string
		ok      bool
	}{
		{"acme", "acme-key", true},
		{"acme", "acme-key ", false},
		{"acme", "", false},
		{"acme", "old-key", false},
		{"ACME", "acme-key", false},
		{"nobody", "acme-key", false},
		{"rotating", "old-key", true},
		{"rotating", "new-key", true},
		{"expired", "gone-key", false},
		{"expired", "live-key", true},
		{"disabled", "key", false},
		{"keyless", "", false},
		{"keyless", "taskgate decoy key", false},
		{"nobody", "taskgate decoy key", false},
	} {
		a, err := r.Authenticate(tc.id, tc.key)
		if tc.ok && (err != nil || a.ID != tc.id) {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want the account", tc.id, tc.key, a, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want ErrInvalidCredentials", tc.id, tc.key, a, err)
		}
	}
}

func TestNewRegistryRefusesDuplicatesAndBadAccounts(t *testing.T) {
	if _, err := NewRegistry(RegistryConfig{Static: []*Account{mustAccount(t, "a", "k"), mustAccount(t, "a", "k2")}}); err == nil {
		t.Error("duplicate ids: want an error")
	}
	if _, err := NewRegistry(RegistryConfig{Static: []*Account{mustAccount(t, "bad id", "k")}}); err == nil {
		t.Error("bad id: want an error")
	}
	twice := mustAccount(t, "a", "k")
	twice.Webhooks = []Webhook{{URL: "https://h.example/x"}, {URL: "https://h.example/x", Types: []string{"a/b"}}}
	if _, err := NewRegistry(RegistryConfig{Static: []*Account{twice}}); err == nil {
		t.Error("two webhooks with one URL: want an error")
	}
	bad := mustAccount(t, "a", "k")
	bad.Webhooks = []Webhook{{URL: "ftp://example.com"}}
	if _, err := NewRegistry(RegistryConfig{Static: []*Account{bad}}); err == nil {
		t.Error("bad webhook: want an error")
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "demo", "Acme_Corp-1.eu", "0"} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "a/b", "ä", string(make([]byte, 65))} {
		if err := ValidateID(bad); err == nil {
			t.Errorf("ValidateID(%q): want an error", bad)
		}
	}
}

func TestParseKeyHash(t *testing.T) {
	sum := HashKey("demo-api-key")
	h, err := ParseKeyHash(hex.EncodeToString(sum[:]))
	if err != nil || h != sum {
		t.Fatalf("ParseKeyHash round trip: %x, %v", h, err)
	}
	if hex.EncodeToString(sum[:]) != "ca6f2e39b2ff141859b18bb5283aadd5093c8ede2869f3656231a054e54bfc22" {
		t.Fatalf("HashKey is not SHA-256")
	}
	for _, bad := range []string{"", "abc", hex.EncodeToString(sum[:])[:63] + "g", hex.EncodeToString(sum[:]) + "00"} {
		if _, err := ParseKeyHash(bad); err == nil {
			t.Errorf("ParseKeyHash(%q): want an error", bad)
		}
	}
}

func TestWebhookValidation(t *testing.T) {
	good := Webhook{URL: "https://hooks.example.com/x", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Types: []string{"verify/pan"}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []Webhook{
		{URL: "/relative"},
		{URL: "mailto:a@example.com"},
		{URL: "https://"},
		{URL: "https://h/x", Types: []string{"noslash"}},
	} {
		if err := w.Validate(); err == nil {
			t.Errorf("%+v: want an error", w)
		}
	}
}

func TestMayUse(t *testing.T) {
	all := &Account{ID: "a"}
	some := &Account{ID: "b", TaskTypes: []string{"verify/pan"}}
	if !all.MayUse("x/y") || !some.MayUse("verify/pan") || some.MayUse("verify/aadhaar") {
		t.Fatal("MayUse gave a wrong answer")
	}
}

func TestValidateWebhookURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://hooks.example/x":         true,
		"http://127.0.0.1:9002/hooks":     true,
		"https://user:pass@hooks.example": false,
		"https://token@hooks.example/x":   false,
		"ftp://hooks.example/x":           false,
		"/hooks":                          false,
		"https://":                        false,
	} {
		err := ValidateWebhookURL(u)
		if (err == nil) != ok {
			t.Errorf("ValidateWebhookURL(%q) = %v, want ok %v", u, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "pass") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
