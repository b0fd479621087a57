package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/task"
)

// The creation log. A creation is durable once it is in this file, the
// bolt file's companion (<path>-log): its caller is answered then, and the
// writer applies it to bolt afterwards, in larger transactions. A group
// of creations costs the disk one write where the last group ended and
// one fdatasync, where a bolt commit writes its pages over the file and
// syncs twice (BenchmarkGroupWrites measures both).
//
// The file is a run of records, each
//
//	[0:4]   the payload's length
//	[4:8]   CRC-32C of the sequence number and the payload
//	[8:16]  the sequence number: one more than the record before, never
//	        reused over the file's life
//	[16:]   the payload, a creationRecord
//
// ended by a record that does not check (a zero length, a bad checksum, a
// sequence number other than one more than the one before): what a crash
// cut short, zeros, or records of an earlier pass. Bolt keeps the number
// of the last record it applied (logAppliedKey), in the transaction that
// applied it; at Open the records above it are applied again, before
// anything else runs. Once every record is applied the log starts again
// at the front of the file, which is thus written over, never grown, most
// of the time.

const (
	logRecordHeader = 16
	// logChunk is how far ahead of the records the file is written with
	// zeros: a write into blocks the file already has makes the
	// fdatasync flush the data alone, not the file system's metadata.
	logChunk = 1 << 20
	// maxLogBytes bounds the log: past it, the next group waits for the
	// writer to apply every record, then goes at the front.
	maxLogBytes = 64 << 20
	// maxLogRecord bounds a record's payload: Create refuses a larger
	// one, and it is read back as the end of the log.
	maxLogRecord = 1 << 30
	// applyLinger is how long creations logged may wait for the writer
	// when nothing else does: one commit applies more of them, and the
	// disk syncs less. A call that needs them applied does not wait for
	// it (Store.hurry). Against 10 ms, 50 ms raised bolt's creations
	// head to head with memory's by 0.06 to 0.08 (docs/sizing.md): a
	// fifth of the commits, whose syncs no longer slow the log's.
	applyLinger = 50 * time.Millisecond
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// logAppliedKey, in the meta bucket, holds the sequence number of the
	// last record of the log applied (8 bytes, big-endian).
	logAppliedKey = []byte("log_applied")
)

// creationLog is the log file, written by the logger alone.
type creationLog struct {
	f *os.File
	// off is where the next group goes, and written how much of the file
	// is written (records or zeros).
	off, written int64
	buf          []byte
}

// logRecord is a record read back: its sequence number and payload.
type logRecord struct {
	seq     uint64
	payload []byte
}

// openLog opens the log at path, creating it when missing, and returns
// it with the records it holds, in order. The next group goes at the
// front.
func openLog(path string) (*creationLog, []logRecord, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("bolt: opening the creation log: %w", err)
	}
	// Its name (and the bolt file's) must survive a power cut too: at
	// every open, not only when the file is new, since a process killed
	// after creating it may not have synced the directory.
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("bolt: syncing the directory of the creation log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("bolt: reading the creation log %s: %w", path, err)
	}
	return &creationLog{f: f, written: int64(len(data))}, readLog(data), nil
}

// syncDir syncs the directory at path, so that the names it holds are
// durable, where the system can.
func syncDir(path string) error {
	if !dirsSync {
		return nil
	}
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// empty empties the log, once every record it holds is applied: the next
// run's records can then never follow an earlier run's.
func (l *creationLog) empty() error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	l.off, l.written = 0, 0
	return fdatasync(l.f)
}

// readLog returns the records at the front of data that check.
func readLog(data []byte) []logRecord {
	var recs []logRecord
	for off := 0; off+logRecordHeader <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off : off+4]))
		if n == 0 || n > maxLogRecord || off+logRecordHeader+n > len(data) {
			break
		}
		body := data[off+8 : off+logRecordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(data[off+4:off+8]) {
			break
		}
		seq := binary.BigEndian.Uint64(body[:8])
		if len(recs) > 0 && seq != recs[len(recs)-1].seq+1 {
			break
		}
		recs = append(recs, logRecord{seq: seq, payload: body[8:]})
		off += logRecordHeader + n
	}
	return recs
}

