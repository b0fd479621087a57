package source

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/internal/clocktest"
)

// fakeClock is a clock that moves only when told.
type fakeClock = clocktest.Clock

func newFakeClock() *fakeClock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

func newTestBreaker(s BreakerSettings) (*Breaker, *fakeClock) {
	clock := newFakeClock()
	return NewBreaker(s, clock.Now), clock
}

// fail reports n failed calls, each allowed as a non-probe call.
func fail(t *testing.T, b *Breaker, n int) {
	t.Helper()
	for i := range n {
		probe, ok := b.Allow()
		if !ok || probe {
			t.Fatalf("call %d: Allow() = probe %v, ok %v; want a plain call", i, probe, ok)
		}
		b.Failure(false)
	}
}

func wantState(t *testing.T, b *Breaker, want CircuitState) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("State() = %v, want %v", got, want)
	}
}

// wantRefused checks that the breaker refuses a call.
func wantRefused(t *testing.T, b *Breaker) {
	t.Helper()
	if probe, ok := b.Allow(); ok {
		t.Fatalf("Allow() = probe %v, ok true; want refused", probe)
	}
}

// takeProbe checks that the next call is a probe.
func takeProbe(t *testing.T, b *Breaker) {
	t.Helper()
	if probe, ok := b.Allow(); !probe || !ok {
		t.Fatalf("Allow() = probe %v, ok %v; want the probe", probe, ok)
	}
}

func TestBreakerOpensAfterThresholdFailuresInARow(t *testing.T) {
	b, _ := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold-1)
	// A success breaks the run.
	b.Allow()
	b.Success(false)
	fail(t, b, DefaultFailureThreshold-1)
	wantState(t, b, CircuitClosed)
	fail(t, b, 1)
	wantState(t, b, CircuitOpen)
	wantRefused(t, b)
}

func TestBreakerHalfOpensAfterOpenFor(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor - time.Nanosecond)
	wantState(t, b, CircuitOpen)
	wantRefused(t, b)
	clock.Advance(time.Nanosecond)
	wantState(t, b, CircuitHalfOpen)
	takeProbe(t, b)
	// While the probe is out, every other call is refused, however long it
	// takes.
	wantRefused(t, b)
	clock.Advance(time.Hour)
	wantRefused(t, b)
	wantState(t, b, CircuitHalfOpen)
}

func TestBreakerProbeSuccessCloses(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)
	takeProbe(t, b)
	b.Failure(true) // open for 2×OpenFor
	clock.Advance(2 * DefaultOpenFor)
	takeProbe(t, b)
	b.Success(true)
	wantState(t, b, CircuitClosed)

	// Closed and reset: a full run of failures is needed again, and the
	// open period is back to OpenFor.
	fail(t, b, DefaultFailureThreshold-1)
	wantState(t, b, CircuitClosed)
	fail(t, b, 1)
	clock.Advance(DefaultOpenFor)
	takeProbe(t, b)
}

func TestBreakerProbeFailureDoublesOpenForUpToMax(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	want := []time.Duration{5, 10, 20, 40, 60, 60, 60}
	for _, openFor := range want {
		openFor *= time.Second
		clock.Advance(openFor - time.Nanosecond)
		wantRefused(t, b)
		clock.Advance(time.Nanosecond)
		takeProbe(t, b)
		b.Failure(true)
		wantState(t, b, CircuitOpen)
	}
}

func TestBreakerSettingsDefaultsAndCap(t *testing.T) {
	tests := []struct {
		in, want BreakerSettings
	}{
		{BreakerSettings{}, BreakerSettings{5, 5 * time.Second, 60 * time.Second}},
		{BreakerSettings{-1, -time.Second, -time.Second}, BreakerSettings{5, 5 * time.Second, 60 * time.Second}},
		{BreakerSettings{2, time.Minute, 0}, BreakerSettings{2, time.Minute, time.Minute}},
		{BreakerSettings{1, 2 * time.Minute, time.Minute}, BreakerSettings{1, 2 * time.Minute, 2 * time.Minute}},
		{BreakerSettings{3, time.Second, 10 * time.Second}, BreakerSettings{3, time.Second, 10 * time.Second}},
	}
	for _, tt := range tests {
		if got := tt.in.withDefaults(); got != tt.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestBreakerCustomSettings(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{FailureThreshold: 2, OpenFor: time.Second, MaxOpenFor: 3 * time.Second})
	fail(t, b, 2)
	for _, openFor := range []time.Duration{1, 2, 3, 3} {
		clock.Advance(openFor*time.Second - time.Nanosecond)
		wantRefused(t, b)
		clock.Advance(time.Nanosecond)
		takeProbe(t, b)
		b.Failure(true)
	}
}

func TestBreakerAbandonedProbeHandsOverItsTurn(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)
	takeProbe(t, b)
	b.Abandon(true)
	wantState(t, b, CircuitHalfOpen)
	takeProbe(t, b)
	wantRefused(t, b)
	b.Success(true)
	wantState(t, b, CircuitClosed)

	// Abandoning a plain call changes nothing.
	fail(t, b, DefaultFailureThreshold-1)
	b.Allow()
	b.Abandon(false)
	wantState(t, b, CircuitClosed)
	fail(t, b, 1)
	wantState(t, b, CircuitOpen)
}

func TestBreakerIgnoresLateOutcomesOfCallsAllowedBeforeItOpened(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	// Two slow calls go out while closed.
	b.Allow()
	b.Allow()
	fail(t, b, DefaultFailureThreshold)

	b.Success(false) // a late success while open
	wantState(t, b, CircuitOpen)
	wantRefused(t, b)

	clock.Advance(DefaultOpenFor)
	takeProbe(t, b)
	b.Failure(false) // a late failure while the probe is out
	wantState(t, b, CircuitHalfOpen)
	wantRefused(t, b)
	b.Success(true)
	wantState(t, b, CircuitClosed)
}

func TestBreakerLetsOneProbeThroughUnderConcurrency(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)

	var probes, allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 64 {
		wg.Go(func() {
			<-start
			probe, ok := b.Allow()
			if probe {
				probes.Add(1)
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if probes.Load() != 1 || allowed.Load() != 1 {
		t.Fatalf("%d probes, %d calls allowed; want 1 and 1", probes.Load(), allowed.Load())
	}
}

func TestCircuitStateString(t *testing.T) {
	for s, want := range map[CircuitState]string{
		CircuitClosed:   "closed",
		CircuitOpen:     "open",
		CircuitHalfOpen: "half_open",
		CircuitState(9): "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("CircuitState(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// TestBreakerRefusesTellsWithoutChanging: Refuses says what Allow would,
// and changes nothing: it takes no probe.
func TestBreakerRefusesTellsWithoutChanging(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	if b.Refuses() {
		t.Fatal("a closed circuit refuses")
	}
	fail(t, b, DefaultFailureThreshold)
	if !b.Refuses() {
		t.Fatal("an open circuit does not refuse")
	}
	clock.Advance(DefaultOpenFor)
	// Due for a probe: the next call is it, however often Refuses asks.
	for range 3 {
		if b.Refuses() {
			t.Fatal("a circuit due for a probe refuses")
		}
	}
	takeProbe(t, b)
	if !b.Refuses() {
		t.Fatal("a half-open circuit with its probe out does not refuse")
	}
	b.Success(true)
	if b.Refuses() {
		t.Fatal("a circuit closed again refuses")
	}
}
