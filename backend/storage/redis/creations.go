package redis

import (
	"context"
	"fmt"
	"sync"
)

// The batching of creations.
const (
	// maxCreations bounds the tasks one script call creates, and
	// maxCreationBytes their size (a task larger goes alone).
	maxCreations     = 128
	maxCreationBytes = 1 << 20
	// maxCreators bounds the creating calls of a store in flight at once;
	// while they are, the creations that arrive wait for the next call.
	maxCreators = 2
)

// creations sends the tasks of concurrent Creates to Redis together: a
// creation that comes while maxCreators calls are in flight waits for the
// next, which creates every task waiting then (up to maxCreations) in one
// script run, acknowledged (and, with replicas, waited for) once. A lone
// creation goes at once, alone. Each task is created, or found to exist or
// to be an idempotent replay, as it would be alone, in the order of the
// call: its answer comes only once Redis has acknowledged the whole call.
type creations struct {
	mu      sync.Mutex
	pending []*creation
	senders int
}

// creation is one Create waiting for its call.
type creation struct {
	key  string
	args []any // the script's twelve fields of the task
	size int   // about the bytes of args
	// answer is "ok", "exists" or "replay", and record the idempotency
	// record of a replay, as JSON.
	answer, record string
	err            error
	done           chan struct{}
}

// do creates the task of args (whose key is key) with the others waiting,
// and returns its answer.
func (cs *creations) do(ctx context.Context, s *Store, key string, args []any) (*creation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &creation{key: key, args: args, size: argsSize(args), done: make(chan struct{})}
	cs.mu.Lock()
	cs.pending = append(cs.pending, c)
	if cs.senders < maxCreators {
		cs.senders++
		go cs.send(s)
	}
	cs.mu.Unlock()
	select {
	case <-c.done:
		return c, c.err
	case <-ctx.Done():
		// The task may still be created: the caller answers as for a
		// call whose reply was lost.
		return nil, ctx.Err()
	}
}

// send creates the waiting tasks, a call per batch, until none waits.
func (cs *creations) send(s *Store) {
	batch := make([]*creation, 0, maxCreations)
	for {
		cs.mu.Lock()
		n, size := 0, 0
		for n < min(len(cs.pending), maxCreations) && (n == 0 || size+cs.pending[n].size <= maxCreationBytes) {
			size += cs.pending[n].size
			n++
		}
		if n == 0 {
			cs.senders--
			cs.mu.Unlock()
			return
		}
		batch = append(batch[:0], cs.pending[:n]...)
		rest := copy(cs.pending, cs.pending[n:])
		clear(cs.pending[rest:])
		cs.pending = cs.pending[:rest]
		cs.mu.Unlock()
		s.create(batch)
		for _, c := range batch {
			close(c.done)
		}
	}
}

// create runs the creation script for the batch. Its callers may have
// given up: the call is bounded by the client's own timeouts.
func (s *Store) create(batch []*creation) {
	args := make([]any, 0, 1+12*len(batch))
	args = append(args, len(batch))
	for _, c := range batch {
		args = append(args, c.args...)
	}
	v, err := s.runReplicated(context.Background(), scriptTaskCreate, batch[0].key, args...)
	var answers []any
	if err == nil {
		if answers, err = values(v); err == nil && len(answers) != 2*len(batch) {
			err = fmt.Errorf("redis: unexpected answer of %d values from Create for %d tasks", len(answers), len(batch))
		}
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
			continue
		}
		c.answer, c.record = str(answers[2*i]), str(answers[2*i+1])
	}
}

// argsSize is about the bytes args take on the wire.
func argsSize(args []any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		default:
			n += 20
		}
	}
	return n
}