// errLogNoRoom is append's error when the file could not be written ahead
// (a full disk): nothing of the group was written.
var errLogNoRoom = errors.New("bolt: no room for the creation log")

// append writes the payloads as records numbered from first on, where
// the last group ended, and syncs them. An error other than errLogNoRoom
// leaves the log in a state it cannot tell.
func (l *creationLog) append(payloads [][]byte, first uint64) error {
	l.buf = l.buf[:0]
	for i, p := range payloads {
		start := len(l.buf)
		l.buf = binary.BigEndian.AppendUint32(l.buf, uint32(len(p)))
		l.buf = append(l.buf, 0, 0, 0, 0)
		l.buf = binary.BigEndian.AppendUint64(l.buf, first+uint64(i))
		l.buf = append(l.buf, p...)
		binary.BigEndian.PutUint32(l.buf[start+4:], crc32.Checksum(l.buf[start+8:], castagnoli))
	}
	// The file is written ahead in zeros: the records go into blocks it
	// already has.
	end := l.off + int64(len(l.buf))
	for l.written < end {
		if _, err := l.f.WriteAt(zeroChunk[:], l.written); err != nil {
			return fmt.Errorf("%w: %w", errLogNoRoom, err)
		}
		l.written += logChunk
	}
	if _, err := l.f.WriteAt(l.buf, l.off); err != nil {
		return fmt.Errorf("bolt: writing the creation log: %w", err)
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("bolt: syncing the creation log: %w", err)
	}
	l.off = end
	return nil
}

// zeroChunk is what the log's file is written ahead with; never written
// to, it stays pages of zeros the process shares with the system.
var zeroChunk [logChunk]byte

// creationRecord is a creation as logged: what applying it writes, each
// field empty when it has none.
type creationRecord struct {
	id, account, typeName, body []byte
	// groupK and taskIDK are its index keys.
	groupK, taskIDK []byte
	// idemK, idemValue and idemAgeK are its idempotency record, and
	// oldIdemAgeK the age key of the expired record it replaces.
	idemK, idemValue, idemAgeK, oldIdemAgeK []byte
}

// fields returns the record's fields, in their order on disk.
func (r *creationRecord) fields() []*[]byte {
	return []*[]byte{&r.id, &r.account, &r.typeName, &r.body, &r.groupK, &r.taskIDK,
		&r.idemK, &r.idemValue, &r.idemAgeK, &r.oldIdemAgeK}
}

// size bounds the length of the record's payload.
func (r *creationRecord) size() int {
	n := 0
	for _, f := range r.fields() {
		n += binary.MaxVarintLen32 + len(*f)
	}
	return n
}

// encode returns the record's payload: each field as its length (a
// uvarint), then its bytes.
func (r *creationRecord) encode() []byte {
	b := make([]byte, 0, r.size())
	for _, f := range r.fields() {
		b = binary.AppendUvarint(b, uint64(len(*f)))
		b = append(b, *f...)
	}
	return b
}

var errBadRecord = errors.New("bolt: creation log record does not decode")

// decodeCreation decodes a payload of encode.
func decodeCreation(p []byte) (*creationRecord, error) {
	r := new(creationRecord)
	for _, f := range r.fields() {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil, errBadRecord
		}
		if n > 0 {
			*f = p[k : k+int(n) : k+int(n)]
		}
		p = p[k+int(n):]
	}
	if len(p) != 0 || len(r.id) == 0 || len(r.typeName) == 0 || len(r.body) == 0 {
		return nil, errBadRecord
	}
	return r, nil
}

