package memory

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Create stores t and queues it; see task.Store.
func (s *Store) Create(ctx context.Context, t *task.Task, idem *task.Idempotency, idemSince time.Time) (*task.Idempotency, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var ie *idemEntry
	if idem != nil {
		ie = s.idem[listKey{idem.AccountID, idem.Key}]
		if ie != nil && !ie.rec.CreatedAt.Before(idemSince) {
			rec := ie.rec
			return &rec, nil
		}
	}
	if _, ok := s.tasks[t.RequestID]; ok {
		return nil, task.ErrExists
	}

	e := &entry{queuePos: -1}
	copyTask(&e.t, t)
	e.t.Status = task.InProgress
	s.seq++
	e.seq = s.seq
	s.tasks[t.RequestID] = e
	s.enqueue(e)
	index(s.byGroup, e.t.AccountID, e.t.GroupID, e)
	index(s.byTaskID, e.t.AccountID, e.t.TaskID, e)
	switch {
	case idem == nil:
	case ie != nil: // expired: the key starts a new life
		ie.rec = *idem
		heap.Fix(&s.idemAge, ie.pos)
	default:
		ie = &idemEntry{rec: *idem}
		s.idem[listKey{idem.AccountID, idem.Key}] = ie
		heap.Push(&s.idemAge, ie)
	}
	return nil, nil
}

// Get returns the account's task with the request id; see task.Store.
func (s *Store) Get(ctx context.Context, accountID, requestID string) (*task.Task, error) {
	t, err := s.Find(ctx, requestID)
	if err == nil && t.AccountID != accountID {
		return nil, task.ErrNotFound
	}
	return t, err
}

// Find returns the task with the request id; see task.Store.
func (s *Store) Find(ctx context.Context, requestID string) (*task.Task, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	e, ok := s.tasks[requestID]
	if !ok {
		return nil, task.ErrNotFound
	}
	return e.snapshot(), nil
}

// ListByGroup returns the account's newest tasks of the group; see
// task.Store.
func (s *Store) ListByGroup(ctx context.Context, accountID, groupID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, s.byGroup, accountID, groupID, limit)
}

// ListByTaskID returns the account's newest tasks with the task id; see
// task.Store.
func (s *Store) ListByTaskID(ctx context.Context, accountID, taskID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, s.byTaskID, accountID, taskID, limit)
}

func (s *Store) list(ctx context.Context, idx map[listKey][]*entry, accountID, id string, limit int) ([]*task.Task, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	entries := idx[listKey{accountID, id}]
	out := make([]*task.Task, 0, max(0, min(limit, len(entries))))
	for i := len(entries) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, entries[i].snapshot())
	}
	return out, nil
}

// Claim leases up to n queued tasks of the type, the accounts taking
// turns; see task.Store.
func (s *Store) Claim(ctx context.Context, taskType string, n int, leaseUntil time.Time) ([]*task.Task, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	q := s.queues[taskType]
	if q == nil {
		return []*task.Task{}, nil
	}
	out := make([]*task.Task, 0, max(0, min(n, q.depth)))
	for len(out) < n {
		e := q.pop()
		if e == nil {
			break
		}
		e.t.Attempts++
		e.leaseUntil = leaseUntil
		s.leased[e.t.RequestID] = e
		out = append(out, e.snapshot())
	}
	return out, nil
}

// Finish stores the end of a task and its deliveries, and gives back its
// quota units; see task.Store.
func (s *Store) Finish(ctx context.Context, t *task.Task, deliveries []*webhook.Delivery, refund []quota.Counter) error {
	if !t.Status.Terminal() {
		return fmt.Errorf("memory: finishing task %s with status %q, which is not terminal", t.RequestID, t.Status)
	}
	if t.CompletedAt == nil {
		return fmt.Errorf("memory: finishing task %s without a completion time", t.RequestID)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	e, ok := s.tasks[t.RequestID]
	if !ok || e.t.Status.Terminal() || e.t.Attempts != t.Attempts {
		return task.ErrNotFound
	}
	if err := s.checkNew(deliveries); err != nil {
		return err
	}
	if _, ok := s.leased[t.RequestID]; ok {
		delete(s.leased, t.RequestID)
	} else if e.queuePos >= 0 {
		s.queues[e.t.TypeName()].remove(e)
	}
	at := *t.CompletedAt
	e.t.Status = t.Status
	e.t.CompletedAt = &at
	e.t.Result = bytes.Clone(t.Result)
	e.t.Error = clonePtr(t.Error)
	e.t.Message = clonePtr(t.Message)
	heap.Push(&s.completed, e)
	for _, d := range deliveries {
		s.addDelivery(d)
	}
	s.refund(quota.OfAccount(refund, t.AccountID), t.RequestID)
	return nil
}

// Release queues leased tasks again at their place, each only while it is
// leased under the claim that returned it; see task.Store.
func (s *Store) Release(ctx context.Context, tasks []*task.Task) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, t := range tasks {
		if e, ok := s.leased[t.RequestID]; ok && e.t.Attempts == t.Attempts {
			delete(s.leased, t.RequestID)
			s.enqueue(e)
		}
	}
	return nil
}

// Rescue queues again the tasks whose lease ended before expiredBefore;
// see task.Store.
func (s *Store) Rescue(ctx context.Context, expiredBefore time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	// Leases are few (the tasks being worked on), so a scan is cheap. The
	// tasks are queued again in lease order, as the other stores do, so
	// that their accounts rejoin the turns in the same order.
	var expired []*entry
	for _, e := range s.leased {
		if e.leaseUntil.Before(expiredBefore) {
			expired = append(expired, e)
		}
	}
	slices.SortFunc(expired, func(a, b *entry) int {
		if c := a.leaseUntil.Compare(b.leaseUntil); c != 0 {
			return c
		}
		return strings.Compare(a.t.RequestID, b.t.RequestID)
	})
	for _, e := range expired {
		delete(s.leased, e.t.RequestID)
		e.t.Rescues++
		s.enqueue(e)
	}
	n := len(expired)
	return n, nil
}

