// Package bolt is a task.Store, a webhook.Store, an account.Store and a
// usage.Store in one bbolt file: durable, embedded, for a single node.
//
// Every change but Purge goes through one writer that commits in groups:
// while a transaction is being written and synced, the calls that arrive
// wait, and the next transaction takes them all (up to a maximum). Many
// concurrent creators thus share each fsync and each get a durable answer,
// at a far higher rate than the disk syncs, without a timer delaying any
// of them.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Errors of the store.
var (
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("bolt: database file is locked by another process")
	// ErrClosed is returned by the methods of a closed store but Close.
	ErrClosed = errors.New("bolt: store closed")
)

// The buckets of the file.
var (
	// bucketMeta holds the format of the file.
	bucketMeta = []byte("meta")
	// bucketTasks maps a request id to the task (header and JSON).
	bucketTasks = []byte("tasks")
	// bucketTaskQueues holds a bucket per task type: its accounts' queues
	// and their turns (see queue.go).
	bucketTaskQueues = []byte("task_queues")
	// bucketQueuesV1 held, in files of format 1, a bucket per task type
	// mapping a sequence number (big-endian) to a request id; Open moves
	// them into bucketTaskQueues.
	bucketQueuesV1 = []byte("queues")
	// bucketDepth maps a task type to the number of tasks in its queue.
	bucketDepth = []byte("depth")
	// bucketLeases maps (lease end, request id) to the task's type.
	bucketLeases = []byte("leases")
	// bucketByGroup and bucketByTaskID map (account, id, inverted creation
	// time, request id) to nothing: a prefix scan lists newest first.
	bucketByGroup  = []byte("by_group")
	bucketByTaskID = []byte("by_task_id")
	// bucketCompleted maps (completion time, request id) of terminal tasks
	// to nothing, for Purge.
	bucketCompleted = []byte("completed")
	// bucketIdem maps (account, key) to an idempotency record as JSON.
	bucketIdem = []byte("idempotency")
	// bucketIdemAge maps (creation time, account, key) to nothing, for
	// Purge.
	bucketIdemAge = []byte("idempotency_age")

	// bucketDeliveries maps a delivery id to what the delivery was
	// created with and keeps, and bucketDeliveryStates to the store's
	// bookkeeping of it and what its attempts change (deliveryrecord.go).
	bucketDeliveries     = []byte("deliveries")
	bucketDeliveryStates = []byte("delivery_states")
	// bucketDeliveriesDueV2 mapped, in files of formats 1 and 2, (NextAt,
	// id) of the due deliveries to their URL; Open deletes it.
	bucketDeliveriesDueV2 = []byte("deliveries_due")
	// bucketDeliveriesDueByURL maps (URL number, NextAt, id) of the
	// pending deliveries no worker holds to nothing: each URL's due
	// deliveries in a range of their own, earliest first.
	bucketDeliveriesDueByURL = []byte("deliveries_due_by_url")
	// bucketDeliveryURLs maps a delivery URL (urlKey) to its number
	// (uvarint), given at its first due delivery and kept: a key of
	// bucketDeliveriesDueByURL starts with a few bytes instead of the URL,
	// so that its pages hold more keys and a commit rewrites fewer of
	// them.
	bucketDeliveryURLs = []byte("delivery_urls")
	// bucketDeliveriesDueHeads maps (NextAt, id) of each URL's earliest
	// delivery in bucketDeliveriesDueByURL to its URL: one key per URL,
	// all of them in the order they fall due, so that ClaimDeliveries
	// passes over a URL that skip turns down, whatever its backlog, at the
	// cost of one key. Both are derived from the deliveries' states, and
	// built from them by Open when missing.
	bucketDeliveriesDueHeads = []byte("deliveries_due_heads")
	// bucketDeliveryLeases maps (lease end, id) of the leased deliveries
	// to nothing, so that RescueDeliveries reads only the leases that
	// ended; bucketDeliveryClaims maps their ids to their lease end and
	// claim (deliveryrecord.go). Both hold only the deliveries being
	// attempted, a few pages at most: a claim writes there and leaves the
	// delivery's state as it was.
	bucketDeliveryLeases = []byte("delivery_leases")
	bucketDeliveryClaims = []byte("delivery_claims")
	// bucketDeliveriesByAccount maps (account, inverted creation time, id)
	// to nothing; bucketDeliveriesByRequest and bucketDeliveriesByStatus
	// map (account, request id or status, inverted creation time, id) to
	// nothing. A prefix scan of one of them lists newest first.
	bucketDeliveriesByAccount = []byte("deliveries_by_account")
	bucketDeliveriesByRequest = []byte("deliveries_by_request")
	bucketDeliveriesByStatus  = []byte("deliveries_by_status")
	// bucketDeliveriesEnded maps (creation time, id) of the delivered and
	// failed deliveries to nothing, for Purge.
	bucketDeliveriesEnded = []byte("deliveries_ended")
	// bucketDeliveryCounts maps a delivery status to the number of
	// deliveries with it.
	bucketDeliveryCounts = []byte("delivery_counts")

	// bucketAccounts maps an account id to the account's record as JSON.
	bucketAccounts = []byte("accounts")
	// bucketUsage maps (account id, 0x00, day, 0x00, task type) to the
	// usage counts of that row as JSON: an account's rows in a range of
	// their own, by day then task type. Account ids and days hold no
	// zero byte.
	bucketUsage = []byte("usage")
	// bucketMaintenance maps a maintenance window's id to the window as
	// JSON.
	bucketMaintenance = []byte("maintenance")
	// bucketQuotas maps (account id, 0x00, quota id, 0x00, period start
	// as 8 bytes of big-endian Unix seconds) to the quota count of that
	// period as JSON. Account ids and quota ids hold no zero byte.
	bucketQuotas = []byte("quotas")
)

