package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Create makes t durable in the creation log, with the creations of
// concurrent calls, and answers; the writer then stores and queues it
// (log.go). See task.Store.
func (s *Store) Create(ctx context.Context, t *task.Task, idem *task.Idempotency, idemSince time.Time) (*task.Idempotency, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	// Encoding outside the logger keeps its work short.
	rec, err := recordOf(t)
	if err != nil {
		return nil, err
	}
	c := &creation{rec: rec, idem: idem, idemSince: idemSince, done: make(chan struct{})}
	if idem != nil {
		if c.rec.idemValue, err = json.Marshal(idem); err != nil {
			return nil, fmt.Errorf("bolt: encoding idempotency record: %w", err)
		}
		c.rec.idemK = idemKey(idem.AccountID, idem.Key)
		c.rec.idemAgeK = timeKey(idem.CreatedAt, c.rec.idemK)
	}
	// What bolt would refuse is refused before it is acknowledged.
	for _, k := range [][]byte{c.rec.id, c.rec.typeName, c.rec.groupK, c.rec.taskIDK, c.rec.idemK, c.rec.idemAgeK} {
		if len(k) > bbolt.MaxKeySize {
			return nil, fmt.Errorf("bolt: a key of task %s is %d bytes, over %d", t.RequestID, len(k), bbolt.MaxKeySize)
		}
	}
	if n := c.rec.size(); n > maxLogRecord {
		return nil, fmt.Errorf("bolt: task %s is %d bytes, over %d", t.RequestID, n, maxLogRecord)
	}
	select {
	case s.creates <- c:
	case <-s.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once handed over (queued: the logger may take it at any moment),
	// the creation is decided whatever ctx says: the answer must tell
	// whether it is stored. The wait is the logger's next group or two.
	if _, taken := await(c.done, s.logStopped); !taken {
		return nil, ErrClosed
	}
	return c.replay, c.err
}

// recordOf returns the creation record of t, as created (in progress),
// without an idempotency record.
func recordOf(t *task.Task) (creationRecord, error) {
	stored := *t
	stored.Status = task.InProgress
	body, err := marshalTask(&stored)
	if err != nil {
		return creationRecord{}, err
	}
	r := creationRecord{id: []byte(t.RequestID), account: []byte(t.AccountID), typeName: []byte(t.TypeName()), body: body}
	if t.GroupID != "" {
		r.groupK = listKey(t.AccountID, t.GroupID, t.CreatedAt, t.RequestID)
	}
	if t.TaskID != "" {
		r.taskIDK = listKey(t.AccountID, t.TaskID, t.CreatedAt, t.RequestID)
	}
	return r, nil
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
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	// A task logged (its group synced) and not yet applied is as it was
	// created: a write that changes it is answered only once it is
	// applied. A poll right after the 202 reads it there, without
	// hurrying the writer.
	s.mu.Lock()
	c := s.pendingIDs[requestID]
	if c != nil && c.seq > s.logged.Load() {
		c = nil
	}
	s.mu.Unlock()
	if c != nil {
		return decodeTask(c.rec.id, c.rec.body)
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var t *task.Task
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		t, _, err = getTask(tx, []byte(requestID))
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ListByGroup returns the account's newest tasks of the group; see
// task.Store.
func (s *Store) ListByGroup(ctx context.Context, accountID, groupID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, bucketByGroup, accountID, groupID, limit)
}

// ListByTaskID returns the account's newest tasks with the task id; see
// task.Store.
func (s *Store) ListByTaskID(ctx context.Context, accountID, taskID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, bucketByTaskID, accountID, taskID, limit)
}

func (s *Store) list(ctx context.Context, index []byte, accountID, id string, limit int) ([]*task.Task, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	out := []*task.Task{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if id == "" {
			return nil
		}
		prefix := listPrefix(accountID, id)
		c := tx.Bucket(index).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			t, _, err := getTask(tx, listKeyRequestID(k, len(prefix)))
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Claim leases up to n queued tasks of the type, the accounts taking
// turns; see task.Store.
func (s *Store) Claim(ctx context.Context, taskType string, n int, leaseUntil time.Time) ([]*task.Task, error) {
	typeName := []byte(taskType)
	lease := sortable(leaseUntil)
	var out []*task.Task
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		out = []*task.Task{}
		q, err := typeQueue(tx, typeName, false)
		if q == nil || n <= 0 || err != nil {
			return err
		}
		tasks, leases := tasksBucket(tx), tx.Bucket(bucketLeases)
		taken := 0
		for range n {
			id, err := popTurn(q)
			if err != nil {
				return err
			}
			if id == nil {
				break
			}
			taken++
			t, h, err := getTask(tx, id)
			if errors.Is(err, task.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			t.Attempts++
			h.leased, h.lease = true, lease
			body, err := marshalTask(t)
			if err != nil {
				return err
			}
			if err := tasks.Put(id, encodeValue(h, body)); err != nil {
				return err
			}
			if err := leases.Put(leaseKey(lease, id), typeName); err != nil {
				return err
			}
			out = append(out, t)
		}
		return addDepth(tx, typeName, -taken)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Finish stores the end of a task and its deliveries, and gives back its
// quota units, in a transaction with concurrent changes; see task.Store.
func (s *Store) Finish(ctx context.Context, t *task.Task, deliveries []*webhook.Delivery, refund []quota.Counter) error {
	if !t.Status.Terminal() {
		return fmt.Errorf("bolt: finishing task %s with status %q, which is not terminal", t.RequestID, t.Status)
	}
	if t.CompletedAt == nil {
		return fmt.Errorf("bolt: finishing task %s without a completion time", t.RequestID)
	}
	news, err := encodeNewDeliveries(deliveries)
	if err != nil {
		return err
	}
	// A counter the task cannot have spent (another account's, or an id
	// no counter has) is passed over: the end matters more.
	var refundKeys [][]byte
	for _, c := range quota.OfAccount(refund, t.AccountID) {
		if k, err := quotaKeys([]quota.Counter{c}); err == nil {
			refundKeys = append(refundKeys, k...)
		}
	}
	id := []byte(t.RequestID)
	completedK := timeKey(*t.CompletedAt, id)
	return s.update(ctx, func(tx *bbolt.Tx) error {
		stored, h, err := getTask(tx, id)
		if err != nil {
			return err
		}
		if stored.Status.Terminal() || stored.Attempts != t.Attempts {
			return task.ErrNotFound
		}
		if h.leased {
			if err := tx.Bucket(bucketLeases).Delete(leaseKey(h.lease, id)); err != nil {
				return err
			}
		} else {
			// Queued again by Rescue while its worker was still at it:
			// it must not run again.
			if err := dequeue(tx, stored.TypeName(), stored.AccountID, h.seq); err != nil {
				return err
			}
		}
		at := *t.CompletedAt
		stored.Status = t.Status
		stored.CompletedAt = &at
		stored.Result, stored.Error, stored.Message = t.Result, t.Error, t.Message
		body, err := marshalTask(stored)
		if err != nil {
			return err
		}
		if err := tasksBucket(tx).Put(id, encodeValue(header{seq: h.seq}, body)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCompleted).Put(completedK, nil); err != nil {
			return err
		}
		if err := putNewDeliveries(tx, news); err != nil {
			return err
		}
		_, err = refundIn(tx, refundKeys, t.RequestID, true)
		return err
	})
}

// Release queues leased tasks again at their place, each only while it is
// leased under the claim that returned it; see task.Store.
func (s *Store) Release(ctx context.Context, released []*task.Task) error {
	if len(released) == 0 {
		return s.ready(ctx)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		for _, r := range released {
			id := []byte(r.RequestID)
			stored, h, err := getTask(tx, id)
			if errors.Is(err, task.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			// A later claim (after a rescue) is another worker's: only the
			// claim that returned r may give it back.
			if !h.leased || stored.Attempts != r.Attempts {
				continue
			}
			k := leaseKey(h.lease, id)
			typeName := tx.Bucket(bucketLeases).Get(k)
			if typeName == nil {
				return fmt.Errorf("%w: %s is leased but has no lease", errCorrupt, r.RequestID)
			}
			if err := requeue(tx, k, bytes.Clone(typeName), false); err != nil {
				return err
			}
		}
		return nil
	})
}

// Rescue queues again the tasks whose lease ended before expiredBefore;
// see task.Store.
func (s *Store) Rescue(ctx context.Context, expiredBefore time.Time) (int, error) {
	before := sortable(expiredBefore)
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		var keys, types [][]byte
		c := tx.Bucket(bucketLeases).Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < before; k, v = c.Next() {
			keys = append(keys, bytes.Clone(k))
			types = append(types, bytes.Clone(v))
		}
		for i, k := range keys {
			if err := requeue(tx, k, types[i], true); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ExtendLeases moves the lease end of the tasks still leased under the
// given claims, in a transaction with concurrent changes; see task.Store.
func (s *Store) ExtendLeases(ctx context.Context, claims []task.Claim, leaseUntil time.Time) error {
	if len(claims) == 0 {
		return s.ready(ctx)
	}
	lease := sortable(leaseUntil)
	return s.update(ctx, func(tx *bbolt.Tx) error {
		tasks, leases := tasksBucket(tx), tx.Bucket(bucketLeases)
		for _, c := range claims {
			id := []byte(c.RequestID)
			v := tasks.Get(id)
			if v == nil {
				continue
			}
			h, body, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("%w: %s", err, c.RequestID)
			}
			if !h.leased || h.lease == lease {
				continue
			}
			if attempts, err := taskAttempts(body); err != nil {
				return fmt.Errorf("%s: %w", c.RequestID, err)
			} else if attempts != c.Attempts {
				continue // leased under another claim
			}
			old := leaseKey(h.lease, id)
			typeName := leases.Get(old)
			if typeName == nil {
				return fmt.Errorf("%w: %s is leased but has no lease", errCorrupt, c.RequestID)
			}
			typeName = bytes.Clone(typeName)
			if err := leases.Delete(old); err != nil {
				return err
			}
			if err := leases.Put(leaseKey(lease, id), typeName); err != nil {
				return err
			}
			h.lease = lease
			// encodeValue copies body out of the page it aliases.
			if err := tasks.Put(id, encodeValue(h, body)); err != nil {
				return err
			}
		}
		return nil
	})
}

// QueueDepth returns the number of queued tasks of the type; see
// task.Store.
func (s *Store) QueueDepth(ctx context.Context, taskType string) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var n uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketDepth).Get([]byte(taskType)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return int(n), err
}

// QueuedTypes returns the task types with queued tasks; see task.Store.
func (s *Store) QueuedTypes(ctx context.Context) ([]string, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var names []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDepth).ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) > 0 {
				names = append(names, string(k))
			}
			return nil
		})
	})
	return names, err
}

