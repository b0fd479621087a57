package account

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// ErrInvalidCredentials is the one answer to every failed authentication:
// unknown account, wrong, expired or revoked key, disabled account.
var ErrInvalidCredentials = errors.New("invalid credentials")

// Registry finds accounts by id and authenticates their keys: the static
// accounts of one configuration, then the dynamic accounts (shared by
// configurations). Lookups take no lock.
type Registry struct {
	accounts map[string]*Account
	dynamic  *Dynamic
	now      clock.Clock
	// decoy stands in for the keys of an unknown account, so that an
	// unknown account costs the same work as a wrong key.
	decoy []Key
	// compares is how many key comparisons every authentication makes:
	// the most keys any account holds.
	compares int
}

// NewRegistry builds a registry of static accounts and, when dynamic is
// not nil, the dynamic ones, which a static account's id hides. now is
// the clock for key expiry (time.Now if nil). Static ids must be unique.
func NewRegistry(c RegistryConfig) (*Registry, error) {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	r := &Registry{
		accounts: make(map[string]*Account, len(c.Static)),
		dynamic:  c.Dynamic,
		now:      c.Clock,
		decoy:    []Key{{Hash: sha256.Sum256([]byte("taskgate decoy key"))}},
	}
	for _, a := range c.Static {
		if err := a.Validate(); err != nil {
			return nil, err
		}
		if _, dup := r.accounts[a.ID]; dup {
			return nil, fmt.Errorf("account %s: defined more than once", a.ID)
		}
		r.accounts[a.ID] = a
		r.compares = max(r.compares, len(a.Keys))
	}
	r.compares = max(r.compares, 1)
	return r, nil
}

// Lookup returns the account with the given id.
func (r *Registry) Lookup(id string) (*Account, bool) {
	if a, ok := r.accounts[id]; ok || r.dynamic == nil {
		return a, ok
	}
	return r.dynamic.Lookup(id)
}

// LookupStatic returns the static account with the given id.
func (r *Registry) LookupStatic(id string) (*Account, bool) {
	a, ok := r.accounts[id]
	return a, ok
}

// Static returns the static accounts, in no order.
func (r *Registry) Static() []*Account {
	out := make([]*Account, 0, len(r.accounts))
	for _, a := range r.accounts {
		out = append(out, a)
	}
	return out
}

// Authenticate returns the account when key is one of its live keys, and
// ErrInvalidCredentials otherwise. It hashes the key once and compares the
// hash with every key of the account (or with a decoy when the account is
// unknown) in constant time, so the answer's timing does not tell which of
// the account and the key was wrong.
func (r *Registry) Authenticate(id, key string) (*Account, error) {
	// Hashing from a stack buffer: []byte(key) would allocate for keys
	// longer than 32 bytes.
	var buf [128]byte
	sum := sha256.Sum256(append(buf[:0], key...))
	a, known := r.Lookup(id)
	keys := r.decoy
	if known && len(a.Keys) > 0 {
		keys = a.Keys
	}
	now := r.now()
	match := 0
	// The same number of comparisons whatever the account, cycling over
	// its keys: the time does not tell how many keys it has, nor whether
	// it exists.
	compares := r.compares
	if r.dynamic != nil {
		compares = max(compares, int(r.dynamic.maxKeys.Load()))
	}
	for i := range compares {
		k := &keys[i%len(keys)]
		eq := subtle.ConstantTimeCompare(sum[:], k.Hash[:])
		live := 1
		if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
			live = 0
		}
		match |= eq & live
	}
	if !known || len(a.Keys) == 0 || match == 0 || a.Disabled {
		return nil, ErrInvalidCredentials
	}
	return a, nil
}

// RegistryConfig is what a Registry is made of.
type RegistryConfig struct {
	// Static are the configuration's accounts; they hide dynamic ones of
	// the same id.
	Static []*Account
	// Dynamic, when set, holds the store's accounts.
	Dynamic *Dynamic
	// Clock tells the time, for keys that expire (the system's if nil).
	Clock clock.Clock
}