// appendFill is how full bbolt fills the pages of bucketTasks and
// bucketDeliveries, instead of half. Request ids and delivery ids grow with
// time (version 7 UUIDs), so both come in key order, and pages split in
// halves stayed half empty; the tenth left free takes most of the growth
// of the tasks a page holds when they end (their results), and a
// delivery's value there never changes. With 20,000 tasks the tasks take
// 2,950 leaves under 44 branch pages instead of 4,970 under 131, and a
// commit of CreateParallel writes about a tenth fewer pages, a claim of
// 100 tasks about a quarter fewer.
const appendFill = 0.9

var allBuckets = [][]byte{bucketMeta, bucketTasks, bucketTaskQueues, bucketDepth, bucketLeases,
	bucketByGroup, bucketByTaskID, bucketCompleted, bucketIdem, bucketIdemAge,
	bucketDeliveries, bucketDeliveryStates, bucketDeliveriesDueByURL, bucketDeliveryURLs, bucketDeliveriesDueHeads,
	bucketDeliveryLeases, bucketDeliveryClaims, bucketDeliveriesByAccount, bucketDeliveriesByRequest, bucketDeliveriesByStatus,
	bucketDeliveriesEnded, bucketDeliveryCounts, bucketAccounts, bucketUsage, bucketMaintenance, bucketQuotas}

// formatKey in bucketMeta names the layout of the file; Open refuses
// another. Buckets added since (the deliveries', the accounts', usage's)
// are created by Open and leave the format as it was: a file written
// before has none to fill, or (the per-URL due indexes) has them built
// from what it holds. Format 2 queues tasks by account (queue.go).
// Format 3 keeps a delivery in two binary values, what it keeps and its
// state, with a claim's lease apart (deliveryrecord.go), where formats 1
// and 2 kept one JSON value and a due index that the per-URL ones made
// redundant. Open moves a file of an older format to format 3 (the queues
// of format 1, the deliveries of formats 1 and 2) and marks it 3, so that
// an older program, which would not read it, refuses it.
var (
	formatKey     = []byte("format")
	formatV1      = []byte("taskgate-tasks-1")
	formatV2      = []byte("taskgate-tasks-2")
	formatVersion = []byte("taskgate-tasks-3")
)

