// Package accounttest is the conformance suite of account.Store. Every
// store implementation runs it from its own tests and passes it unchanged,
// so the admin API and the registry can rely on one contract whatever the
// storage.
package accounttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
)

// The accounts the suite works with, chosen so that a store which keys
// records by a prefix of the id would mix them up.
const (
	accountA = "acme"
	accountB = "acme.eu"
	accountC = "acm"
)

// base is the suite's "now": nanoseconds and a zone other than UTC, so a
// store that loses either is caught.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.FixedZone("IST", 5*3600+30*60))

// Store is what RunDurable tests: an account store that can be closed and
// opened again.
type Store interface {
	account.Store
	io.Closer
}

// Run tests the contract of account.Store on stores made by open, a new
// empty one for every subtest. The subtests run in parallel; open should
// register the store's Close with t.Cleanup. When the store is an
// io.Closer, Run also checks that it refuses calls once closed.
func Run(t *testing.T, open func(t *testing.T) account.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s account.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"CreateCanceled", testCreateCanceled},
		{"NotFound", testNotFound},
		{"Accounts", testAccounts},
		{"Update", testUpdate},
		{"UpdateChangeFails", testUpdateChangeFails},
		{"Copies", testCopies},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// RunDurable tests that a persistent store keeps its records across Close
