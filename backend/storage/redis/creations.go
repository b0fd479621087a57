package redis

import (
	"context"
	"fmt"

	"github.com/taskgate/taskgate/backend/internal/batch"
)

// The batching of creations.
const (
	// maxCreations bounds the tasks one script call creates, and
	// maxCreationBytes their size (a task larger goes alone).
	maxCreations     = 128
	maxCreationBytes = 1 << 20
	// maxCreators bounds the creating calls of a store in flight at once;
	// while they are, the creations that arrive wait for the next call.
	maxCreators = 1
)

// The tasks of concurrent Creates of a shard go to Redis together
// (shard.creates, a batch.Queue): a creation that comes while maxCreators calls are in
// flight waits for the next, which creates every task waiting then (up to
// maxCreations, or maxCreationBytes) in one script run, acknowledged (and,
// with replicas, waited for) once. A lone creation goes at once, alone.
// Each task is created, or found to exist or to be an idempotent replay,
// as it would be alone, in the order of the call: its answer comes only
// once Redis has acknowledged the whole call.

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

// newCreations returns the queue of s's creations.
func newCreations(s *Store) *batch.Queue[*creation] {
	return &batch.Queue[*creation]{
		Max: maxCreations, Senders: maxCreators,
		Size: func(c *creation) int { return c.size }, MaxSize: maxCreationBytes,
		Send: func(cs []*creation) {
			s.create(cs)
			for _, c := range cs {
				close(c.done)
			}
		},
	}
}

// createTogether creates the task of args (whose key, of shard sh, is key)
// with the others of the shard waiting, and returns its answer.
func (s *Store) createTogether(ctx context.Context, sh *shard, key string, args []any) (*creation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &creation{key: key, args: args, size: argsSize(args), done: make(chan struct{})}
	sh.creates.Add(c)
	select {
	case <-c.done:
		return c, c.err
	case <-ctx.Done():
		// The task may still be created: the caller answers as for a
		// call whose reply was lost.
		return nil, ctx.Err()
	}
}

// create runs the creation script for the batch. Its callers may have
// given up: the call is bounded by the client's own timeouts.
func (s *Store) create(cs []*creation) {
	args := make([]any, 0, 1+12*len(cs))
	args = append(args, len(cs))
	for _, c := range cs {
		args = append(args, c.args...)
	}
	v, err := s.runReplicated(context.Background(), scriptTaskCreate, cs[0].key, args...)
	var answers []any
	if err == nil {
		if answers, err = values(v); err == nil && len(answers) != 2*len(cs) {
			err = fmt.Errorf("redis: unexpected answer of %d values from Create for %d tasks", len(answers), len(cs))
		}
	}
	for i, c := range cs {
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