// Store is a task.Store, a webhook.Store, an account.Store and a
// usage.Store in a bbolt file. It is safe for concurrent use.
type Store struct {
	db       *bbolt.DB
	maxBatch int
	// writes hands changes to the writer goroutine, which the store owns
	// (buffered, as creates is): closing stops it and stopped tells it has
	// stopped.
	writes    chan write
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
	// commits and changes count the writer's transactions and the calls'
	// changes they committed (Commits).
	commits, changes atomic.Uint64
	// logSyncs and loggedCount are LogSyncs's.
	logSyncs, loggedCount atomic.Uint64

	// The creation log (log.go). Creations go to the logger (creates,
	// buffered: a caller hands its creation over and waits for its answer
	// alone, not once more for the logger to take it), which decides
	// each, makes a group durable in log and hands it to the writer
	// (applies, applyReady) to apply to bolt. logged is the
	// last record logged, applied the last one applied; a call other than
	// Create waits until every creation logged before it is applied
	// (ready).
	log        *creationLog
	creates    chan *creation
	logStopped chan struct{}
	applyReady chan struct{}
	// hurry asks the writer to apply the creations logged at once: a
	// call waits for them.
	hurry           chan struct{}
	logged, applied atomic.Uint64
	seq             uint64 // the last record's number: the logger's alone
	replayed        int    // records Open applied
	broken          atomic.Pointer[error]

	mu sync.Mutex
	// applies are the creations logged and not yet taken by the writer.
	applies []*creation
	// advanced is closed, and replaced, whenever applied moves or the
	// store breaks.
	advanced chan struct{}
	// pendingIDs and pendingIdem are the request ids and idempotency keys
	// of the creations logged and not yet applied: the logger decides
	// each creation from bolt and them.
	pendingIDs  map[string]*creation
	pendingIdem map[string]*creation
}

// Commits returns how many transactions the writer has committed and how
// many changes they held: their ratio is how well group commit groups.
func (s *Store) Commits() (commits, changes uint64) { return s.commits.Load(), s.changes.Load() }

// Replayed returns how many creations Open applied from the log: those
// the last process acknowledged and stopped before storing.
func (s *Store) Replayed() int { return s.replayed }

// LogSyncs returns how many groups of creations the creation log has
// made durable since Open, each with one sync, and the creations they
// held. A creation is counted once its caller can be answered.
func (s *Store) LogSyncs() (syncs, logged uint64) { return s.logSyncs.Load(), s.loggedCount.Load() }

// write is one call's change, done in the writer's next transaction.
type write struct {
	fn   func(*bbolt.Tx) error
	done chan error
	// apply, when set, is the logged creation fn applies; done is nil.
	apply *creation
}

// Option changes how Open opens the store.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	maxBatch    int
}

// WithLockTimeout sets how long Open waits for another process to let go
// of the file (default 2s).
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// WithMaxBatch sets how many changes one transaction commits at most
// (default 1000).
func WithMaxBatch(n int) Option {
	return func(o *options) { o.maxBatch = max(1, n) }
}

// Open opens the store in the file at path, creating it when missing. It
// returns an error wrapping ErrLocked when another process holds the file
// beyond the lock timeout.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: 2 * time.Second, maxBatch: 1000}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: o.lockTimeout,
		// The map freelist keeps commits fast as the file grows. It is
		// not written at each commit (as etcd does): Open rebuilds it by
		// scanning the file, and every commit writes fewer pages. What
		// the file holds is as durable either way.
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %s)", ErrLocked, path, o.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		build := tx.Bucket(bucketDeliveriesDueByURL) == nil || tx.Bucket(bucketDeliveriesDueHeads) == nil
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch format := meta.Get(formatKey); {
		case format == nil:
			return meta.Put(formatKey, formatVersion)
		case bytes.Equal(format, formatV1), bytes.Equal(format, formatV2):
			if bytes.Equal(format, formatV1) {
				if err := migrateQueues(tx); err != nil {
					return fmt.Errorf("bolt: %s: moving the queues to format 2: %w", path, err)
				}
			}
			if err := migrateDeliveries(tx); err != nil {
				return fmt.Errorf("bolt: %s: moving the deliveries to format 3: %w", path, err)
			}
			build = true
			if err := meta.Put(formatKey, formatVersion); err != nil {
				return err
			}
		case !bytes.Equal(format, formatVersion):
			return fmt.Errorf("bolt: %s has format %q, this program reads %q", path, format, formatVersion)
		}
		if build {
			return buildDueByURL(tx)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	lg, recs, err := openLog(path + "-log")
	if err != nil {
		db.Close()
		return nil, err
	}
	last, replayed, err := replayLog(db, recs)
	if err == nil {
		// Everything is in bolt, synced: the log starts empty.
		err = lg.empty()
	}
	if err != nil {
		lg.f.Close()
		db.Close()
		return nil, fmt.Errorf("bolt: %s: applying its creation log %s-log: %w", path, path, err)
	}
	s := &Store{
		db:          db,
		maxBatch:    o.maxBatch,
		writes:      make(chan write, o.maxBatch),
		closing:     make(chan struct{}),
		stopped:     make(chan struct{}),
		log:         lg,
		creates:     make(chan *creation, o.maxBatch),
		logStopped:  make(chan struct{}),
		applyReady:  make(chan struct{}, 1),
		hurry:       make(chan struct{}, 1),
		seq:         last,
		replayed:    replayed,
		advanced:    make(chan struct{}),
		pendingIDs:  make(map[string]*creation),
		pendingIdem: make(map[string]*creation),
	}
	s.logged.Store(last)
	s.applied.Store(last)
	go s.writeLoop()
	go s.logLoop()
	return s, nil
}

