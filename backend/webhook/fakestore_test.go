package webhook_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

// fakeStore is an in-memory webhook.Store for this package's tests. It
// copies deliveries in and out, as a real store does, so a dispatcher that
// relies on aliasing is caught.
type fakeStore struct {
	mu      sync.Mutex
	records map[string]*record
	// queue holds the claimable deliveries, earliest NextAt first.
	queue []*record
	// claimed is signalled after every ClaimDeliveries.
	claimed chan struct{}
	// lastClaim is the now of the latest ClaimDeliveries.
	lastClaim time.Time
}

type record struct {
	d          *webhook.Delivery
	leaseUntil time.Time // zero when not leased
	retry      bool      // RetryDelivery while leased
	seq        int       // insertion order, to break NextAt ties
}

var _ webhook.Store = (*fakeStore)(nil)

// claimWindow bounds how many due candidates one claim looks at, as a real
// store bounds its scan; it keeps the benchmark from going quadratic when
// one URL's backlog is skipped over and over.
const claimWindow = 1024

func newFakeStore() *fakeStore {
	return &fakeStore{records: make(map[string]*record), claimed: make(chan struct{}, 1)}
}

func clone(d *webhook.Delivery) *webhook.Delivery {
	c := *d
	c.Body = slices.Clone(d.Body)
	c.Attempts = slices.Clone(d.Attempts)
	return &c
}

func less(a, b *record) int {
	return cmp.Or(a.d.NextAt.Compare(b.d.NextAt), cmp.Compare(a.seq, b.seq))
}

// add stores deliveries as they are (pending ones are queued).
func (s *fakeStore) add(ds ...*webhook.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if _, ok := s.records[d.ID]; ok {
			panic("duplicate delivery " + d.ID)
		}
		r := &record{d: clone(d), seq: len(s.records)}
		s.records[d.ID] = r
		if d.Status == webhook.Pending {
			s.queue = append(s.queue, r)
		}
	}
	slices.SortFunc(s.queue, less)
}

// enqueue puts a record in the queue in order. The caller holds mu.
func (s *fakeStore) enqueue(r *record) {
	i, _ := slices.BinarySearchFunc(s.queue, r, less)
	s.queue = slices.Insert(s.queue, i, r)
}

// get returns a copy of the delivery with the id, or nil.
func (s *fakeStore) get(id string) *webhook.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.records[id]; ok {
		return clone(r.d)
	}
	return nil
}

// waitClaimAt waits for a claim made at or after at.
func (s *fakeStore) waitClaimAt(t testing.TB, at time.Time) {
	t.Helper()
	for {
		s.mu.Lock()
		last := s.lastClaim
		s.mu.Unlock()
		if !last.Before(at) {
			return
		}
		receive(t, s.claimed)
	}
}

// isLeased reports whether the delivery with the id is leased.
func (s *fakeStore) isLeased(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	return ok && !r.leaseUntil.IsZero()
}

// all returns copies of every delivery, in insertion order.
func (s *fakeStore) all() []*webhook.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := make([]*record, 0, len(s.records))
	for _, r := range s.records {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]*webhook.Delivery, len(rs))
	for i, r := range rs {
		out[i] = clone(r.d)
	}
	return out
}

