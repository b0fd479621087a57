package memory

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// delivery is the store's own copy of a webhook delivery and where it
// stands.
type delivery struct {
	d webhook.Delivery
	// duePos is the delivery's index in its URL's due queue, or -1 when
	// it is not there (leased or ended).
	duePos int
	// endedPos is its index in the ended heap, or -1 while pending.
	endedPos   int
	leased     bool
	leaseUntil time.Time
	// retryRequested marks a delivery that RetryDelivery asked to attempt
	// again since its last claim: when that claim's attempt is recorded
	// (in time, or late, after a rescue), it stays pending, due at its
	// NextAt (the time of the request), whatever the attempt gave. The
	// next claim, a new attempt, answers it.
	retryRequested bool
}

// ClaimDeliveries leases up to n due deliveries, earliest first; see
// webhook.Store.
//
// The claim goes URL by URL: it looks at the earliest due delivery of
// each URL, earliest first (by NextAt, then id), so that what is taken is
// the earliest due among the URLs not turned down. Once skip says true for
// a URL, the call looks at no more of its deliveries and does not ask
// about it again: a URL at its cap costs one step whatever its backlog.
// skip is thus asked before each delivery taken and at most once more per
// URL. It is called under the store's lock and must not call the store.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, n int, leaseUntil time.Time, skip func(url string) bool) ([]*webhook.Delivery, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []*webhook.Delivery{}
	var skipped []*dueQueue
	for len(out) < n && s.dueURLs.Len() > 0 {
		q := s.dueURLs.items[0]
		d := q.items[0]
		if d.d.NextAt.After(now) {
			break
		}
		if skip != nil && skip(q.url) {
			// Out of dueURLs for the rest of the call.
			heap.Pop(&s.dueURLs)
			skipped = append(skipped, q)
			continue
		}
		s.removeDue(d)
		d.leased, d.leaseUntil, d.retryRequested = true, leaseUntil, false
		d.d.Claim++
		s.deliveriesLeased[d.d.ID] = d
		out = append(out, d.snapshot())
	}
	for _, q := range skipped {
		heap.Push(&s.dueURLs, q)
	}
	return out, nil
}

// dueQueue holds the due deliveries of one URL, by NextAt.
type dueQueue struct {
	url string
	heapOf[*delivery]
	// pos is the queue's index in dueURLs, or -1 when it is not there.
	pos int
}

// addDue makes a pending delivery that is not leased due, at its NextAt.
// The caller holds the lock.
func (s *Store) addDue(d *delivery) {
	q := s.due[d.d.URL]
	if q == nil {
		q = &dueQueue{
			url:    d.d.URL,
			heapOf: heapOf[*delivery]{less: dueFirst, moved: func(d *delivery, i int) { d.duePos = i }},
		}
		s.due[d.d.URL] = q
		heap.Push(&q.heapOf, d)
		heap.Push(&s.dueURLs, q)
		return
	}
	heap.Push(&q.heapOf, d)
	if d.duePos == 0 {
		heap.Fix(&s.dueURLs, q.pos)
	}
}

// removeDue takes a due delivery out of its URL's queue, and drops the
// queue once empty. The caller holds the lock.
func (s *Store) removeDue(d *delivery) {
	q := s.due[d.d.URL]
	head := d.duePos == 0
	heap.Remove(&q.heapOf, d.duePos)
	switch {
	case q.Len() == 0:
		heap.Remove(&s.dueURLs, q.pos)
		delete(s.due, q.url)
	case head:
		heap.Fix(&s.dueURLs, q.pos)
	}
}

// fixDue moves a due delivery whose NextAt changed to its new place. The
// caller holds the lock.
func (s *Store) fixDue(d *delivery) {
	q := s.due[d.d.URL]
	heap.Fix(&q.heapOf, d.duePos)
	heap.Fix(&s.dueURLs, q.pos)
}

// RecordAttempt stores a delivery after an attempt and the deliveries in
// also; see webhook.Store.
func (s *Store) RecordAttempt(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery) error {
	if err := checkStatus(d.Status); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.recordAttempt(d, also)
}

// RecordAttemptClaiming records an attempt and claims the next due
// delivery of its URL; see webhook.AttemptClaimer.
func (s *Store) RecordAttemptClaiming(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery, next webhook.NextOfURL) (*webhook.Delivery, error) {
	if err := checkStatus(d.Status); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if err := s.recordAttempt(d, also); err != nil {
		return nil, err
	}
	q := s.due[d.URL]
	if q == nil || q.Len() == 0 || q.items[0].d.NextAt.After(next.Now) {
		return nil, nil
	}
	taken := q.items[0]
	s.removeDue(taken)
	taken.leased, taken.leaseUntil, taken.retryRequested = true, next.LeaseUntil, false
	taken.d.Claim++
	s.deliveriesLeased[taken.d.ID] = taken
	return taken.snapshot(), nil
}

