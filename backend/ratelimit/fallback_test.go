package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/internal/redistest"
)

// primaryAnswerMark is what fakePrimary answers when it works, unlike any
// answer of the fallback.
var primaryAnswerMark = Result{Allowed: true, Remaining: 4242}

var errPrimaryDown = errors.New("primary down")

// fakePrimary is a primary store that works, fails or blocks as told.
type fakePrimary struct {
	calls atomic.Int64

	mu sync.Mutex
	// err, when set, is what every call fails with.
	err error
	// hold, when set, blocks every call until it is closed (then answers
	// as err says) or, if heedCtx, until its context ends.
	hold    chan struct{}
	heedCtx bool
	// entered, when set, receives one value per call on entry.
	entered chan struct{}
	// returned, when set, receives one value per call on return (if there
	// is room).
	returned chan struct{}
}

func (p *fakePrimary) set(err error, hold chan struct{}, heedCtx bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err, p.hold, p.heedCtx = err, hold, heedCtx
}

func (p *fakePrimary) Take(ctx context.Context, _ string, _ Limit) (Result, error) {
	p.calls.Add(1)
	p.mu.Lock()
	hold, heedCtx, entered, returned := p.hold, p.heedCtx, p.entered, p.returned
	p.mu.Unlock()
	if returned != nil {
		defer func() {
			select {
			case returned <- struct{}{}:
			default:
			}
		}()
	}
	if entered != nil {
		entered <- struct{}{}
	}
	if hold != nil {
		if heedCtx {
			select {
			case <-hold:
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		} else {
			<-hold
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return Result{}, p.err
	}
	return primaryAnswerMark, nil
}

// stateChanges records what OnStateChange was told.
type stateChanges struct {
	mu      sync.Mutex
	changes []stateChange
}

type stateChange struct {
	degraded bool
	err      error
}

func (s *stateChanges) record(degraded bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, stateChange{degraded, err})
}

func (s *stateChanges) get() []stateChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stateChange(nil), s.changes...)
}

type fallbackFixture struct {
	f       *Fallback
	primary *fakePrimary
	clock   *fakeClock
	local   *Memory
	changes *stateChanges
}

