package account_test

import (
	"errors"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
)

// BenchmarkAuthenticate measures one authentication. A hit, a wrong key and
// an unknown account should cost the same: one SHA-256 of the presented key
// and constant-time comparisons.
func BenchmarkAuthenticate(b *testing.B) {
	// 43 characters: the base64 of 32 random bytes, a typical API key.
	const key = "q3Vx0mJb9yN1c2Lr7dKp4sT8wZfHaE6uGiOoBnYlXvM"
	acct := &account.Account{
		ID:   "acme",
		Keys: []account.Key{{Hash: account.HashKey(key)}},
	}
	reg, err := account.NewRegistry(account.RegistryConfig{Static: []*account.Account{acct}})
	if err != nil {
		b.Fatal(err)
	}

	cases := []struct {
		name, id, key string
		want          error
	}{
		{"hit", "acme", key, nil},
		{"miss_wrong_key", "acme", key[:len(key)-1] + "x", account.ErrInvalidCredentials},
		{"miss_unknown_account", "nobody", key, account.ErrInvalidCredentials},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := reg.Authenticate(c.id, c.key); !errors.Is(err, c.want) {
				b.Fatalf("Authenticate(%q) = %v, want %v", c.id, err, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = reg.Authenticate(c.id, c.key)
			}
		})
	}
}