// Purge deletes old terminal tasks, ended deliveries and idempotency
// records; see task.Store. It commits on its own rather than through the
// writer: its transaction is large and rare.
func (s *Store) Purge(ctx context.Context, completedBefore, idemBefore time.Time, limit int) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		done := tx.Bucket(bucketCompleted)
		before := sortable(completedBefore)
		var keys [][]byte
		c := done.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit && binary.BigEndian.Uint64(k) < before; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := deleteTask(tx, k[8:]); err != nil {
				return err
			}
			if err := done.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		deleted, err := purgeDeliveries(tx, completedBefore, limit-n)
		if err != nil {
			return err
		}
		n += deleted

		age := tx.Bucket(bucketIdemAge)
		before = sortable(idemBefore)
		keys = keys[:0]
		c = age.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < before; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		idem := tx.Bucket(bucketIdem)
		for _, k := range keys {
			if err := idem.Delete(k[8:]); err != nil {
				return err
			}
			if err := age.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// getTask reads a task and its header.
func getTask(tx *bbolt.Tx, id []byte) (*task.Task, header, error) {
	v := tx.Bucket(bucketTasks).Get(id)
	if v == nil {
		return nil, header{}, task.ErrNotFound
	}
	h, body, err := decodeValue(v)
	if err != nil {
		return nil, header{}, fmt.Errorf("%w: %s", err, id)
	}
	t, err := decodeTask(id, body)
	return t, h, err
}

// decodeTask decodes the task id as stored (its JSON).
func decodeTask(id, body []byte) (*task.Task, error) {
	t := new(task.Task)
	if err := json.Unmarshal(body, t); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, id, err)
	}
	// A nil RawMessage is stored as null; give back nil.
	if string(t.Data) == "null" {
		t.Data = nil
	}
	if string(t.Result) == "null" {
		t.Result = nil
	}
	return t, nil
}

