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
		tk, ok := b.Allow()
		if !ok || tk.Probe() {
			t.Fatalf("call %d: Allow() = probe %v, ok %v; want a plain call", i, tk.Probe(), ok)
		}
		b.Failure(tk)
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
	if tk, ok := b.Allow(); ok {
		t.Fatalf("Allow() = probe %v, ok true; want refused", tk.Probe())
	}
}

// takeProbe checks that the next call is a probe, and returns its ticket.
func takeProbe(t *testing.T, b *Breaker) Ticket {
	t.Helper()
	tk, ok := b.Allow()
	if !tk.Probe() || !ok {
		t.Fatalf("Allow() = probe %v, ok %v; want the probe", tk.Probe(), ok)
	}
	return tk
}

func TestBreakerOpensAfterThresholdFailuresInARow(t *testing.T) {
	b, _ := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold-1)
	// A success breaks the run.
	tk, _ := b.Allow()
	b.Success(tk)
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
	b.Failure(takeProbe(t, b)) // open for 2×OpenFor
	clock.Advance(2 * DefaultOpenFor)
	b.Success(takeProbe(t, b))
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
		b.Failure(takeProbe(t, b))
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
		b.Failure(takeProbe(t, b))
	}
}

func TestBreakerAbandonedProbeHandsOverItsTurn(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)
	b.Abandon(takeProbe(t, b))
	wantState(t, b, CircuitHalfOpen)
	probe := takeProbe(t, b)
	wantRefused(t, b)
	b.Success(probe)
	wantState(t, b, CircuitClosed)

	// Abandoning a plain call changes nothing.
	fail(t, b, DefaultFailureThreshold-1)
	tk, _ := b.Allow()
	b.Abandon(tk)
	wantState(t, b, CircuitClosed)
	fail(t, b, 1)
	wantState(t, b, CircuitOpen)
}

func TestBreakerIgnoresLateOutcomesOfCallsAllowedBeforeItOpened(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	// Two slow calls go out while closed.
	slow1, _ := b.Allow()
	slow2, _ := b.Allow()
	fail(t, b, DefaultFailureThreshold)

	b.Success(slow1) // a late success while open
	wantState(t, b, CircuitOpen)
	wantRefused(t, b)

	clock.Advance(DefaultOpenFor)
	probe := takeProbe(t, b)
	b.Failure(slow2) // a late failure while the probe is out
	wantState(t, b, CircuitHalfOpen)
	wantRefused(t, b)
	b.Success(probe)
	wantState(t, b, CircuitClosed)
}

// TestBreakerIgnoresLateOutcomesAfterItClosedAgain: calls allowed before
// the circuit opened, that end only once a probe has closed it again,
// neither open it again (a source that hung, whose last hung calls time
// out once it answers again) nor break a run of new failures.
func TestBreakerIgnoresLateOutcomesAfterItClosedAgain(t *testing.T) {
	b, clock := newTestBreaker(BreakerSettings{})
	var slow []Ticket
	for range DefaultFailureThreshold + 1 {
		tk, _ := b.Allow()
		slow = append(slow, tk)
	}
	fail(t, b, DefaultFailureThreshold)
	clock.Advance(DefaultOpenFor)
	b.Success(takeProbe(t, b))
	wantState(t, b, CircuitClosed)
	for _, tk := range slow[1:] {
		b.Failure(tk)
	}
	wantState(t, b, CircuitClosed)
	fail(t, b, DefaultFailureThreshold-1)
	b.Success(slow[0])
	fail(t, b, 1)
	wantState(t, b, CircuitOpen)
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
			tk, ok := b.Allow()
			if tk.Probe() {
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
	probe := takeProbe(t, b)
	if !b.Refuses() {
		t.Fatal("a half-open circuit with its probe out does not refuse")
	}
	b.Success(probe)
	if b.Refuses() {
		t.Fatal("a circuit closed again refuses")
	}
}
