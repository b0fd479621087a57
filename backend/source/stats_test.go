package source

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestStatsCountCallsAndKeepRecentErrors(t *testing.T) {
	fail := true
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if fail {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, `{"status":"id_found"}`)
	})
	c := NewClient(ClientConfig{Breaker: BreakerSettings{FailureThreshold: 1000}})
	if st := c.Stats(srv.URL); st.Calls != 0 || st.Errors != nil {
		t.Fatalf("never called: %+v, want zero", st)
	}
	for range 3 {
		c.Call(context.Background(), srv.URL, time.Second, testRequest)
	}
	fail = false
	for range 5 {
		c.Call(context.Background(), srv.URL, time.Second, testRequest)
	}
	st := c.Stats(srv.URL)
	if st.Calls != 8 || st.Down != 3 {
		t.Errorf("calls %d, down %d; want 8 and 3", st.Calls, st.Down)
	}
	if len(st.Errors) != 3 || st.Errors[0].Message == "" || st.Errors[0].At.Before(st.Errors[2].At) {
		t.Errorf("errors %+v, want 3, newest first", st.Errors)
	}
	if st.LatencyP50 <= 0 || st.LatencyP95 < st.LatencyP50 {
		t.Errorf("latency p50 %v p95 %v", st.LatencyP50, st.LatencyP95)
	}
}

func TestStatsAreBounded(t *testing.T) {
	var s stats
	at := time.Unix(0, 0)
	for i := range StatsWindow + 50 {
		out := Outcome{Kind: Completed}
		if i%2 == 0 {
			out = Outcome{Kind: Down, Message: fmt.Sprint("failure ", i)}
		}
		s.record(at.Add(time.Duration(i)), time.Duration(i+1)*time.Millisecond, out)
	}
	st := s.snapshot()
	if st.Calls != StatsWindow || st.Down != StatsWindow/2 {
		t.Errorf("calls %d, down %d; want %d and %d", st.Calls, st.Down, StatsWindow, StatsWindow/2)
	}
	if len(st.Errors) != RecentErrors || st.Errors[0].Message != fmt.Sprint("failure ", StatsWindow+48) {
		t.Errorf("errors %d, newest %q", len(st.Errors), st.Errors[0].Message)
	}
	// The window holds calls 50…305, taking 51…306 ms.
	if st.LatencyP50 != 178*time.Millisecond || st.LatencyP95 != 293*time.Millisecond {
		t.Errorf("p50 %v p95 %v, want 178ms and 293ms", st.LatencyP50, st.LatencyP95)
	}
}

// TestStatsKeepTheErrorsThatOpenedTheCircuit: calls the open circuit
// refuses count as down without pushing the real failures out.
func TestStatsKeepTheErrorsThatOpenedTheCircuit(t *testing.T) {
	var s stats
	at := time.Unix(0, 0)
	s.record(at, time.Millisecond, Outcome{Kind: Down, Message: "source unreachable"})
	for range 2 * RecentErrors {
		s.record(at, 0, Outcome{Kind: Down, Message: "circuit open: source failing"})
	}
	st := s.snapshot()
	if st.Calls != 2*RecentErrors+1 || st.Down != st.Calls {
		t.Errorf("calls %d, down %d", st.Calls, st.Down)
	}
	if len(st.Errors) != 1 || st.Errors[0].Message != "source unreachable" {
		t.Errorf("errors %+v, want the one that opened the circuit", st.Errors)
	}
}
