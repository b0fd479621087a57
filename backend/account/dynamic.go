package account

import (
	"sync"
	"sync/atomic"
)

// Dynamic holds the dynamic accounts (those of the store), built, so that
// requests find them without a store round trip. It is safe for
// concurrent use; lookups take no lock. Whoever changes a record in the
// store puts the new record here (and tells other nodes to).
type Dynamic struct {
	accounts sync.Map // id → *versioned
	// mu orders Puts, so that an older version never replaces a newer.
	mu sync.Mutex
	// maxKeys is the most keys any account has held: how many comparisons
	// an authentication makes. It only grows.
	maxKeys atomic.Int64
}

type versioned struct {
	account *Account
	version int64
}

// NewDynamic returns an empty set.
func NewDynamic() *Dynamic { return new(Dynamic) }

// Put builds the record and keeps the account, unless the set already
// holds a newer version of it. A record that does not build is kept as a
// disabled account (the error says why): it fails closed.
func (d *Dynamic) Put(r *Record) error {
	a, err := r.Build()
	if err != nil {
		// A newer version that does not build (a record written by
		// another version of taskgate) must not leave an older one in
		// force, whose keys it may have revoked: the account is held
		// disabled until a version that builds comes.
		a = &Account{ID: r.ID, Disabled: true}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.accounts.Load(r.ID); ok && v.(*versioned).version > r.Version {
		return err
	}
	// maxKeys first: a lookup that finds the account compares as many
	// keys as it has.
	if n := int64(len(a.Keys)); n > d.maxKeys.Load() {
		d.maxKeys.Store(n)
	}
	d.accounts.Store(r.ID, &versioned{account: a, version: r.Version})
	return err
}

// Lookup returns the account with the id.
func (d *Dynamic) Lookup(id string) (*Account, bool) {
	v, ok := d.accounts.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*versioned).account, true
}

// Version returns the version of the account held, 0 if none.
func (d *Dynamic) Version(id string) int64 {
	v, ok := d.accounts.Load(id)
	if !ok {
		return 0
	}
	return v.(*versioned).version
}

// Len returns the number of accounts held.
func (d *Dynamic) Len() int {
	n := 0
	d.accounts.Range(func(any, any) bool { n++; return true })
	return n
}