// applyCreation writes the creation of record seq to bolt, and notes seq
// as applied. A creation whose task is there already is not applied
// again (the logger decided it would not be: a defence, not a path).
func applyCreation(tx *bbolt.Tx, r *creationRecord, seq uint64) error {
	// In order, or not at all: bolt must never note as applied a record
	// it skipped.
	if prev := logApplied(tx); prev != seq-1 {
		return fmt.Errorf("bolt: creation log record %d comes after record %d", seq, prev)
	}
	if err := tx.Bucket(bucketMeta).Put(logAppliedKey, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return err
	}
	tasks := tasksBucket(tx)
	if tasks.Get(r.id) != nil {
		return nil
	}
	if r.oldIdemAgeK != nil {
		if err := tx.Bucket(bucketIdemAge).Delete(r.oldIdemAgeK); err != nil {
			return err
		}
	}
	q, err := typeQueue(tx, r.typeName, true)
	if err != nil {
		return err
	}
	qseq, err := q.NextSequence()
	if err != nil {
		return err
	}
	if err := enqueue(q, string(r.account), qseq, r.id); err != nil {
		return err
	}
	err = putAll(
		put{tasks, r.id, encodeValue(header{seq: qseq}, r.body)},
		put{tx.Bucket(bucketByGroup), r.groupK, nil},
		put{tx.Bucket(bucketByTaskID), r.taskIDK, nil},
		put{tx.Bucket(bucketIdem), r.idemK, r.idemValue},
		put{tx.Bucket(bucketIdemAge), r.idemAgeK, nil},
	)
	if err != nil {
		return err
	}
	return addDepth(tx, r.typeName, 1)
}

// logApplied returns the sequence number of the last log record applied.
func logApplied(tx *bbolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(logAppliedKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// creation is one Create, from its caller to the logger and the writer.
type creation struct {
	rec       creationRecord
	idem      *task.Idempotency
	idemSince time.Time
	// seq is its record's number, once logged.
	seq uint64
	// prevIdem is the pending creation of the same idempotency key it
	// took the place of (expired), if any.
	prevIdem *creation
	// replay and err are its answer, given when done is closed.
	replay *task.Idempotency
	err    error
	done   chan struct{}
}

// apply applies the logged creation in the writer's transaction.
func (c *creation) apply(tx *bbolt.Tx) error { return applyCreation(tx, &c.rec, c.seq) }

// logLoop logs the creations handed to it, in groups, until the store
// closes.
func (s *Store) logLoop() {
	defer close(s.logStopped)
	group := make([]*creation, 0, s.maxBatch)
	for {
		select {
		case <-s.closing:
			return
		case c := <-s.creates:
			group = append(group[:0], c)
		}
		// As the writer does: the callers just answered join this group.
		runtime.Gosched()
		group = gather(group, s.creates, s.maxBatch)
		s.logGroup(group)
		clear(group)
	}
}

// logGroup decides each creation of the group as it would be alone, in
// order, logs those to be made, hands them to the writer and answers
// every caller.
func (s *Store) logGroup(group []*creation) {
	defer func() {
		for _, c := range group {
			close(c.done)
		}
	}()
	if err := s.broken.Load(); err != nil {
		failGroup(group, *err)
		return
	}
	if err := s.makeRoom(); err != nil {
		failGroup(group, err)
		return
	}
	first := s.seq + 1
	var made []*creation
	var payloads [][]byte
	// The lock is taken before the snapshot: a creation applied after
	// the snapshot began is still pending.
	s.mu.Lock()
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, c := range group {
			if err := s.decide(tx, c); err != nil {
				c.err = err
				continue
			}
			if c.replay != nil {
				continue
			}
			s.seq++
			c.seq = s.seq
			s.pendingIDs[string(c.rec.id)] = c
			if c.idem != nil {
				c.prevIdem = s.pendingIdem[string(c.rec.idemK)]
				s.pendingIdem[string(c.rec.idemK)] = c
			}
			made = append(made, c)
			payloads = append(payloads, c.rec.encode())
		}
		return nil
	})
	s.mu.Unlock()
	if err == nil && len(made) > 0 {
		err = s.log.append(payloads, first)
	}
	if errors.Is(err, errLogNoRoom) {
		// Nothing was written: the group fails, the store goes on.
		s.mu.Lock()
		for _, c := range slices.Backward(made) {
			s.forget(c)
		}
		s.mu.Unlock()
		s.seq = first - 1
		failGroup(group, err)
		return
	}
	if err != nil {
		s.fail(err)
		failGroup(group, *s.broken.Load())
		return
	}
	if len(made) == 0 {
		return
	}
	s.logSyncs.Add(1)
	s.loggedCount.Add(uint64(len(made)))
	s.mu.Lock()
	before := len(s.applies)
	s.applies = append(s.applies, made...)
	s.logged.Store(s.seq)
	// The writer is woken when it has creations to start lingering for,
	// and when they fill half a batch (see writeLoop): a wake-up at each
	// group would only find it lingering.
	half := s.maxBatch / 2
	wake := before == 0 || before < half && len(s.applies) >= half
	s.mu.Unlock()
	if wake {
		select {
		case s.applyReady <- struct{}{}:
		default:
		}
	}
}

