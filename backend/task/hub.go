package task

import "sync"

// Hub tells waiters when a task ends, so that long polls and synchronous
// calls answer the moment it does, without polling the store.
type Hub struct {
	mu      sync.Mutex
	waiters map[string]*waiter
	// released ends every wait: the process is shutting down.
	released    chan struct{}
	releaseOnce sync.Once
}

type waiter struct {
	done chan struct{}
	refs int
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{waiters: make(map[string]*waiter), released: make(chan struct{})}
}

// Release ends every wait, now and later, whichever service waits: on
// shutdown, long polls and sync calls answer at once with the task as it
// stands.
func (h *Hub) Release() { h.releaseOnce.Do(func() { close(h.released) }) }

// Released is closed once Release is called.
func (h *Hub) Released() <-chan struct{} { return h.released }

// Subscribe returns a channel that is closed when Notify is called for the
// request id, and a function to call when no longer waiting.
func (h *Hub) Subscribe(requestID string) (<-chan struct{}, func()) {
	h.mu.Lock()
	w, ok := h.waiters[requestID]
	if !ok {
		w = &waiter{done: make(chan struct{})}
		h.waiters[requestID] = w
	}
	w.refs++
	h.mu.Unlock()
	return w.done, func() {
		h.mu.Lock()
		w.refs--
		if w.refs == 0 && h.waiters[requestID] == w {
			delete(h.waiters, requestID)
		}
		h.mu.Unlock()
	}
}

// Notify wakes every waiter of the request id.
func (h *Hub) Notify(requestID string) {
	h.mu.Lock()
	w, ok := h.waiters[requestID]
	if ok {
		delete(h.waiters, requestID)
	}
	h.mu.Unlock()
	if ok {
		close(w.done)
	}
}

// NotifyAll wakes every waiter, to look at its task again: notices of
// ends may have been missed.
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	waiters := h.waiters
	h.waiters = make(map[string]*waiter)
	h.mu.Unlock()
	for _, w := range waiters {
		close(w.done)
	}
}

// Len returns the number of request ids waited on.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters)
}