// replayLog applies the log's records that bolt has not, and returns the
// number of the last record either holds and how many it applied.
func replayLog(db *bbolt.DB, recs []logRecord) (last uint64, replayed int, err error) {
	var applied uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		applied = logApplied(tx)
		for i, r := range recs {
			if r.seq <= applied {
				continue
			}
			if i == 0 && r.seq != applied+1 {
				return fmt.Errorf("its records start at %d, where the bolt file has applied up to %d: "+
					"the two files are not of the same run (a bolt file restored from a backup?); "+
					"move the log aside to start without it", r.seq, applied)
			}
			rec, err := decodeCreation(r.payload)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.seq, err)
			}
			if err := applyCreation(tx, rec, r.seq); err != nil {
				return err
			}
			replayed++
		}
		return nil
	})
	last = applied
	if n := len(recs); n > 0 && recs[n-1].seq > last {
		last = recs[n-1].seq
	}
	return last, replayed, err
}

// writeLoop commits the changes handed to it, and the creations logged,
// in groups, until the store closes; it applies every creation logged
// before it stops.
func (s *Store) writeLoop() {
	defer close(s.stopped)
	writes := make([]write, 0, s.maxBatch)
	batch := make([]write, 0, s.maxBatch)
	var linger <-chan time.Time
	for {
		select {
		case <-s.closing:
			<-s.logStopped
			for s.broken.Load() == nil {
				if batch, _ = s.takeApplies(batch[:0], false); len(batch) == 0 {
					return
				}
				s.commit(batch)
			}
			return
		case w := <-s.writes:
			writes = append(writes[:0], w)
		case <-s.hurry:
			writes = writes[:0]
		case <-s.applyReady:
			// Creations alone wait to be applied together, up to
			// applyLinger, unless they fill half a batch first.
			if s.pendingApplies() < s.maxBatch/2 {
				if linger == nil {
					linger = time.After(applyLinger)
				}
				continue
			}
			writes = writes[:0]
		case <-linger:
			writes = writes[:0]
		}
		linger = nil
		// Whoever waited while the last transaction was syncing joins
		// this one. Yielding first lets the callers it just answered
		// come back in time: without it they miss each group and the
		// callers split into two halves committing in turn.
		runtime.Gosched()
		writes = gather(writes, s.writes, s.maxBatch)
		// Every creation logged before one of these writes began is
		// applied first, in the same transaction: a write sees the
		// creations acknowledged before it without waiting for a commit
		// of its own.
		batch, err := s.takeApplies(batch[:0], len(writes) > 0)
		if err != nil {
			// Broken: no write commits without the creations before it.
			for _, w := range writes {
				w.done <- err
			}
		} else if batch = append(batch, writes...); len(batch) > 0 {
			s.commit(batch)
		}
		clear(batch)
		clear(writes)
	}
}

// put is one Put of putAll: a nil key is skipped.
type put struct {
	b    *bbolt.Bucket
	k, v []byte
}

