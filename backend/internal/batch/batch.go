// Package batch sends the work of concurrent callers together: one call,
// one round trip, for what arrived while the calls before were in flight.
package batch

import "sync"

// Queue gathers the items of concurrent callers and hands them to Send in
// batches. An item that comes while Senders calls of Send run waits for
// the next, which takes every item waiting then, in order, up to Max items
// and, when Size is set, MaxSize of their sizes (an item larger goes
// alone). A lone item goes at once, alone.
//
// Send runs on goroutines the queue starts when an item comes and fewer
// than Senders run; each goes on while items wait and ends when none
// does, so an idle queue holds none. Send must answer every item of its
// batch (callers wait on the items themselves). The zero value is not
// usable: set Send, Max and Senders.
type Queue[T any] struct {
	Send    func(batch []T)
	Max     int
	Senders int
	Size    func(T) int
	MaxSize int

	mu      sync.Mutex
	pending []T
	senders int
}

// Add queues item for the next batch.
func (q *Queue[T]) Add(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(q.pending, item)
	if q.senders < q.Senders {
		q.senders++
		go q.send()
	}
}

// send hands the waiting items to Send, a batch per call, until none
// waits.
func (q *Queue[T]) send() {
	batch := make([]T, 0, q.Max)
	for {
		q.mu.Lock()
		n := q.take()
		if n == 0 {
			q.senders--
			q.mu.Unlock()
			return
		}
		batch = append(batch[:0], q.pending[:n]...)
		rest := copy(q.pending, q.pending[n:])
		clear(q.pending[rest:])
		q.pending = q.pending[:rest]
		q.mu.Unlock()
		q.Send(batch)
	}
}

// take returns how many of the waiting items the next batch takes. The
// caller holds the lock.
func (q *Queue[T]) take() int {
	n := min(len(q.pending), q.Max)
	if q.Size == nil {
		return n
	}
	size := 0
	for i := range n {
		if size += q.Size(q.pending[i]); i > 0 && size > q.MaxSize {
			return i
		}
	}
	return n
}