// deleteTask deletes a task and its index entries.
func deleteTask(tx *bbolt.Tx, id []byte) error {
	t, _, err := getTask(tx, id)
	if errors.Is(err, task.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if t.GroupID != "" {
		if err := tx.Bucket(bucketByGroup).Delete(listKey(t.AccountID, t.GroupID, t.CreatedAt, t.RequestID)); err != nil {
			return err
		}
	}
	if t.TaskID != "" {
		if err := tx.Bucket(bucketByTaskID).Delete(listKey(t.AccountID, t.TaskID, t.CreatedAt, t.RequestID)); err != nil {
			return err
		}
	}
	return tasksBucket(tx).Delete(id)
}

// requeue ends the lease with the key and puts its task back in its
// account's queue of its type, at the place it was claimed from; a task
// rescued counts it.
func requeue(tx *bbolt.Tx, leaseK, typeName []byte, rescued bool) error {
	id := leaseK[8:]
	tasks := tasksBucket(tx)
	v := tasks.Get(id)
	if v == nil {
		return fmt.Errorf("%w: lease of missing task %s", errCorrupt, id)
	}
	h, body, err := decodeValue(v)
	if err != nil {
		return err
	}
	accountID, err := taskAccount(body)
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if rescued {
		t, _, err := getTask(tx, id)
		if err != nil {
			return err
		}
		t.Rescues++
		if body, err = marshalTask(t); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketLeases).Delete(leaseK); err != nil {
		return err
	}
	q, err := typeQueue(tx, typeName, true)
	if err != nil {
		return err
	}
	if err := enqueue(q, accountID, h.seq, id); err != nil {
		return err
	}
	if err := tasks.Put(id, encodeValue(header{seq: h.seq}, body)); err != nil {
		return err
	}
	return addDepth(tx, typeName, 1)
}

// dequeue takes a task out of its type's queue, if it is there.
func dequeue(tx *bbolt.Tx, typeName, accountID string, seq uint64) error {
	q, err := typeQueue(tx, []byte(typeName), false)
	if q == nil || err != nil {
		return err
	}
	removed, err := unqueue(q, accountID, seq)
	if !removed || err != nil {
		return err
	}
	return addDepth(tx, []byte(typeName), -1)
}

// addDepth adds delta to the count of the type's queued tasks.
func addDepth(tx *bbolt.Tx, typeName []byte, delta int) error {
	return addCount(tx.Bucket(bucketDepth), typeName, delta)
}

// addCount adds delta to the counter under key in b.
func addCount(b *bbolt.Bucket, key []byte, delta int) error {
	if delta == 0 {
		return nil
	}
	var n uint64
	if v := b.Get(key); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	return b.Put(key, binary.BigEndian.AppendUint64(nil, n+uint64(delta)))
}

// marshalTask encodes a task as JSON, keeping its data and result
// verbatim (no HTML escaping).
func marshalTask(t *task.Task) ([]byte, error) {
	b, err := t.AppendJSON(nil)
	if err != nil {
		return nil, fmt.Errorf("bolt: encoding task %s: %w", t.RequestID, err)
	}
	return b, nil
}

// IdempotencyGet returns a live idempotency record; see task.Store.
func (s *Store) IdempotencyGet(ctx context.Context, accountID, key string, since time.Time) (*task.Idempotency, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var rec *task.Idempotency
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get(idemKey(accountID, key))
		if v == nil {
			return nil
		}
		r := new(task.Idempotency)
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("bolt: decoding idempotency record: %w", err)
		}
		if !r.CreatedAt.Before(since) {
			rec = r
		}
		return nil
	})
	return rec, err
}

// tasksBucket returns bucketTasks in tx, to be changed.
func tasksBucket(tx *bbolt.Tx) *bbolt.Bucket {
	b := tx.Bucket(bucketTasks)
	b.FillPercent = appendFill
	return b
}