// failGroup answers every creation of a group that was not logged with
// err: those decided from the others too.
func failGroup(group []*creation, err error) {
	for _, c := range group {
		c.replay, c.err = nil, err
	}
}

// forget takes c out of the creations pending, applied or never logged;
// s.mu is held. Its idempotency key goes back to the pending creation c
// took it from, if that one is still pending (never once c is applied:
// the writer applies in order).
func (s *Store) forget(c *creation) {
	delete(s.pendingIDs, string(c.rec.id))
	if c.idem == nil || s.pendingIdem[string(c.rec.idemK)] != c {
		return
	}
	if p := c.prevIdem; p != nil && s.pendingIDs[string(p.rec.id)] == p {
		s.pendingIdem[string(c.rec.idemK)] = p
	} else {
		delete(s.pendingIdem, string(c.rec.idemK))
	}
}

// makeRoom starts the log again at the front of its file once every
// record is applied; past maxLogBytes it waits for that.
func (s *Store) makeRoom() error {
	for {
		s.mu.Lock()
		advanced := s.advanced
		s.mu.Unlock()
		if s.applied.Load() == s.logged.Load() {
			s.log.off = 0
			return nil
		}
		if s.log.off < maxLogBytes {
			return nil
		}
		if err := s.broken.Load(); err != nil {
			return *err
		}
		select {
		case <-advanced:
		case <-s.closing:
			return ErrClosed
		}
	}
}

// decide decides a creation from bolt (tx) and the creations pending:
// task.ErrExists, a replay (c.replay), or to be made, replacing an
// expired idempotency record (c.rec.oldIdemAgeK).
func (s *Store) decide(tx *bbolt.Tx, c *creation) error {
	if c.idem != nil {
		var rec *task.Idempotency
		var ageK []byte
		if p := s.pendingIdem[string(c.rec.idemK)]; p != nil {
			copied := *p.idem
			rec, ageK = &copied, p.rec.idemAgeK
		} else if v := tx.Bucket(bucketIdem).Get(c.rec.idemK); v != nil {
			rec = new(task.Idempotency)
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("bolt: decoding idempotency record: %w", err)
			}
			ageK = timeKey(rec.CreatedAt, c.rec.idemK)
		}
		c.rec.oldIdemAgeK = nil
		if rec != nil {
			if !rec.CreatedAt.Before(c.idemSince) {
				c.replay = rec
				return nil
			}
			// Expired: the key starts a new life.
			c.rec.oldIdemAgeK = ageK
		}
	}
	if _, ok := s.pendingIDs[string(c.rec.id)]; ok || tasksBucket(tx).Get(c.rec.id) != nil {
		return task.ErrExists
	}
	return nil
}
