package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/task"
)

// TestReadLog checks which records of a log are read back: those in a
// run of numbers, up to the first that does not check.
func TestReadLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, recs, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	if len(recs) != 0 {
		t.Fatalf("a new log holds %d records", len(recs))
	}
	payload := func(i int) []byte { return []byte(fmt.Sprintf("record-%d", i)) }
	if err := l.append([][]byte{payload(1), payload(2)}, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.append([][]byte{payload(3)}, 3); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != logChunk {
		t.Errorf("the file is %d bytes, want one chunk written ahead (%d)", len(data), logChunk)
	}
	check := func(name string, data []byte, want int) {
		t.Helper()
		recs := readLog(data)
		if len(recs) != want {
			t.Fatalf("%s: %d records read, want %d", name, len(recs), want)
		}
		for i, r := range recs {
			if r.seq != uint64(i+1) || string(r.payload) != string(payload(i+1)) {
				t.Fatalf("%s: record %d is %d %q", name, i, r.seq, r.payload)
			}
		}
	}
	check("whole", data, 3)
	size := logRecordHeader + len(payload(1))
	check("the last cut short", data[:3*size-1], 2)
	flipped := append([]byte(nil), data...)
	flipped[size+logRecordHeader] ^= 1
	check("the second's payload changed", flipped, 1)
	// A new pass at the front, shorter than the last: the last pass's
	// third record follows, with a number out of the run.
	l.off = 0
	if err := l.append([][]byte{payload(1), payload(2)}, 4); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs = readLog(data)
	if len(recs) != 2 || recs[0].seq != 4 || recs[1].seq != 5 {
		t.Fatalf("after a new pass: %+v, want records 4 and 5", recs)
	}
}

// TestCreationRecordRoundTrip checks the payload of a creation, absent
// fields included, and that a payload cut short or overlong is refused.
func TestCreationRecordRoundTrip(t *testing.T) {
	r := creationRecord{id: []byte("req-1"), account: []byte("acme"), typeName: []byte("verify/pan"),
		body: []byte(`{"a":1}`), groupK: []byte("g-key"), idemK: []byte("k"), idemValue: []byte(`{}`), idemAgeK: []byte("age")}
	p := r.encode()
	got, err := decodeCreation(p)
	if err != nil {
		t.Fatal(err)
	}
	want := r.fields()
	for i, f := range got.fields() {
		if string(*f) != string(*want[i]) || (*f == nil) != (*want[i] == nil) {
			t.Errorf("field %d: %q, want %q", i, *f, *want[i])
		}
	}
	for _, bad := range [][]byte{p[:len(p)-1], append(p[:len(p):len(p)], 0), nil} {
		if _, err := decodeCreation(bad); err == nil {
			t.Errorf("decodeCreation(%q) succeeded", bad)
		}
	}
}

// openStore opens the store at path and closes it when the test ends.
func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// crash stops s as a crash would, as far as the store goes: the writer
// applies nothing more, and the log is left as it is.
func crash(s *Store) {
	err := errors.New("crash")
	s.broken.Store(&err)
	s.Close()
}

// testTask is the i-th task of a test creation, of account acme.
func testTask(i int) *task.Task {
	return &task.Task{RequestID: fmt.Sprintf("req-%04d", i), AccountID: "acme", Action: "verify", Type: "pan",
		Status: task.InProgress, CreatedAt: time.Now(), TaskID: fmt.Sprintf("t-%d", i), GroupID: "g",
		Data: []byte(`{"n":1}`)}
}

// logCreations writes to the log of the closed store at path the
// creations of tasks from, numbered on from the last record bolt applied
// plus skip, as a store stopped before applying them leaves them.
func logCreations(t *testing.T, path string, skip uint64, from, n int) {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	first := s.applied.Load() + 1 + skip
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, _, err := openLog(path + "-log")
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	var payloads [][]byte
	for i := from; i < from+n; i++ {
		r, err := recordOf(testTask(i))
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, r.encode())
	}
	if err := l.append(payloads, first); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAppliesLog checks that Open applies the creations a crash left
