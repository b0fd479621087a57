package account

import (
	"encoding/hex"
	"errors"
	"testing"
)

func record(id string, version int64, keys ...string) *Record {
	r := &Record{ID: id, Version: version}
	for i, k := range keys {
		sum := HashKey(k)
		r.Keys = append(r.Keys, KeyRecord{ID: "key_" + string(rune('a'+i)), SHA256: hex.EncodeToString(sum[:])})
	}
	return r
}

func TestDynamicPutKeepsTheNewest(t *testing.T) {
	d := NewDynamic()
	if err := d.Put(record("acme", 2, "k2")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(record("acme", 1, "k1")); err != nil {
		t.Fatal(err)
	}
	if got := d.Version("acme"); got != 2 {
		t.Fatalf("version = %d, want 2 (an older record must not replace a newer)", got)
	}
	bad := record("acme", 3)
	bad.Allow = []string{"not-a-cidr"}
	if err := d.Put(bad); err == nil {
		t.Fatal("Put of a record that does not build: want an error")
	}
	// It fails closed: held disabled at its version, not the older one
	// (whose keys it may have revoked) kept in force.
	if a, ok := d.Lookup("acme"); !ok || !a.Disabled || len(a.Keys) != 0 || d.Version("acme") != 3 {
		t.Fatalf("after a record that does not build: %+v v%d, want disabled at version 3", a, d.Version("acme"))
	}
	if _, ok := d.Lookup("nobody"); ok || d.Version("nobody") != 0 {
		t.Fatal("Lookup of an unknown id found something")
	}
}

func TestRegistryWithDynamicAccounts(t *testing.T) {
	d := NewDynamic()
	static := mustAccount(t, "static", "static-key")
	r, err := NewRegistry(RegistryConfig{Static: []*Account{static}, Dynamic: d})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("acme", "k1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("before Put: %v, want ErrInvalidCredentials", err)
	}
	// Three keys: more than any static account holds.
	if err := d.Put(record("acme", 1, "k1", "k2", "k3")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if a, err := r.Authenticate("acme", k); err != nil || a.ID != "acme" {
			t.Fatalf("Authenticate(acme, %s) = %v, %v", k, a, err)
		}
	}
	// A revocation is a new version without the key.
	if err := d.Put(record("acme", 2, "k2")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("acme", "k1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("revoked key: %v, want ErrInvalidCredentials", err)
	}
	disabled := record("acme", 3, "k2")
	disabled.Disabled = true
	if err := d.Put(disabled); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("acme", "k2"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("disabled account: %v, want ErrInvalidCredentials", err)
	}
	// A static account hides a dynamic one of the same id.
	if err := d.Put(record("static", 1, "dynamic-key")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate("static", "dynamic-key"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("dynamic account behind a static id: %v, want ErrInvalidCredentials", err)
	}
	if a, ok := r.Lookup("static"); !ok || a != static {
		t.Fatalf("Lookup(static) = %+v, %v", a, ok)
	}
}