func newFallbackFixture(t *testing.T, cfg FallbackConfig) *fallbackFixture {
	t.Helper()
	x := &fallbackFixture{primary: &fakePrimary{}, clock: newFakeClock(), changes: &stateChanges{}}
	x.local = NewMemory(x.clock.Now)
	cfg.Clock = x.clock.Now
	cfg.OnStateChange = x.changes.record
	var err error
	x.f, err = NewFallback(x.primary, x.local, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *fallbackFixture) take(t *testing.T, l Limit) Result {
	t.Helper()
	res, err := x.f.Take(context.Background(), "a", l)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestFallbackAsksThePrimaryWhileItWorks(t *testing.T) {
	x := newFallbackFixture(t, FallbackConfig{})
	l := mustLimit(t, "1/h", 3)
	for range 5 {
		if res := x.take(t, l); res != primaryAnswerMark {
			t.Fatalf("answer %+v, want the primary's", res)
		}
	}
	if n := x.primary.calls.Load(); n != 5 {
		t.Fatalf("primary called %d times, want 5", n)
	}
	if x.local.Len() != 0 || len(x.changes.get()) != 0 || x.f.Degraded() {
		t.Fatal("the fallback was used while the primary works")
	}
}

func TestFallbackBreaker(t *testing.T) {
	x := newFallbackFixture(t, FallbackConfig{OpenFor: 2 * time.Second})
	l := mustLimit(t, "1/h", 3)

	// The primary fails: the local store answers, the breaker opens.
	x.primary.set(errPrimaryDown, nil, false)
	if res := x.take(t, l); !res.Allowed || res.Remaining != 2 {
		t.Fatalf("answer %+v, want the local store's first (2 remaining)", res)
	}
	if ch := x.changes.get(); len(ch) != 1 || !ch[0].degraded || !errors.Is(ch[0].err, errPrimaryDown) {
		t.Fatalf("state changes %+v, want degraded by %v", ch, errPrimaryDown)
	}
	// While open, calls skip the primary.
	for i, want := range []int64{1, 0} {
		if res := x.take(t, l); !res.Allowed || res.Remaining != want {
			t.Fatalf("call %d while open: %+v, want the local store's (%d remaining)", i, res, want)
		}
	}
	x.clock.Advance(2*time.Second - 1)
	if res := x.take(t, l); res.Allowed {
		t.Fatalf("just before the window ends: %+v, want the local store's refusal", res)
	}
	if n := x.primary.calls.Load(); n != 1 {
		t.Fatalf("primary called %d times while open, want only the first", n)
	}

	// After the window one probe: it fails, the breaker opens again,
	// without a new state change.
	x.clock.Advance(1)
	x.take(t, l)
	x.take(t, l)
	if n := x.primary.calls.Load(); n != 2 {
		t.Fatalf("primary called %d times, want one probe more", n)
	}
	if !x.f.Degraded() || len(x.changes.get()) != 1 {
		t.Fatalf("after a failed probe: degraded %v, changes %+v; want still degraded, no new change", x.f.Degraded(), x.changes.get())
	}

	// The next probe succeeds: the breaker closes.
	x.primary.set(nil, nil, false)
	x.clock.Advance(2 * time.Second)
	if res := x.take(t, l); res != primaryAnswerMark {
		t.Fatalf("probe: %+v, want the primary's answer", res)
	}
	if ch := x.changes.get(); len(ch) != 2 || ch[1].degraded || ch[1].err != nil {
		t.Fatalf("state changes %+v, want back to not degraded", ch)
	}
	for range 3 {
		if res := x.take(t, l); res != primaryAnswerMark {
			t.Fatalf("after closing: %+v, want the primary's answer", res)
		}
	}
	if n := x.primary.calls.Load(); n != 6 {
		t.Fatalf("primary called %d times, want 6", n)
	}
}

func TestFallbackTimesOutAPrimaryThatHeedsItsContext(t *testing.T) {
	for _, inline := range []bool{false, true} {
		x := newFallbackFixture(t, FallbackConfig{Timeout: time.Millisecond, PrimaryHeedsContext: inline})
		l := mustLimit(t, "1/h", 3)
		x.primary.set(nil, make(chan struct{}), true)
		if res := x.take(t, l); !res.Allowed || res.Remaining != 2 {
			t.Fatalf("PrimaryHeedsContext %v: answer %+v, want the local store's", inline, res)
		}
		if ch := x.changes.get(); len(ch) != 1 || !ch[0].degraded || !errors.Is(ch[0].err, context.DeadlineExceeded) {
			t.Fatalf("PrimaryHeedsContext %v: state changes %+v, want degraded by a deadline", inline, ch)
		}
	}
}

func TestFallbackDoesNotWaitForAPrimaryThatIgnoresItsContext(t *testing.T) {
	x := newFallbackFixture(t, FallbackConfig{Timeout: time.Millisecond})
	l := mustLimit(t, "1/h", 3)
	hold, returned := make(chan struct{}), make(chan struct{}, 1)
	x.primary.returned = returned
	x.primary.set(nil, hold, false)
	if res := x.take(t, l); !res.Allowed || res.Remaining != 2 {
		t.Fatalf("answer %+v, want the local store's", res)
	}
	if !x.f.Degraded() {
		t.Fatal("not degraded after a timeout")
	}
	// The abandoned call ends when the primary returns.
	close(hold)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the primary's call did not end")
	}
}

func TestFallbackProbesOneAtATime(t *testing.T) {
	x := newFallbackFixture(t, FallbackConfig{Timeout: time.Minute})
	l := mustLimit(t, "1/h", 3)
	x.primary.set(errPrimaryDown, nil, false)
	x.take(t, l)

	x.clock.Advance(time.Second)
	entered, hold := make(chan struct{}, 1), make(chan struct{})
	x.primary.mu.Lock()
	x.primary.entered = entered
	x.primary.mu.Unlock()
	x.primary.set(nil, hold, true)
	probe := make(chan Result, 1)
	go func() {
		res, _ := x.f.Take(context.Background(), "a", l)
		probe <- res
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no probe reached the primary")
	}
	// While the probe is out, others take the fallback.
	if res := x.take(t, l); !res.Allowed || res.Remaining != 1 {
		t.Fatalf("during the probe: %+v, want the local store's", res)
	}
	if n := x.primary.calls.Load(); n != 2 {
		t.Fatalf("primary called %d times, want the first and one probe", n)
	}
	close(hold)
	select {
	case res := <-probe:
		if res != primaryAnswerMark {
			t.Fatalf("probe: %+v, want the primary's answer", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the probe did not return")
	}
	if x.f.Degraded() {
		t.Fatal("still degraded after a successful probe")
	}
}

func TestFallbackCallerLeavingIsNoFault(t *testing.T) {
	x := newFallbackFixture(t, FallbackConfig{Timeout: time.Minute})
	l := mustLimit(t, "1/h", 3)
	entered := make(chan struct{}, 1)
	x.primary.entered = entered
	x.primary.set(nil, make(chan struct{}), true)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := x.f.Take(ctx, "a", l)
		errc <- err
	}()
	<-entered
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want the caller's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Take did not return when its caller left")
	}
	if x.f.Degraded() || len(x.changes.get()) != 0 {
		t.Fatal("a caller leaving opened the breaker")
	}
}

func TestFallbackModes(t *testing.T) {
	l := mustLimit(t, "10/s", 5)
	for _, tc := range []struct {
		mode OnStoreError
		want Result
	}{
		{OnStoreErrorAllow, Result{Allowed: true, Remaining: 4, ResetAfter: 100 * time.Millisecond}},
		{OnStoreErrorDeny, Result{RetryAfter: time.Second, ResetAfter: time.Second}},
	} {
		x := newFallbackFixture(t, FallbackConfig{OnStoreError: tc.mode})
		x.primary.set(errPrimaryDown, nil, false)
		for range 10 {
			if res := x.take(t, l); res != tc.want {
				t.Fatalf("%s: %+v, want %+v", tc.mode, res, tc.want)
			}
		}
		if x.local.Len() != 0 {
			t.Fatalf("%s: the local store was used", tc.mode)
		}
	}
}

func TestNewFallbackChecksItsConfig(t *testing.T) {
	p := &fakePrimary{}
	if _, err := NewFallback(p, nil, FallbackConfig{}); err == nil {
		t.Error("mode local without a local store: want an error")
	}
	if _, err := NewFallback(p, nil, FallbackConfig{OnStoreError: "ignore"}); err == nil {
		t.Error("unknown mode: want an error")
	}
	if _, err := NewFallback(nil, NewMemory(nil), FallbackConfig{}); err == nil {
		t.Error("no primary: want an error")
	}
	if _, err := NewFallback(p, nil, FallbackConfig{OnStoreError: OnStoreErrorDeny}); err != nil {
		t.Errorf("mode deny without a local store: %v", err)
	}
}

func TestFallbackConformance(t *testing.T) {
	testStore(t, func(t *testing.T, clock *fakeClock) Store {
		r, _ := newTestRedis(t)
		// The primary is healthy here: a failure would have the local store
		// decide, and the counts mean nothing then. Say so by name.
		f, err := NewFallback(redisAt{r, clock}, NewMemory(clock.Now), FallbackConfig{
			Timeout: time.Minute,
			Clock:   clock.Now,
			OnStateChange: func(degraded bool, err error) {
				if degraded {
					t.Errorf("the primary failed, so the local store decided: %v", err)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	})
}

// TestFallbackOverRedisDownAndBack kills the redis-server under a
// Fallback: the local store answers within the timeout; once Redis is back,
// after the breaker's window, Redis decides again (from the state it
// persisted).
func TestFallbackOverRedisDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	clock := newFakeClock()
	changes := &stateChanges{}
	// Long enough that a busy machine does not make Redis seem down
	// while it is up (the local store would then spend the burst below).
	const timeout = time.Second
	local := NewMemory(clock.Now)
	f, err := NewFallback(NewRedis(rdb, testPrefix), local, FallbackConfig{
		Timeout:       timeout,
		Clock:         clock.Now,
		OnStateChange: changes.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := mustLimit(t, "1/h", 3)

	if got := admitN(t, f, "a", l, 5); got != 3 {
		t.Fatalf("Redis up: admitted %d, want the burst 3", got)
	}
	if f.Degraded() || local.Len() != 0 {
		t.Fatalf("Redis up: degraded %v, %d keys in the local store; want Redis to have decided", f.Degraded(), local.Len())
	}

	srv.Kill()
	start := time.Now()
	res, err := f.Take(ctx, "a", l)
	// Bounded by the timeout, not by go-redis's dial, read and retry times
	// (seconds); the slack is for a loaded machine.
	elapsed := time.Since(start)
	t.Logf("answered in %v with Redis down", elapsed)
	if elapsed > timeout+time.Second {
		t.Fatalf("answered in %v with Redis down, want about the timeout %v", elapsed, timeout)
	}
	if err != nil || !res.Allowed || res.Remaining != 2 {
		t.Fatalf("Redis down: %+v, %v; want the local store's first answer", res, err)
	}
	if got := admitN(t, f, "a", l, 5); got != 2 {
		t.Fatalf("Redis down: admitted %d more, want the local burst's 2", got)
	}
	if ch := changes.get(); len(ch) != 1 || !ch[0].degraded {
		t.Fatalf("state changes %+v, want one to degraded", ch)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the client did not reconnect")
		}
	}
	// Within the window the breaker keeps off Redis; after it, Redis
	// decides: the account's burst there is spent.
	if res, _ := f.Take(ctx, "b", l); !res.Allowed || local.Len() != 2 {
		t.Fatalf("within the window: %+v, want a local answer", res)
	}
	clock.Advance(time.Second)
	if res, err := f.Take(ctx, "a", l); err != nil || res.Allowed || res.RetryAfter < 59*time.Minute {
		t.Fatalf("after the window: %+v, %v; want Redis's refusal of the spent account", res, err)
	}
	if ch := changes.get(); len(ch) != 2 || ch[1].degraded {
		t.Fatalf("state changes %+v, want back to not degraded", ch)
	}
	if res, _ := f.Take(ctx, "c", l); !res.Allowed || local.Len() != 2 || rdb.Exists(ctx, testPrefix+"c").Val() != 1 {
		t.Fatalf("a new account after recovery: %+v, want decided in Redis", res)
	}
}