// in the log alone, once: each can be read, counted and claimed, and a
// second Open applies nothing again.
func TestOpenAppliesLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	ctx := t.Context()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, testTask(0), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-log"); err != nil || fi.Size() != 0 {
		t.Fatalf("the log after Close: %v, %v; want it empty", fi, err)
	}
	logCreations(t, path, 0, 1, 5)
	for round := range 2 {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{5, 1}[round]; s.Replayed() != want {
			t.Errorf("round %d: Replayed %d, want %d", round, s.Replayed(), want)
		}
		n := 6 + round
		for i := range n {
			if _, err := s.Get(ctx, "acme", testTask(i).RequestID); err != nil {
				t.Errorf("round %d: task %d: %v", round, i, err)
			}
		}
		if d, err := s.QueueDepth(ctx, "verify/pan"); err != nil || d != n {
			t.Errorf("round %d: depth %d, %v; want %d", round, d, err, n)
		}
		if round == 1 {
			claimed, err := s.Claim(ctx, "verify/pan", 10, time.Now().Add(time.Minute))
			if err != nil || len(claimed) != n {
				t.Errorf("claimed %d, %v; want %d", len(claimed), err, n)
			}
		}
		if round == 1 {
			s.Close()
			break
		}
		// Open emptied the log: what it held is in bolt.
		if fi, err := os.Stat(path + "-log"); err != nil || fi.Size() != 0 {
			t.Fatalf("the log after Open: %v, %v; want it empty", fi, err)
		}
		// A sixth creation, acknowledged; then a crash, as far as the
		// store goes: the writer applies nothing more and Close leaves the
		// log as it is.
		if _, err := s.Create(ctx, testTask(6), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		crash(s)
	}
}

// TestApplyInOrder checks that bolt refuses a creation out of the log's
// order: it must never note as applied a record it skipped.
func TestApplyInOrder(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "tasks.db"))
	r, err := recordOf(testTask(1))
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error { return applyCreation(tx, &r, s.applied.Load()+2) })
	if err == nil || !strings.Contains(err.Error(), "comes after record") {
		t.Fatalf("a record applied past a missing one: %v", err)
	}
}

// TestOpenAfterTornGroup checks that a group a crash tore (its first
// record cut short, a later one whole, neither acknowledged) is not
// applied, then or after a second crash: Open empties the log, so that
// the next run's records never run on into the torn group's.
func TestOpenAfterTornGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	logCreations(t, path, 0, 1, 2)
	data, err := os.ReadFile(path + "-log")
	if err != nil {
		t.Fatal(err)
	}
	data[5] ^= 0xff // the first record's checksum
	if err := os.WriteFile(path+"-log", data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for round := range 2 {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		// At the second Open, the one acknowledged creation at most.
		if s.Replayed() > round {
			t.Errorf("round %d: %d creations applied from the log", round, s.Replayed())
		}
		for i := 1; i <= 2; i++ {
			if _, err := s.Get(ctx, "acme", testTask(i).RequestID); !errors.Is(err, task.ErrNotFound) {
				t.Errorf("round %d: task %d of the torn group: %v, want ErrNotFound", round, i, err)
			}
		}
		if round == 1 {
			if _, err := s.Get(ctx, "acme", testTask(3).RequestID); err != nil {
				t.Errorf("the task created after the tear: %v", err)
			}
			s.Close()
			break
		}
		// A creation of the same size as the torn group's first, then a
		// crash before anything else is logged.
		if _, err := s.Create(ctx, testTask(3), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		crash(s)
	}
}

// TestOpenRefusesStrangeLog checks that a log whose records do not follow
// what bolt applied, or that does not decode, stops Open with a clear
// error.
func TestOpenRefusesStrangeLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	logCreations(t, path, 3, 0, 2)
	if s, err := Open(path); err == nil || !strings.Contains(err.Error(), "not of the same run") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with a log ahead of bolt: %v", err)
	}
	if err := os.Remove(path + "-log"); err != nil {
		t.Fatal(err)
	}
	l, _, err := openLog(path + "-log")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.append([][]byte{[]byte("not a creation")}, 1); err != nil {
		t.Fatal(err)
	}
	l.f.Close()
	if s, err := Open(path); err == nil || !strings.Contains(err.Error(), "does not decode") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with a record that does not decode: %v", err)
	}
}

// TestCreationsSameKeyTogether checks that concurrent creations with one
// idempotency key make one task, whether they share a group or one is
// pending when the other is decided, and that the others replay it.
func TestCreationsSameKeyTogether(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "tasks.db"))
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	made, replays := 0, map[string]int{}
	for i := range 32 {
		wg.Go(func() {
			tk := testTask(i)
			idem := &task.Idempotency{AccountID: "acme", Key: "same", RequestID: tk.RequestID, CreatedAt: time.Now()}
			rec, err := s.Create(ctx, tk, idem, time.Now().Add(-time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case rec == nil:
				made++
			default:
				replays[rec.RequestID]++
			}
		})
	}
	wg.Wait()
	if made != 1 || len(replays) != 1 {
		t.Fatalf("%d made, replays of %v; want 1 made, the others replaying it", made, replays)
	}
	if n, err := s.QueueDepth(ctx, "verify/pan"); err != nil || n != 1 {
		t.Fatalf("depth %d, %v; want 1", n, err)
	}
}

