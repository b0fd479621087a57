package usage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeStore keeps rows in memory and fails while failing is set.
type fakeStore struct {
	// purges, when not nil, receives the day of each PurgeUsage.
	purges  chan string
	mu      sync.Mutex
	rows    map[[3]string]Counts
	writes  int
	failing bool
}

func (f *fakeStore) AddUsage(_ context.Context, rows []Row) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return errors.New("store down")
	}
	if f.rows == nil {
		f.rows = map[[3]string]Counts{}
	}
	f.writes++
	for _, r := range rows {
		k := [3]string{r.AccountID, r.Day, r.TaskType}
		c := f.rows[k].Clone()
		c.Add(r.Counts)
		f.rows[k] = c
	}
	return nil
}

func (f *fakeStore) Usage(context.Context, string, string, string) ([]Row, error) { return nil, nil }
func (f *fakeStore) PurgeUsage(_ context.Context, before string) (int, error) {
	if f.purges != nil {
		f.purges <- before
	}
	return 0, nil
}

func (f *fakeStore) get(account, day, taskType string) Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rows[[3]string{account, day, taskType}]
}

func TestMeterFlushesWhatItCounted(t *testing.T) {
	now := time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC)
	store := &fakeStore{}
	m := NewMeter(MeterConfig{Store: store, Clock: func() time.Time { return now }})
	const pan = "verify_with_source/ind_pan"
	m.Request("acme", pan, "")
	m.Request("acme", pan, "TOO_MANY_REQUESTS")
	m.Request("acme", "", "IP_NOT_ALLOWED")
	m.TaskCreated("acme", pan)
	m.TaskEnded("acme", pan, false)
	m.TaskEnded("acme", pan, true)
	now = now.Add(time.Second) // the next day
	m.Request("acme", pan, "")
	m.Request("other", pan, "")
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := store.get("acme", "2026-11-25", pan)
	want := Counts{Requests: 2, Rejected: map[string]int64{"too_many_requests": 1}, Created: 1, Completed: 1, Failed: 1}
	if !equal(got, want) {
		t.Errorf("acme 2026-11-25 %s = %+v, want %+v", pan, got, want)
	}
	if got, want := store.get("acme", "2026-11-25", ""), (Counts{Requests: 1, Rejected: map[string]int64{"ip_not_allowed": 1}}); !equal(got, want) {
		t.Errorf("acme 2026-11-25 no type = %+v, want %+v", got, want)
	}
	if got := store.get("acme", "2026-11-26", pan); got.Requests != 1 {
		t.Errorf("acme 2026-11-26 = %+v, want 1 request", got)
	}
	if got := store.get("other", "2026-11-26", pan); got.Requests != 1 {
		t.Errorf("other 2026-11-26 = %+v, want 1 request", got)
	}
	// The totals count everything, flushed or not.
	if got, want := m.Totals(), (Totals{Requests: 5, Created: 1, Ended: 2}); got != want {
		t.Errorf("Totals() = %+v, want %+v", got, want)
	}
	// Nothing new: no write.
	writes := store.writes
	if err := m.Flush(context.Background()); err != nil || store.writes != writes {
		t.Fatalf("empty flush: err %v, %d writes, want none", err, store.writes-writes)
	}
}

func TestMeterKeepsCountsWhenTheStoreFails(t *testing.T) {
	store := &fakeStore{failing: true}
	m := NewMeter(MeterConfig{Store: store})
	m.Request("acme", "", "TOO_MANY_REQUESTS")
	if err := m.Flush(context.Background()); err == nil {
		t.Fatal("Flush to a failing store: want an error")
	}
	m.Request("acme", "", "TOO_MANY_REQUESTS")
	store.failing = false
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := Counts{Requests: 2, Rejected: map[string]int64{"too_many_requests": 2}}
	if got := store.get("acme", Day(time.Now()), ""); !equal(got, want) {
		t.Fatalf("after a failed flush and a good one: %+v, want %+v", got, want)
	}
}

// partialStore stores the rows of account "a" and fails the others, as a
// store of shards whose second shard is down.
type partialStore struct{ fakeStore }