// recordAttempt is RecordAttempt's change; the caller holds the lock.
func (s *Store) recordAttempt(d *webhook.Delivery, also []*webhook.Delivery) error {
	stored, ok := s.deliveries[d.ID]
	if !ok || stored.d.Status != webhook.Pending || stored.d.Claim != d.Claim {
		return webhook.ErrNotFound
	}
	if err := s.checkNew(also); err != nil {
		return err
	}
	if stored.leased {
		delete(s.deliveriesLeased, d.ID)
		stored.leased, stored.leaseUntil = false, time.Time{}
	} else {
		// Rescued while its worker was still at it.
		s.removeDue(stored)
	}
	stored.d.Attempts = slices.Clone(d.Attempts)
	status, next := d.Status, d.NextAt
	if stored.retryRequested {
		// The mark stays until the next claim: a record of this claim
		// sent again keeps the retry too.
		status, next = webhook.Pending, stored.d.NextAt
	}
	stored.d.NextAt = next
	s.setStatus(stored, status)
	if status == webhook.Pending {
		s.addDue(stored)
	}
	for _, d := range also {
		s.addDelivery(d)
	}
	return nil
}

// GetDelivery returns the account's delivery with the id; see
// webhook.Store.
func (s *Store) GetDelivery(ctx context.Context, accountID, id string) (*webhook.Delivery, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok || d.d.AccountID != accountID {
		return nil, webhook.ErrNotFound
	}
	return d.snapshot(), nil
}

// ListDeliveries returns the account's newest deliveries that match f; see
// webhook.Store. With a request id it reads that request's deliveries
// (a few per task) and filters them by status.
func (s *Store) ListDeliveries(ctx context.Context, accountID string, f webhook.Filter, limit int) ([]*webhook.Delivery, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var list []*delivery
	switch {
	case f.RequestID != "":
		list = s.deliveriesByRequest[listKey{accountID, f.RequestID}]
	case f.Status != "":
		list = s.deliveriesByStatus[listKey{accountID, string(f.Status)}]
	default:
		list = s.deliveriesByAccount[listKey{accountID, ""}]
	}
	out := make([]*webhook.Delivery, 0, max(0, min(limit, len(list))))
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		if f.Status == "" || list[i].d.Status == f.Status {
			out = append(out, list[i].snapshot())
		}
	}
	return out, nil
}

// RetryDelivery makes the account's delivery pending and due at now; see
// webhook.Store. A leased delivery is made so when its attempt is
// recorded; every one is marked, so that an attempt of its last claim
// recorded late leaves it so.
func (s *Store) RetryDelivery(ctx context.Context, accountID, id string, now time.Time) (*webhook.Delivery, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	d, ok := s.deliveries[id]
	if !ok || d.d.AccountID != accountID {
		return nil, webhook.ErrNotFound
	}
	d.d.NextAt = now
	d.retryRequested = true
	switch {
	case d.leased:
	case d.d.Status == webhook.Pending:
		s.fixDue(d)
	default:
		s.setStatus(d, webhook.Pending)
		s.addDue(d)
	}
	return d.snapshot(), nil
}

// RescueDeliveries makes claimable again the deliveries whose lease ended
// before expiredBefore; see webhook.Store.
func (s *Store) RescueDeliveries(ctx context.Context, expiredBefore time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	// Leases are few (the deliveries being attempted), so a scan is cheap.
	n := 0
	for id, d := range s.deliveriesLeased {
		if d.leaseUntil.Before(expiredBefore) {
			delete(s.deliveriesLeased, id)
			d.leased, d.leaseUntil = false, time.Time{}
			s.addDue(d)
			n++
		}
	}
	return n, nil
}

// ExtendDeliveryLeases moves the lease end of the deliveries still
// leased under the given claims; see webhook.Store.
func (s *Store) ExtendDeliveryLeases(ctx context.Context, claims []webhook.Claim, leaseUntil time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, c := range claims {
		if d, ok := s.deliveriesLeased[c.ID]; ok && d.d.Claim == c.Claim {
			d.leaseUntil = leaseUntil
		}
	}
	return nil
}

// CountDeliveries returns the number of deliveries with the status; see
// webhook.Store.
func (s *Store) CountDeliveries(ctx context.Context, status webhook.Status) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.deliveryCounts[status], nil
}