// TestLogStartsAgain checks that the log goes back to the front of its
// file once its records are applied, so that it stays one chunk.
func TestLogStartsAgain(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "tasks.db"))
	ctx := t.Context()
	for i := range 200 {
		if _, err := s.Create(ctx, testTask(i), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		// Applied before the next creation: each starts at the front.
		if _, err := s.QueueDepth(ctx, "verify/pan"); err != nil {
			t.Fatal(err)
		}
	}
	if s.log.written != logChunk {
		t.Fatalf("the log wrote %d bytes, want one chunk (%d)", s.log.written, logChunk)
	}
	if s.applied.Load() != 200 || s.logged.Load() != 200 {
		t.Fatalf("logged %d, applied %d; want 200", s.logged.Load(), s.applied.Load())
	}
}

// TestLogNoRoom checks that a group the log could not make room for (a
// full disk) fails alone: nothing of it is stored, and the store goes on.
func TestLogNoRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	s := openStore(t, path)
	ctx := t.Context()
	// A handle that cannot write: the log's first write, ahead of its
	// records, fails as on a full disk.
	readOnly, err := os.Open(path + "-log")
	if err != nil {
		t.Fatal(err)
	}
	f := s.log.f
	s.log.f = readOnly
	idem := &task.Idempotency{AccountID: "acme", Key: "k", RequestID: testTask(1).RequestID, CreatedAt: time.Now()}
	if _, err := s.Create(ctx, testTask(1), idem, time.Now().Add(-time.Hour)); !errors.Is(err, errLogNoRoom) {
		t.Fatalf("Create with no room: %v, want errLogNoRoom", err)
	}
	s.log.f = f
	readOnly.Close()
	if _, err := s.Get(ctx, "acme", testTask(1).RequestID); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("the task that failed: %v, want ErrNotFound", err)
	}
	// The key was not taken: the next creation with it makes its task.
	idem.RequestID = testTask(2).RequestID
	if rec, err := s.Create(ctx, testTask(2), idem, time.Now().Add(-time.Hour)); err != nil || rec != nil {
		t.Fatalf("Create after: %v, %v; want a new task", rec, err)
	}
	if _, err := s.Get(ctx, "acme", testTask(2).RequestID); err != nil {
		t.Fatal(err)
	}
}

// TestCreateRacingClose closes the store while creations are handed over
// and waiting: each is answered, stored when it succeeded and absent when
// it failed with ErrClosed, and none waits forever. A creation still
// queued when the logger stops is answered ErrClosed: without that, this
// test waits forever nearly every run.
func TestCreateRacingClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	s := openStore(t, path)
	ctx := t.Context()
	var made, refused sync.Map
	var next atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				tk := testTask(i)
				_, err := s.Create(ctx, tk, nil, time.Time{})
				if err == nil {
					made.Store(tk.RequestID, true)
					select {
					case started <- struct{}{}:
					default:
					}
					continue
				}
				if !errors.Is(err, ErrClosed) {
					t.Errorf("Create %s: %v, want nil or ErrClosed", tk.RequestID, err)
				}
				refused.Store(tk.RequestID, true)
				return
			}
		})
	}
	closeRacing(t, s, started, 64, &wg)

	s = openStore(t, path)
	check := func(m *sync.Map, want bool) (n int) {
		m.Range(func(k, _ any) bool {
			_, err := s.Find(ctx, k.(string))
			if found := err == nil; found != want {
				t.Errorf("task %s: found %v (%v), want %v", k, found, err, want)
			}
			n++
			return true
		})
		return n
	}
	if n := check(&made, true); n == 0 {
		t.Fatal("no creation succeeded before Close")
	}
	if n := check(&refused, false); n != 64 {
		t.Fatalf("%d creations refused, want one per creator (64)", n)
	}
}

// closeRacing closes s once n calls were answered (a signal each on
// started), then waits for every caller of wg to be answered, failing the
// test after 30s for either.
func closeRacing(t *testing.T, s *Store, started <-chan struct{}, n int, wg *sync.WaitGroup) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-started:
		case <-deadline:
			t.Fatalf("fewer than %d calls answered in 30s", n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() { wg.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("a call is still waiting 30s after Close")
	}
}