// and a new open of the same directory, updates included. open is called
// more than once with the same dir; it should register each store's Close
// with t.Cleanup.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) Store) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	a, b := newRecord(accountA), newRecord(accountB)
	mustCreate(t, s, a, b)
	updated := mustUpdate(t, s, accountA, func(r *account.Record) error {
		r.Allow = append(r.Allow, "192.0.2.0/24")
		r.Keys = r.Keys[1:]
		r.UpdatedAt = base.Add(time.Hour)
		return nil
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	sameRecord(t, mustGet(t, s, accountA), updated)
	sameRecord(t, mustGet(t, s, accountB), b)
	wantAccounts(t, s, updated, b)
	again := mustUpdate(t, s, accountA, func(r *account.Record) error {
		r.Disabled = true
		return nil
	})
	if again.Version != 3 {
		t.Errorf("Version after a second update across a reopen = %d, want 3", again.Version)
	}
	c := newRecord(accountC)
	mustCreate(t, s, c)
	if err := s.CreateAccount(ctx, newRecord(accountB)); !errors.Is(err, account.ErrExists) {
		t.Errorf("CreateAccount of an id stored before the reopen: err = %v, want ErrExists", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	wantAccounts(t, s, c, again, b)
}

func testCreateGet(t *testing.T, s account.Store) {
	full := newRecord(accountA)
	bare := &account.Record{ID: accountB, CreatedAt: base, UpdatedAt: base, Version: 1}
	mustCreate(t, s, full, bare)
	sameRecord(t, mustGet(t, s, accountA), full)
	sameRecord(t, mustGet(t, s, accountB), bare)
}

func testCreateExisting(t *testing.T, s account.Store) {
	ctx := t.Context()
	r := newRecord(accountA)
	mustCreate(t, s, r)
	again := newRecord(accountA)
	again.Name = "Other"
	again.Keys = nil
	if err := s.CreateAccount(ctx, again); !errors.Is(err, account.ErrExists) {
		t.Fatalf("CreateAccount of a stored id: err = %v, want ErrExists", err)
	}
	sameRecord(t, mustGet(t, s, accountA), r)
	wantAccounts(t, s, r)
}

func testCreateCanceled(t *testing.T, s account.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.CreateAccount(ctx, newRecord(accountA)); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateAccount with a canceled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Account(t.Context(), accountA); !errors.Is(err, account.ErrNotFound) {
		t.Errorf("Account after a canceled CreateAccount: err = %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, s account.Store) {
	ctx := t.Context()
	mustCreate(t, s, newRecord(accountA))
	for _, id := range []string{accountB, accountC, "unknown"} {
		if r, err := s.Account(ctx, id); !errors.Is(err, account.ErrNotFound) {
			t.Errorf("Account(%q) = %v, %v; want ErrNotFound", id, r, err)
		}
		called := false
		r, err := s.UpdateAccount(ctx, id, func(*account.Record) error {
			called = true
			return nil
		})
		if !errors.Is(err, account.ErrNotFound) {
			t.Errorf("UpdateAccount(%q) = %v, %v; want ErrNotFound", id, r, err)
		}
		if called {
			t.Errorf("UpdateAccount(%q) called change for an unknown id", id)
		}
	}
	wantAccounts(t, s, newRecord(accountA))
}

func testAccounts(t *testing.T, s account.Store) {
	got, err := s.Accounts(t.Context())
	if err != nil {
		t.Fatalf("Accounts of an empty store: %v", err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("Accounts of an empty store = %#v, want an empty, non-nil slice", got)
	}
	// Created out of order; listed by id.
	b, c, a := newRecord(accountB), newRecord(accountC), newRecord(accountA)
	a.Name = "Acme"
	mustCreate(t, s, b, c, a)
	wantAccounts(t, s, c, a, b)
}

func testUpdate(t *testing.T, s account.Store) {
	ctx := t.Context()
	r := newRecord(accountA)
	other := newRecord(accountB)
	mustCreate(t, s, r, other)

	want := r.Clone()
	want.Name = "Acme Renamed"
	want.Allow = append(want.Allow, "2001:db8::/32")
	want.Webhooks = append(want.Webhooks, account.WebhookRecord{URL: "https://hooks.example/second"})
	expires := base.Add(48 * time.Hour)
	want.Keys = append(want.Keys, account.KeyRecord{ID: "key_3", Prefix: "tg_Zz9y", SHA256: hash('c'), CreatedAt: base.Add(time.Minute), ExpiresAt: &expires})
	want.UpdatedAt = base.Add(time.Hour)
	var given *account.Record
	got, err := s.UpdateAccount(ctx, accountA, func(c *account.Record) error {
		given = c.Clone()
		c.Name = want.Name
		c.Allow = append(c.Allow, "2001:db8::/32")
		c.Webhooks = append(c.Webhooks, account.WebhookRecord{URL: "https://hooks.example/second"})
		e := expires
		c.Keys = append(c.Keys, account.KeyRecord{ID: "key_3", Prefix: "tg_Zz9y", SHA256: hash('c'), CreatedAt: base.Add(time.Minute), ExpiresAt: &e})
		c.UpdatedAt = want.UpdatedAt
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateAccount: %v", err)
	}
	sameRecord(t, given, r)
	want.Version = 2
	sameRecord(t, got, want)
	sameRecord(t, mustGet(t, s, accountA), want)

	// A change that changes nothing still counts as a version.
	want.Version = 3
	sameRecord(t, mustUpdate(t, s, accountA, func(*account.Record) error { return nil }), want)
	sameRecord(t, mustGet(t, s, accountA), want)
	sameRecord(t, mustGet(t, s, accountB), other)
	wantAccounts(t, s, want, other)
}

func testUpdateChangeFails(t *testing.T, s account.Store) {
	ctx := t.Context()
	r := newRecord(accountA)
	mustCreate(t, s, r)
	refused := errors.New("refused by the change")
	got, err := s.UpdateAccount(ctx, accountA, func(c *account.Record) error {
		c.Name = "Changed"
		c.Allow[0] = "0.0.0.0/0"
		c.Keys = nil
		c.Disabled = true
		return fmt.Errorf("wrapped: %w", refused)
	})
	if !errors.Is(err, refused) {
		t.Fatalf("UpdateAccount with a failing change = %v, %v; want the change's error", got, err)
	}
	sameRecord(t, mustGet(t, s, accountA), r)

	// The failed change cost no version.
	want := r.Clone()
	want.Version = 2
	sameRecord(t, mustUpdate(t, s, accountA, func(*account.Record) error { return nil }), want)
}

// testCopies checks that the store shares no memory with its callers.
func testCopies(t *testing.T, s account.Store) {
	ctx := t.Context()
	r := newRecord(accountA)
	want := r.Clone()
	mustCreate(t, s, r)
	scribble(r)
	sameRecord(t, mustGet(t, s, accountA), want)

	scribble(mustGet(t, s, accountA))
	sameRecord(t, mustGet(t, s, accountA), want)

	list, err := s.Accounts(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("Accounts = %d records, %v; want 1", len(list), err)
	}
	scribble(list[0])
	sameRecord(t, mustGet(t, s, accountA), want)

	var seen *account.Record
	got := mustUpdate(t, s, accountA, func(c *account.Record) error {
		seen = c
		return nil
	})
	want.Version = 2
	scribble(seen)
	scribble(got)
	sameRecord(t, mustGet(t, s, accountA), want)
}

// testUpdateConcurrent checks that concurrent updates of one record are
// atomic: none is lost.
func testUpdateConcurrent(t *testing.T, s account.Store) {
	ctx := t.Context()
	const updaters, perUpdater = 16, 5
	r := newRecord(accountA)
	r.Allow = nil
	mustCreate(t, s, r, newRecord(accountB))
	var wg sync.WaitGroup
	for u := range updaters {
		wg.Go(func() {
			for i := range perUpdater {
				cidr := fmt.Sprintf("10.%d.%d.0/24", u, i)
				if _, err := s.UpdateAccount(ctx, accountA, func(c *account.Record) error {
					c.Allow = append(c.Allow, cidr)
					return nil
				}); err != nil {
					t.Errorf("UpdateAccount: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := mustGet(t, s, accountA)
	if want := int64(1 + updaters*perUpdater); got.Version != want {
		t.Errorf("Version after %d updates = %d, want %d", updaters*perUpdater, got.Version, want)
	}
	seen := make(map[string]int)
	for _, cidr := range got.Allow {
		seen[cidr]++
	}
	for u := range updaters {
		for i := range perUpdater {
			if cidr := fmt.Sprintf("10.%d.%d.0/24", u, i); seen[cidr] != 1 {
				t.Errorf("Allow holds %s %d times, want once", cidr, seen[cidr])
			}
		}
	}
	if len(got.Allow) != updaters*perUpdater {
		t.Errorf("Allow has %d entries, want %d", len(got.Allow), updaters*perUpdater)
	}
}

// testClose checks that a store which can be closed refuses every call
// once closed.
func testClose(t *testing.T, s account.Store) {
	closer, ok := s.(io.Closer)
	if !ok {
		t.Skip("the store has no Close")
	}
	ctx := t.Context()
	mustCreate(t, s, newRecord(accountA))
	if err := closer.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.CreateAccount(ctx, newRecord(accountB)); err == nil {
		t.Errorf("CreateAccount after Close succeeded, want an error")
	}
	if _, err := s.Account(ctx, accountA); err == nil {
		t.Errorf("Account after Close succeeded, want an error")
	}
	if _, err := s.Accounts(ctx); err == nil {
		t.Errorf("Accounts after Close succeeded, want an error")
	}
	if _, err := s.UpdateAccount(ctx, accountA, func(*account.Record) error { return nil }); err == nil {
		t.Errorf("UpdateAccount after Close succeeded, want an error")
	}
}

// newRecord returns a record with every field set: two keys, one expiring,
// and two webhooks, one limited to task types.
func newRecord(id string) *account.Record {
	expires := base.Add(30 * 24 * time.Hour)
	return &account.Record{
		ID:             id,
		Name:           "Account " + id,
		RateLimit:      "30/s",
		Burst:          60,
		Allow:          []string{"203.0.113.0/24", "198.51.100.7"},
		TaskTypes:      []string{"verify_with_source/ind_pan", "verify_with_source/ind_gst"},
		FailureWebhook: "https://hooks.example/failures",
		Quotas: []account.QuotaRecord{
			{Limit: 1000, Period: "day"},
			{Limit: 10000, Period: "month", TaskTypes: []string{"verify_with_source/ind_pan"}},
		},
		Webhooks: []account.WebhookRecord{
			{URL: "https://hooks.example/all", Secret: "whsec_c2VjcmV0", Authorization: "Bearer t0ken"},
			{URL: "https://hooks.example/pan", Types: []string{"verify_with_source/ind_pan"}},
		},
		Keys: []account.KeyRecord{
			{ID: "key_1", Prefix: "tg_Ab3x", SHA256: hash('a'), CreatedAt: base},
			{ID: "key_2", Prefix: "tg_Qq7r", SHA256: hash('b'), CreatedAt: base.Add(time.Second), ExpiresAt: &expires},
		},
		CreatedAt: base,
		UpdatedAt: base.Add(time.Millisecond),
		Version:   1,
	}
}

// hash returns a well-formed hex SHA-256 made of one digit.
func hash(digit byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = digit
	}
	return string(b)
}

// scribble changes every part of r that a store might share with it.
func scribble(r *account.Record) {
	r.Name = "scribbled"
	r.Version = 99
	r.CreatedAt = r.CreatedAt.Add(time.Hour)
	for i := range r.Allow {
		r.Allow[i] = "0.0.0.0/0"
	}
	for i := range r.TaskTypes {
		r.TaskTypes[i] = "scribbled/type"
	}
	for i := range r.Webhooks {
		r.Webhooks[i].URL = "https://scribbled.example"
		for j := range r.Webhooks[i].Types {
			r.Webhooks[i].Types[j] = "scribbled/type"
		}
	}
	for i := range r.Keys {
		r.Keys[i].SHA256 = hash('f')
		if r.Keys[i].ExpiresAt != nil {
			*r.Keys[i].ExpiresAt = r.Keys[i].ExpiresAt.Add(time.Hour)
		}
	}
}

func mustCreate(t *testing.T, s account.Store, records ...*account.Record) {
	t.Helper()
	for _, r := range records {
		if err := s.CreateAccount(t.Context(), r); err != nil {
			t.Fatalf("CreateAccount %s: %v", r.ID, err)
		}
	}
}

func mustGet(t *testing.T, s account.Store, id string) *account.Record {
	t.Helper()
	r, err := s.Account(t.Context(), id)
	if err != nil {
		t.Fatalf("Account %s: %v", id, err)
	}
	return r
}

func mustUpdate(t *testing.T, s account.Store, id string, change func(*account.Record) error) *account.Record {
	t.Helper()
	r, err := s.UpdateAccount(t.Context(), id, change)
	if err != nil {
		t.Fatalf("UpdateAccount %s: %v", id, err)
	}
	return r
}

// wantAccounts checks that Accounts returns the wanted records, in that
// order.
func wantAccounts(t *testing.T, s account.Store, want ...*account.Record) {
	t.Helper()
	got, err := s.Accounts(t.Context())
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	ids := func(rs []*account.Record) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.ID
		}
		return out
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("Accounts = %q, want %q", ids(got), ids(want))
	}
	for i := range got {
		sameRecord(t, got[i], want[i])
	}
}

// sameRecord checks every field of got against want: times by the
// instant, and an empty slice like a missing one.
func sameRecord(t *testing.T, got, want *account.Record) {
	t.Helper()
	if got == nil {
		t.Fatalf("record is nil, want %s", show(want))
	}
	if g, w := normalized(got), normalized(want); !reflect.DeepEqual(g, w) {
		t.Errorf("record %s:\n\tgot  %s\n\twant %s", want.ID, show(g), show(w))
	}
}

// normalized returns a copy of r in the form sameRecord compares: times
// in UTC, empty slices nil.
func normalized(r *account.Record) *account.Record {
	c := r.Clone()
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	c.Allow, c.TaskTypes = nilIfEmpty(c.Allow), nilIfEmpty(c.TaskTypes)
	c.Webhooks, c.Keys = nilIfEmpty(c.Webhooks), nilIfEmpty(c.Keys)
	for i := range c.Webhooks {
		c.Webhooks[i].Types = nilIfEmpty(c.Webhooks[i].Types)
	}
	for i := range c.Keys {
		k := &c.Keys[i]
		k.CreatedAt = k.CreatedAt.UTC()
		if k.ExpiresAt != nil {
			at := k.ExpiresAt.UTC()
			k.ExpiresAt = &at
		}
	}
	return c
}

func nilIfEmpty[E any](s []E) []E {
	if len(s) == 0 {
		return nil
	}
	return s
}

// show prints a record as JSON, so that a difference shows in pointed-to
// times too.
func show(r *account.Record) string {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Sprintf("%+v", r)
	}
	return string(b)
}