func (s *fakeStore) ClaimDeliveries(ctx context.Context, now time.Time, n int, leaseUntil time.Time, skip func(url string) bool) ([]*webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		select {
		case s.claimed <- struct{}{}:
		default:
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*webhook.Delivery
	var skipped []*record
	stop := 0
	for ; stop < len(s.queue) && stop < claimWindow && len(out) < n; stop++ {
		r := s.queue[stop]
		if r.d.NextAt.After(now) {
			break
		}
		if skip != nil && skip(r.d.URL) {
			skipped = append(skipped, r)
			continue
		}
		r.leaseUntil = leaseUntil
		out = append(out, clone(r.d))
	}
	// Only the examined head changes: the skipped stay in front, in order.
	head := stop - len(skipped)
	copy(s.queue[head:stop], skipped)
	s.queue = s.queue[head:]
	s.lastClaim = now
	return out, nil
}

func (s *fakeStore) RecordAttempt(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[d.ID]
	if !ok || r.leaseUntil.IsZero() {
		return fmt.Errorf("delivery %s is not leased", d.ID)
	}
	for _, a := range also {
		if _, ok := s.records[a.ID]; ok {
			return fmt.Errorf("delivery %s exists", a.ID)
		}
	}
	r.d = clone(d)
	r.leaseUntil = time.Time{}
	if r.retry {
		r.retry = false
		r.d.Status, r.d.NextAt = webhook.Pending, d.Attempts[len(d.Attempts)-1].At
	}
	if r.d.Status == webhook.Pending {
		s.enqueue(r)
	}
	for _, a := range also {
		ar := &record{d: clone(a), seq: len(s.records)}
		s.records[a.ID] = ar
		if a.Status == webhook.Pending {
			s.enqueue(ar)
		}
	}
	return nil
}

func (s *fakeStore) GetDelivery(_ context.Context, accountID, id string) (*webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok || r.d.AccountID != accountID {
		return nil, webhook.ErrNotFound
	}
	return clone(r.d), nil
}

func (s *fakeStore) ListDeliveries(_ context.Context, accountID string, f webhook.Filter, limit int) ([]*webhook.Delivery, error) {
	var out []*webhook.Delivery
	for _, d := range slices.Backward(s.all()) {
		if d.AccountID == accountID && (f.RequestID == "" || d.RequestID == f.RequestID) && (f.Status == "" || d.Status == f.Status) {
			out = append(out, d)
		}
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *fakeStore) RetryDelivery(_ context.Context, accountID, id string, now time.Time) (*webhook.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok || r.d.AccountID != accountID {
		return nil, webhook.ErrNotFound
	}
	if !r.leaseUntil.IsZero() {
		r.retry = true
		return clone(r.d), nil
	}
	if i := slices.Index(s.queue, r); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
	}
	r.d.Status, r.d.NextAt = webhook.Pending, now
	s.enqueue(r)
	return clone(r.d), nil
}

func (s *fakeStore) RescueDeliveries(_ context.Context, expiredBefore time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		if !r.leaseUntil.IsZero() && r.leaseUntil.Before(expiredBefore) {
			r.leaseUntil = time.Time{}
			s.enqueue(r)
			n++
		}
	}
	return n, nil
}

func (s *fakeStore) ExtendDeliveryLeases(_ context.Context, claims []webhook.Claim, leaseUntil time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range claims {
		if r, ok := s.records[c.ID]; ok && !r.leaseUntil.IsZero() {
			r.leaseUntil = leaseUntil
		}
	}
	return nil
}

func (s *fakeStore) CountDeliveries(_ context.Context, status webhook.Status) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		if r.d.Status == status {
			n++
		}
	}
	return n, nil
}

// claimingStore is a fakeStore that claims while it records (as
// AttemptClaimer), the two steps one after the other under the lock of
// neither: enough for the dispatcher, which holds the URL's slot
// meanwhile.
type claimingStore struct{ *fakeStore }

var _ webhook.AttemptClaimer = claimingStore{}

// Follows counts the deliveries handed over by records.
var follows atomic.Int64

func (s claimingStore) RecordAttemptClaiming(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery, next webhook.NextOfURL) (*webhook.Delivery, error) {
	if err := s.RecordAttempt(ctx, d, also); err != nil {
		return nil, err
	}
	got, err := s.ClaimDeliveries(ctx, next.Now, 1, next.LeaseUntil, func(url string) bool { return url != d.URL })
	if err != nil || len(got) == 0 {
		return nil, err
	}
	follows.Add(1)
	return got[0], nil
}
