package source

import (
	"slices"
	"sync"
	"time"
)

// The bounds of what Stats remembers of a source.
const (
	// StatsWindow is how many of a source's last calls Stats reports on.
	StatsWindow = 256
	// RecentErrors is how many of a source's last failures Stats lists.
	RecentErrors = 10
)

// Stats is how a source did over its last calls on this node (at most
// StatsWindow of them), for the operator.
type Stats struct {
	// Calls is the number of calls looked at; Down, those that found the
	// source down (circuit open included).
	Calls, Down int
	// LatencyP50 and LatencyP95 are over the calls that reached the
	// source, whatever they gave.
	LatencyP50, LatencyP95 time.Duration
	// Errors are the last failures, newest first.
	Errors []CallError
}

// CallError is one failed call of a source.
type CallError struct {
	At      time.Time
	Message string
}

// stats is the memory of one source's last calls: a ring of outcomes and
// one of failures, under a lock held for a few stores.
type stats struct {
	mu      sync.Mutex
	calls   [StatsWindow]call
	n, next int
	errors  [RecentErrors]CallError
	nErrors int
	nextErr int
}

type call struct {
	took time.Duration // 0 when the source was not reached
	down bool
}

// record counts a call. A call the open circuit refused (took 0) counts
// as down but is not listed among the errors: it would push out the
// failures that opened the circuit.
func (s *stats) record(at time.Time, took time.Duration, out Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[s.next] = call{took: took, down: out.Kind == Down}
	s.next = (s.next + 1) % StatsWindow
	s.n = min(s.n+1, StatsWindow)
	if out.Kind == Down && took > 0 {
		s.errors[s.nextErr] = CallError{At: at, Message: out.Message}
		s.nextErr = (s.nextErr + 1) % RecentErrors
		s.nErrors = min(s.nErrors+1, RecentErrors)
	}
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	calls := make([]call, s.n)
	copy(calls, s.calls[:s.n])
	errs := make([]CallError, 0, s.nErrors)
	for i := 1; i <= s.nErrors; i++ {
		errs = append(errs, s.errors[(s.nextErr-i+RecentErrors)%RecentErrors])
	}
	s.mu.Unlock()
	st := Stats{Calls: len(calls), Errors: errs}
	took := make([]time.Duration, 0, len(calls))
	for _, c := range calls {
		if c.down {
			st.Down++
		}
		if c.took > 0 {
			took = append(took, c.took)
		}
	}
	if len(took) > 0 {
		slices.Sort(took)
		st.LatencyP50 = took[(len(took)-1)*50/100]
		st.LatencyP95 = took[(len(took)-1)*95/100]
	}
	return st
}

// Stats returns how the source at url did over its last calls on this
// node; the zero Stats for a source never called.
func (c *Client) Stats(url string) Stats {
	v, ok := c.stats.Load(url)
	if !ok {
		return Stats{}
	}
	return v.(*stats).snapshot()
}

func (c *Client) statsOf(url string) *stats {
	if v, ok := c.stats.Load(url); ok {
		return v.(*stats)
	}
	v, _ := c.stats.LoadOrStore(url, new(stats))
	return v.(*stats)
}
