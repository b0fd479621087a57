package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// sourceAnswer is what the fast source answers every task with: a small
// JSON object, so every task completes.
const sourceAnswer = `{"status":"id_found","source_output":{"status":"id_found"}}`

// source is the task source of the run, served by this process on
// loopback. /fast answers every task at once and counts it, so the run
// knows when every task has been called without asking the server. /hold
// keeps each call until the caller gives up or the source stops: pointed
// at it, the workers park on their first calls and leave the store to the
// creations being measured. /slow answers after slowCall, as a registry
// would, and counts it.
type source struct {
	url      string
	srv      *http.Server
	fast     counter
	slow     counter
	stopping chan struct{}
	served   chan struct{} // closed when Serve has returned
	serveErr error         // valid once served is closed
}

// startSource serves the source on a free loopback port.
func startSource() (*source, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	s := &source{
		url:      "http://" + ln.Addr().String(),
		stopping: make(chan struct{}),
		served:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fast", s.answer)
	mux.HandleFunc("POST /hold", s.hold)
	mux.HandleFunc("POST /slow", s.slowly)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		s.serveErr = s.srv.Serve(ln)
	}()
	return s, nil
}

// answer counts the call and completes the task.
func (s *source) answer(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.fast.add()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, sourceAnswer)
}

// slowCall is how long /slow takes to answer: a registry's pace.
const slowCall = 20 * time.Millisecond

// slowly completes the task after slowCall, and counts it.
func (s *source) slowly(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-time.After(slowCall):
	case <-r.Context().Done():
		return
	case <-s.stopping:
		return
	}
	s.slow.add()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, sourceAnswer)
}

// hold answers nothing until the caller gives up or the source stops.
func (s *source) hold(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.stopping:
	}
	http.Error(w, `{"error":"STOPPED","message":"the bench source stopped"}`, http.StatusServiceUnavailable)
}

// stop releases the held calls, closes every connection and waits for
// Serve to return.
func (s *source) stop() error {
	close(s.stopping)
	err := s.srv.Close()
	<-s.served
	if !errors.Is(s.serveErr, http.ErrServerClosed) {
		err = errors.Join(err, s.serveErr)
	}
	return err
}

// counter counts calls and tells waiters when the count reaches theirs.
type counter struct {
	mu      sync.Mutex
	n       int64
	waiters []countWaiter
}

type countWaiter struct {
	n       int64
	reached chan time.Time // buffered: gets the time the count reached n
}

func (c *counter) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if len(c.waiters) == 0 {
		return
	}
	now := time.Now()
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if c.n >= w.n {
			w.reached <- now
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

func (c *counter) load() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// reached returns a channel that gets the time the count reaches n (now,
// if it already has).
func (c *counter) reached(n int64) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= n {
		ch <- time.Now()
		return ch
	}
	c.waiters = append(c.waiters, countWaiter{n: n, reached: ch})
	return ch
}