// checkNew tells whether the deliveries can be stored: each has an id
// that neither the store nor another of them holds. The caller holds the
// lock.
func (s *Store) checkNew(deliveries []*webhook.Delivery) error {
	for i, d := range deliveries {
		if d == nil || d.ID == "" {
			return fmt.Errorf("memory: delivery %d of %d has no id", i+1, len(deliveries))
		}
		if _, ok := s.deliveries[d.ID]; ok {
			return fmt.Errorf("memory: delivery %s: %w", d.ID, task.ErrExists)
		}
		for _, other := range deliveries[:i] {
			if other.ID == d.ID {
				return fmt.Errorf("memory: delivery %s given twice", d.ID)
			}
		}
	}
	return nil
}

// addDelivery stores a copy of d, pending and due at its NextAt. The
// caller holds the lock and checked d with checkNew.
func (s *Store) addDelivery(src *webhook.Delivery) {
	d := &delivery{duePos: -1, endedPos: -1}
	copyDelivery(&d.d, src)
	d.d.Status, d.d.Claim = webhook.Pending, 0
	s.deliveries[d.d.ID] = d
	s.addDue(d)
	insertSorted(s.deliveriesByAccount, listKey{d.d.AccountID, ""}, d, compareDeliveries)
	if d.d.RequestID != "" {
		insertSorted(s.deliveriesByRequest, listKey{d.d.AccountID, d.d.RequestID}, d, compareDeliveries)
	}
	insertSorted(s.deliveriesByStatus, listKey{d.d.AccountID, string(d.d.Status)}, d, compareDeliveries)
	s.deliveryCounts[d.d.Status]++
}

// setStatus changes the status of a delivery that is neither due nor
// leased, and its place in the status lists and the ended heap.
func (s *Store) setStatus(d *delivery, status webhook.Status) {
	if d.d.Status == status {
		return
	}
	removeSorted(s.deliveriesByStatus, listKey{d.d.AccountID, string(d.d.Status)}, d, compareDeliveries)
	s.deliveryCounts[d.d.Status]--
	d.d.Status = status
	insertSorted(s.deliveriesByStatus, listKey{d.d.AccountID, string(d.d.Status)}, d, compareDeliveries)
	s.deliveryCounts[d.d.Status]++
	switch ended := status != webhook.Pending; {
	case ended && d.endedPos < 0:
		heap.Push(&s.ended, d)
	case !ended && d.endedPos >= 0:
		heap.Remove(&s.ended, d.endedPos)
	}
}

// deleteDelivery forgets an ended delivery already out of the ended heap.
func (s *Store) deleteDelivery(d *delivery) {
	delete(s.deliveries, d.d.ID)
	removeSorted(s.deliveriesByAccount, listKey{d.d.AccountID, ""}, d, compareDeliveries)
	removeSorted(s.deliveriesByRequest, listKey{d.d.AccountID, d.d.RequestID}, d, compareDeliveries)
	removeSorted(s.deliveriesByStatus, listKey{d.d.AccountID, string(d.d.Status)}, d, compareDeliveries)
	s.deliveryCounts[d.d.Status]--
}

// snapshot returns a copy of the delivery for a caller.
func (d *delivery) snapshot() *webhook.Delivery {
	out := new(webhook.Delivery)
	copyDelivery(out, &d.d)
	return out
}

// copyDelivery makes dst a deep copy of src.
func copyDelivery(dst, src *webhook.Delivery) {
	*dst = *src
	dst.Body = bytes.Clone(src.Body)
	dst.Attempts = slices.Clone(src.Attempts)
}

// checkStatus tells whether s is a status of a delivery.
func checkStatus(s webhook.Status) error {
	switch s {
	case webhook.Pending, webhook.Delivered, webhook.Failed:
		return nil
	}
	return fmt.Errorf("memory: unknown delivery status %q", s)
}

// compareDeliveries orders the deliveries of one list like compareListed
// orders tasks: read backwards, newest first with ties by id ascending.
func compareDeliveries(a, b *delivery) int {
	if c := a.d.CreatedAt.Compare(b.d.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.d.ID, a.d.ID)
}

// dueFirst orders a URL's due queue: earliest NextAt first, then by id.
func dueFirst(a, b *delivery) bool {
	if c := a.d.NextAt.Compare(b.d.NextAt); c != 0 {
		return c < 0
	}
	return a.d.ID < b.d.ID
}

// headFirst orders the due queues by their earliest delivery.
func headFirst(a, b *dueQueue) bool { return dueFirst(a.items[0], b.items[0]) }

// createdFirst orders the ended heap for Purge.
func createdFirst(a, b *delivery) bool {
	if c := a.d.CreatedAt.Compare(b.d.CreatedAt); c != 0 {
		return c < 0
	}
	return a.d.ID < b.d.ID
}