func (p *partialStore) AddUsage(ctx context.Context, rows []Row) error {
	var ok []Row
	stored := make([]bool, len(rows))
	for i, r := range rows {
		if r.AccountID == "a" {
			ok, stored[i] = append(ok, r), true
		}
	}
	if err := p.fakeStore.AddUsage(ctx, ok); err != nil {
		return err
	}
	if len(ok) == len(rows) {
		return nil
	}
	return &PartialError{Stored: stored, Err: errors.New("shard down")}
}

func TestMeterRetriesOnlyWhatWasNotStored(t *testing.T) {
	store := &partialStore{}
	m := NewMeter(MeterConfig{Store: store})
	m.Request("a", "", "")
	m.Request("b", "", "")
	if err := m.Flush(context.Background()); err == nil {
		t.Fatal("Flush with a shard down: want an error")
	}
	// "b" is written again at the next flush; "a", stored, is not.
	m.Request("b", "", "")
	store2 := &fakeStore{}
	m.store = store2
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.get("a", Day(time.Now()), ""); got.Requests != 1 {
		t.Fatalf("a: %+v stored, want 1 request", got)
	}
	if got := store2.get("a", Day(time.Now()), ""); got.Requests != 0 {
		t.Fatalf("a written again: %+v, want nothing", got)
	}
	if got := store2.get("b", Day(time.Now()), ""); got.Requests != 2 {
		t.Fatalf("b: %+v, want its 2 requests", got)
	}
}

func TestMeterRunFlushesOnStop(t *testing.T) {
	store := &fakeStore{}
	m := NewMeter(MeterConfig{Store: store})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An interval no test waits for: only the last flush can write.
		m.Run(ctx, time.Hour, time.Second, func(err error) { t.Error(err) })
	}()
	m.TaskCreated("acme", "a/b")
	cancel()
	<-done
	if got := store.get("acme", Day(time.Now()), "a/b"); got.Created != 1 {
		t.Fatalf("after Run stopped: %+v, want 1 task created", got)
	}
}

func TestMeterRunPurgesOldDays(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	store := &fakeStore{purges: make(chan string, 1)}
	m := NewMeter(MeterConfig{Store: store, Clock: func() time.Time { return now }})
	m.Retention = 10 * 24 * time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, time.Millisecond, time.Second, func(err error) { t.Error(err) })
	}()
	select {
	case before := <-store.purges:
		if before != "2026-11-15" {
			t.Errorf("purged before %s, want 2026-11-15", before)
		}
	case <-time.After(10 * time.Second):
		t.Error("no purge within 10s")
	}
	cancel()
	<-done
}

func TestMeterConcurrentCounting(t *testing.T) {
	store := &fakeStore{}
	m := NewMeter(MeterConfig{Store: store})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				m.Request([]string{"a", "b", "c"}[(g+i)%3], "", "")
				if i%100 == 0 {
					_ = m.Flush(context.Background())
				}
			}
		})
	}
	wg.Wait()
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, id := range []string{"a", "b", "c"} {
		total += store.get(id, Day(time.Now()), "").Requests
	}
	if total != 8000 {
		t.Fatalf("%d requests counted, want 8000", total)
	}
}

func equal(a, b Counts) bool {
	if a.Requests != b.Requests || a.Created != b.Created || a.Completed != b.Completed || a.Failed != b.Failed || len(a.Rejected) != len(b.Rejected) {
		return false
	}
	for k, v := range a.Rejected {
		if b.Rejected[k] != v {
			return false
		}
	}
	return true
}

func TestMeterDropsIdsNoAccountCanHave(t *testing.T) {
	store := &fakeStore{}
	m := NewMeter(MeterConfig{Store: store})
	m.Request("acme", "", "")
	m.TaskCreated("system:serviceaccount:ns:bot", "a/b") // a user of another auth handler
	m.Request("", "", "INVALID_CREDENTIALS")             // the stand-in of unknown ids
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.get("acme", Day(time.Now()), ""); got.Requests != 1 {
		t.Fatalf("acme: %+v, want its request stored", got)
	}
	if len(store.rows) != 1 {
		t.Fatalf("%d rows stored, want only acme's", len(store.rows))
	}
}