// putAll puts each of ps that has a key.
func putAll(ps ...put) error {
	for _, p := range ps {
		if p.k == nil {
			continue
		}
		if err := p.b.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

// gather adds to batch what waits in ch, up to max in all.
func gather[T any](batch []T, ch <-chan T, max int) []T {
	for len(batch) < max {
		select {
		case v := <-ch:
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}

// pendingApplies returns how many creations are logged and not yet taken
// by the writer.
func (s *Store) pendingApplies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applies)
}

// takeApplies adds to batch the creations logged and not yet applied:
// all of them, or up to the batch's bound; when some are left the writer
// is called back. A broken store takes none (they wait for the next
// Open, in the log) and returns its error.
func (s *Store) takeApplies(batch []write, all bool) ([]write, error) {
	if err := s.broken.Load(); err != nil {
		return batch, *err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.applies)
	if !all {
		n = min(n, max(0, s.maxBatch-len(batch)))
	}
	for _, c := range s.applies[:n] {
		batch = append(batch, write{fn: c.apply, apply: c})
	}
	s.applies = s.applies[n:]
	if len(s.applies) > 0 {
		select {
		case s.applyReady <- struct{}{}:
		default:
		}
	}
	return batch, nil
}

// commit runs the changes in one transaction and answers each. When one
// fails, the transaction is rolled back and the others run again without
// it; once they are committed it runs alone and is answered, so that no
// change's answer depends on another's failure, and it still sees the
// creations applied before it. A change's function may thus run more than
// once and must start from scratch each time. A logged creation that
// fails breaks the store (fail): its caller was answered already.
func (s *Store) commit(batch []write) {
	var alone []write
	for len(batch) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, w := range batch {
				if err := w.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 && batch[failed].apply == nil {
			alone = append(alone, batch[failed])
			batch = slices.Delete(batch, failed, failed+1)
			continue
		}
		// Counted before the callers are answered, so that a caller that
		// reads Commits after its call returns sees it.
		if err == nil {
			s.commits.Add(1)
			s.changes.Add(uint64(len(batch)))
		}
		s.answer(batch, err)
		break
	}
	for _, w := range alone {
		if err := s.broken.Load(); err != nil {
			w.done <- *err
			continue
		}
		err := s.db.Update(w.fn)
		if err == nil {
			s.commits.Add(1)
			s.changes.Add(1)
		}
		w.done <- err
	}
}

// answer answers the changes of a transaction with its outcome: the
// logged creations it applied first (so that a caller answered next sees
// them applied, or the store broken), then the callers of update.
func (s *Store) answer(batch []write, err error) {
	applied := slices.ContainsFunc(batch, func(w write) bool { return w.apply != nil })
	switch {
	case !applied:
	case err != nil:
		s.fail(fmt.Errorf("applying logged creations: %w", err))
		err = *s.broken.Load()
	default:
		s.advance(batch)
	}
	for _, w := range batch {
		if w.apply == nil {
			w.done <- err
		}
	}
}

// advance notes the logged creations of batch as applied.
func (s *Store) advance(batch []write) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last uint64
	for _, w := range batch {
		if c := w.apply; c != nil {
			s.forget(c)
			last = c.seq
		}
	}
	s.applied.Store(last)
	close(s.advanced)
	s.advanced = make(chan struct{})
}

// fail breaks the store: every call after returns err, until the store
// is opened again (which applies the log).
func (s *Store) fail(err error) {
	err = fmt.Errorf("bolt: store stopped, open it again: %w", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken.CompareAndSwap(nil, &err) {
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
}

// update has the writer run fn in a transaction and returns once it is
// committed and synced.
func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	// Not ready: the writer applies the creations logged before fn, in
	// fn's transaction.
	if err := s.usable(ctx); err != nil {
		return err
	}
	w := write{fn: fn, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over (queued: the writer may take it at any moment),
	// the change is done whatever ctx says: the answer must tell whether
	// it is stored.
	err, taken := await(w.done, s.stopped)
	if !taken {
		return ErrClosed
	}
	return err
}

// await waits for the answer of a call handed to the logger or the writer
// on done, or for that goroutine to stop (stopped). taken is false when it
// stopped without taking the call, which is then not stored: what it
// takes it answers before it stops.
func await[T any](done <-chan T, stopped <-chan struct{}) (answer T, taken bool) {
	select {
	case answer = <-done:
		return answer, true
	case <-stopped:
		select {
		case answer = <-done:
			return answer, true
		default:
			return answer, false
		}
	}
}

// ready tells whether a call may go ahead, once every creation
// acknowledged before it is applied: a call sees every task created
// before it began.
func (s *Store) ready(ctx context.Context) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	target := s.logged.Load()
	for s.applied.Load() < target {
		s.mu.Lock()
		advanced := s.advanced
		s.mu.Unlock()
		if err := s.broken.Load(); err != nil {
			return *err
		}
		if s.applied.Load() >= target {
			break
		}
		select {
		case s.hurry <- struct{}{}:
		default:
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// usable tells whether a call may go ahead at once.
func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.broken.Load(); err != nil {
		return *err
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
		return nil
	}
}

// Close stops the logger and the writer, once the changes they took are
// committed, and closes the files. It may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		var errs []error
		if s.broken.Load() == nil {
			// Every record is applied: the log is left empty (and a bolt
			// file restored from a backup finds none).
			errs = append(errs, s.log.empty())
		}
		errs = append(errs, s.log.f.Close(), s.db.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Interface guards.
var (
	_ task.Store    = (*Store)(nil)
	_ webhook.Store = (*Store)(nil)
)
