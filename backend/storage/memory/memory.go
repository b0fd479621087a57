// Package memory is a task.Store, a webhook.Store, an account.Store and a
// usage.Store in process memory, for tests and for a single node that may
// lose its tasks when it stops.
package memory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/webhook"
)

// ErrClosed is returned by every method of a closed store but Close.
var ErrClosed = errors.New("memory: store closed")

// Store keeps tasks, webhook deliveries, accounts and usage counts in maps
// under one mutex. Each task is one entry that the queue, the lease table,
// the list indexes and the purge order point to, so a task costs its own
// data plus a few pointers; each delivery likewise.
type Store struct {
	mu     sync.Mutex
	closed bool
	// seq numbers tasks in the order they were created; a task keeps its
	// number for life, so a released or rescued one regains its place.
	seq       uint64
	tasks     map[string]*entry     // by request id
	queues    map[string]*typeQueue // by task type
	leased    map[string]*entry     // by request id
	byGroup   map[listKey][]*entry
	byTaskID  map[listKey][]*entry
	completed heapOf[*entry]
	idem      map[listKey]*idemEntry // by account and key
	idemAge   heapOf[*idemEntry]

	deliveries map[string]*delivery // by id
	// due holds the pending deliveries no worker holds, a queue per URL
	// by NextAt, and dueURLs those queues by their head, so that a claim
	// passes over a URL that skip turns down in one step, whatever its
	// backlog. A URL has a queue while it has due deliveries.
	due              map[string]*dueQueue // by URL
	dueURLs          heapOf[*dueQueue]
	deliveriesLeased map[string]*delivery // by id
	// The lists of an account's deliveries: all of them (under the
	// account and an empty id), by request id and by status.
	deliveriesByAccount map[listKey][]*delivery
	deliveriesByRequest map[listKey][]*delivery
	deliveriesByStatus  map[listKey][]*delivery
	// ended holds the delivered and failed deliveries, by creation, for
	// Purge.
	ended          heapOf[*delivery]
	deliveryCounts map[webhook.Status]int

	accounts map[string]*account.Record // by id
	// maintenance holds the maintenance windows, by id.
	maintenance map[string]*maintenance.Window
	// usageRows holds each account's usage rows sorted by day then task
	// type, so that a day range is a slice of them.
	usageRows map[string][]usage.Row // by account id
	// quotas holds each account's quota counters, by period start.
	quotas map[quotaKey]map[int64]*quotaCount
}

// entry is the store's own copy of a task and where it stands.
type entry struct {
	t   task.Task
	seq uint64
	// queuePos is the entry's index in its account's queue of its type,
	// or -1 when it is not queued.
	queuePos   int
	leaseUntil time.Time
}

type idemEntry struct {
	rec task.Idempotency
	pos int
}

// listKey is an account and one of its ids (group, task id or
// idempotency key).
type listKey struct{ accountID, id string }

// New returns an empty store.
func New() *Store {
	return &Store{
		tasks:     make(map[string]*entry),
		queues:    make(map[string]*typeQueue),
		leased:    make(map[string]*entry),
		byGroup:   make(map[listKey][]*entry),
		byTaskID:  make(map[listKey][]*entry),
		completed: heapOf[*entry]{less: completedFirst},
		idem:      make(map[listKey]*idemEntry),
		idemAge: heapOf[*idemEntry]{
			less:  func(a, b *idemEntry) bool { return a.rec.CreatedAt.Before(b.rec.CreatedAt) },
			moved: func(e *idemEntry, i int) { e.pos = i },
		},
		deliveries:          make(map[string]*delivery),
		due:                 make(map[string]*dueQueue),
		dueURLs:             heapOf[*dueQueue]{less: headFirst, moved: func(q *dueQueue, i int) { q.pos = i }},
		deliveriesLeased:    make(map[string]*delivery),
		deliveriesByAccount: make(map[listKey][]*delivery),
		deliveriesByRequest: make(map[listKey][]*delivery),
		deliveriesByStatus:  make(map[listKey][]*delivery),
		ended:               heapOf[*delivery]{less: createdFirst, moved: func(d *delivery, i int) { d.endedPos = i }},
		deliveryCounts:      make(map[webhook.Status]int),
		accounts:            make(map[string]*account.Record),
		maintenance:         make(map[string]*maintenance.Window),
		usageRows:           make(map[string][]usage.Row),
		quotas:              make(map[quotaKey]map[int64]*quotaCount),
	}
}

// lock takes the store's lock unless ctx is done or the store is closed.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Close empties the store; later calls of its other methods return
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.tasks, s.queues, s.leased, s.byGroup, s.byTaskID, s.idem = nil, nil, nil, nil, nil, nil
	s.completed.items, s.idemAge.items = nil, nil
	s.deliveries, s.deliveriesLeased, s.deliveryCounts = nil, nil, nil
	s.deliveriesByAccount, s.deliveriesByRequest, s.deliveriesByStatus = nil, nil, nil
	s.due, s.dueURLs.items, s.ended.items = nil, nil, nil
	s.accounts, s.usageRows = nil, nil
	return nil
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// heapOf is a binary min-heap of E ordered by less, for container/heap.
// When moved is set it is told every element's new index (-1 once
// popped), so that an element can be removed or fixed in place.
type heapOf[E any] struct {
	items []E
	less  func(a, b E) bool
	moved func(e E, i int)
}

func (h *heapOf[E]) Len() int           { return len(h.items) }
func (h *heapOf[E]) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }

func (h *heapOf[E]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	if h.moved != nil {
		h.moved(h.items[i], i)
		h.moved(h.items[j], j)
	}
}

func (h *heapOf[E]) Push(x any) {
	e := x.(E)
	if h.moved != nil {
		h.moved(e, len(h.items))
	}
	h.items = append(h.items, e)
}

func (h *heapOf[E]) Pop() any {
	last := len(h.items) - 1
	e := h.items[last]
	var zero E
	h.items[last] = zero // let the popped element be collected
	h.items = h.items[:last]
	if h.moved != nil {
		h.moved(e, -1)
	}
	return e
}

// Interface guards.
var (
	_ task.Store    = (*Store)(nil)
	_ webhook.Store = (*Store)(nil)
)