// ExtendLeases moves the lease end of the tasks still leased under the
// given claims; see task.Store.
func (s *Store) ExtendLeases(ctx context.Context, claims []task.Claim, leaseUntil time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, c := range claims {
		if e, ok := s.leased[c.RequestID]; ok && e.t.Attempts == c.Attempts {
			e.leaseUntil = leaseUntil
		}
	}
	return nil
}

// QueueDepth returns the number of queued tasks of the type; see
// task.Store.
func (s *Store) QueueDepth(ctx context.Context, taskType string) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if q := s.queues[taskType]; q != nil {
		return q.depth, nil
	}
	return 0, nil
}

// QueuedTypes returns the task types with queued tasks; see task.Store.
func (s *Store) QueuedTypes(ctx context.Context) ([]string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var names []string
	for name, q := range s.queues {
		if q.depth > 0 {
			names = append(names, name)
		}
	}
	return names, nil
}

// Purge deletes old terminal tasks, ended deliveries and idempotency
// records; see task.Store.
func (s *Store) Purge(ctx context.Context, completedBefore, idemBefore time.Time, limit int) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for n < limit && s.completed.Len() > 0 && s.completed.items[0].t.CompletedAt.Before(completedBefore) {
		e := heap.Pop(&s.completed).(*entry)
		delete(s.tasks, e.t.RequestID)
		unindex(s.byGroup, e.t.AccountID, e.t.GroupID, e)
		unindex(s.byTaskID, e.t.AccountID, e.t.TaskID, e)
		n++
	}
	for n < limit && s.ended.Len() > 0 && s.ended.items[0].d.CreatedAt.Before(completedBefore) {
		s.deleteDelivery(heap.Pop(&s.ended).(*delivery))
		n++
	}
	for s.idemAge.Len() > 0 && s.idemAge.items[0].rec.CreatedAt.Before(idemBefore) {
		ie := heap.Pop(&s.idemAge).(*idemEntry)
		delete(s.idem, listKey{ie.rec.AccountID, ie.rec.Key})
	}
	return n, nil
}

// enqueue puts e in its type's queue, at the place its sequence number
// gives it in its account's queue.
func (s *Store) enqueue(e *entry) {
	name := e.t.TypeName()
	q := s.queues[name]
	if q == nil {
		q = newTypeQueue()
		s.queues[name] = q
	}
	q.push(e)
}

// snapshot returns a copy of the entry's task for a caller.
func (e *entry) snapshot() *task.Task {
	t := new(task.Task)
	copyTask(t, &e.t)
	return t
}

// compareListed orders the entries of one list: oldest first, and among
// tasks created at the same instant, the greater request id first. Read
// backwards, a list is newest first with ties by request id ascending,
// the order the bolt store gives too.
func compareListed(a, b *entry) int {
	if c := a.t.CreatedAt.Compare(b.t.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.t.RequestID, a.t.RequestID)
}

// index adds e to the account's list under id. Tasks are created mostly in
// time order, so the insertion is mostly an append.
func index(idx map[listKey][]*entry, accountID, id string, e *entry) {
	if id == "" {
		return
	}
	insertSorted(idx, listKey{accountID, id}, e, compareListed)
}

func unindex(idx map[listKey][]*entry, accountID, id string, e *entry) {
	removeSorted(idx, listKey{accountID, id}, e, compareListed)
}

// insertSorted adds e to the list under k, kept sorted by cmp.
func insertSorted[E any](idx map[listKey][]E, k listKey, e E, cmp func(a, b E) int) {
	list := idx[k]
	i, _ := slices.BinarySearchFunc(list, e, cmp)
	idx[k] = slices.Insert(list, i, e)
}

// removeSorted takes e out of the list under k, kept sorted by cmp, and
// drops the list once empty.
func removeSorted[E any](idx map[listKey][]E, k listKey, e E, cmp func(a, b E) int) {
	list := idx[k]
	i, found := slices.BinarySearchFunc(list, e, cmp)
	if !found {
		return
	}
	if list = slices.Delete(list, i, i+1); len(list) == 0 {
		delete(idx, k)
	} else {
		idx[k] = list
	}
}

// completedFirst orders terminal tasks for Purge.
func completedFirst(a, b *entry) bool {
	if c := a.t.CompletedAt.Compare(*b.t.CompletedAt); c != 0 {
		return c < 0
	}
	return a.t.RequestID < b.t.RequestID
}

// copyTask makes dst a deep copy of src.
func copyTask(dst, src *task.Task) {
	*dst = *src
	dst.Data = bytes.Clone(src.Data)
	dst.Result = bytes.Clone(src.Result)
	dst.Error = clonePtr(src.Error)
	dst.Message = clonePtr(src.Message)
	dst.CompletedAt = clonePtr(src.CompletedAt)
}

// IdempotencyGet returns a live idempotency record; see task.Store.
func (s *Store) IdempotencyGet(ctx context.Context, accountID, key string, since time.Time) (*task.Idempotency, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ie := s.idem[listKey{accountID, key}]
	if ie == nil || ie.rec.CreatedAt.Before(since) {
		return nil, nil
	}
	rec := ie.rec
	return &rec, nil
}
