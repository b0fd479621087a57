// Package source calls the sources of task types: it POSTs a task to its
// source's URL, maps the answer to an outcome (completed, rejected, source
// down) and keeps a circuit breaker per source so that a source that keeps
// failing is not called until a probe finds it working again.
package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
)

// Request is what a worker POSTs to a source.
type Request struct {
	RequestID string          `json:"request_id"`
	TaskID    string          `json:"task_id"`
	GroupID   string          `json:"group_id"`
	Action    string          `json:"action"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
}

// Kind classifies a source's answer.
type Kind int

// The kinds of outcome.
const (
	// Completed is a 2xx with a JSON object: the task's result.
	Completed Kind = iota
	// Rejected is a 4xx other than 408 and 429: the source says the task
	// is wrong, and the task fails with the source's error and message. A
	// task whose data is not JSON is rejected without calling the source.
	Rejected
	// Down is every way of not getting a verdict from the source: a 5xx,
	// 408 or 429, any other status that is not 2xx or 4xx (redirects are
	// not followed), a refused connection, a timeout, a 2xx that is not a
	// JSON object, an answer too large, or an open circuit.
	Down
	// Canceled means the caller's context ended before the source
	// answered: the task has no outcome and should be queued again. It does
	// not count against the source.
	Canceled
)

// String names the kind for logs and metrics.
func (k Kind) String() string {
	switch k {
	case Completed:
		return "completed"
	case Rejected:
		return "rejected"
	case Down:
		return "down"
	case Canceled:
		return "canceled"
	}
	return "unknown"
}

// Outcome is what came of calling a source.
type Outcome struct {
	Kind Kind
	// Result is the source's JSON object, verbatim (Completed only).
	Result json.RawMessage
	// Error is the task's error code (Rejected only).
	Error string
	// Message says why, in words fit for the task's message: the source's
	// own for Rejected, ours otherwise.
	Message string
	// StatusCode is the source's HTTP status, 0 when it gave none.
	StatusCode int
	// Err is the transport error behind a Down or Canceled outcome without
	// a status, for logs only: it may name addresses clients need not see.
	Err error
}

// ClientConfig configures a Client. The zero value is usable.
type ClientConfig struct {
	// HTTP is the client that calls sources. Default: one with its own
	// transport, keeping enough idle connections per source for a task
	// type's concurrency, ignoring proxy environment variables and not
	// following redirects. Per-call timeouts come from Call, so HTTP needs
	// no Timeout.
	HTTP *http.Client
	// Clock tells the time to the circuit breakers. Default time.Now.
	Clock clock.Clock
	// Breaker tunes the circuit breaker of every source.
	Breaker BreakerSettings
	// UserAgent is sent with every call. Default DefaultUserAgent.
	UserAgent string
	// MaxResponseBytes bounds a source's answer; a longer one is Down.
	// Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Defaults of ClientConfig.
const (
	DefaultUserAgent        = "taskgate"
	DefaultMaxResponseBytes = 4 << 20
)

// drainLimit is how much of an unread answer is read to keep its connection
// for reuse; past that, closing the connection is cheaper.
const drainLimit = 64 << 10

// Client calls sources. One per process; safe for concurrent use.
type Client struct {
	http      *http.Client
	clock     clock.Clock
	settings  BreakerSettings
	userAgent string
	maxBytes  int64
	breakers  sync.Map // source URL → *Breaker
	stats     sync.Map // source URL → *stats
}

// NewClient returns a client with the options.
func NewClient(opts ClientConfig) *Client {
	c := &Client{
		http:      opts.HTTP,
		clock:     opts.Clock,
		settings:  opts.Breaker.withDefaults(),
		userAgent: opts.UserAgent,
		maxBytes:  opts.MaxResponseBytes,
	}
	if c.http == nil {
		c.http = defaultHTTPClient()
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	return c
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Sources are internal services the operator configured by URL; an
	// HTTP_PROXY meant for something else must not reroute them.
	t.Proxy = nil
	t.MaxIdleConns = 1024
	// Above any sensible task type concurrency, so that workers calling one
	// source reuse connections instead of churning through new ones.
	t.MaxIdleConnsPerHost = 256
	return &http.Client{
		Transport: t,
		// A redirected POST becomes a GET without the task: let the 3xx
		// reach classify and report the source down.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Call POSTs req to the source at url and maps its answer. timeout bounds
// the whole exchange, reading the answer included (no bound when it is not
// positive). When ctx ends first, by cancellation or its own deadline, the
// outcome is Canceled. A source whose circuit is open is not called: the
// outcome is Down at once.
func (c *Client) Call(ctx context.Context, url string, timeout time.Duration, req Request) Outcome {
	if err := ctx.Err(); err != nil {
		return canceled(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		// The task's data is not JSON: no source can do anything with it,
		// and it says nothing about the source.
		return Outcome{Kind: Rejected, Error: DefaultRejectedError, Message: "task data is not valid JSON", Err: err}
	}
	b, st := c.breaker(url), c.statsOf(url)
	ticket, ok := b.Allow()
	if !ok {
		return c.refused(url)
	}
	// A call that panics (its caller recovers) is reported abandoned, so
	// that a probe's turn is not held for ever.
	reported := false
	defer func() {
		if !reported {
			b.Abandon(ticket)
		}
	}()
	start := c.clock()
	out := c.exchange(ctx, url, timeout, body)
	if out.Kind != Canceled {
		end := c.clock()
		st.record(end, max(end.Sub(start), 1), out)
	}
	reported = true
	switch out.Kind {
	case Down:
		b.Failure(ticket)
	case Canceled:
		b.Abandon(ticket)
	default:
		// A 4xx is a verdict: the source is up.
		b.Success(ticket)
	}
	return out
}

// exchange does the HTTP part of Call.
func (c *Client) exchange(ctx context.Context, url string, timeout time.Duration, body []byte) Outcome {
	callCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(callCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Outcome{Kind: Down, Message: "source URL is not valid", Err: err}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", c.userAgent)

	resp, err := c.http.Do(hreq)
	if err != nil {
		return failed(ctx, callCtx, timeout, 0, err)
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()
	if resp.ContentLength > c.maxBytes {
		return down(resp.StatusCode, "source answer too large")
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return failed(ctx, callCtx, timeout, resp.StatusCode, err)
	}
	if int64(len(answer)) > c.maxBytes {
		return down(resp.StatusCode, "source answer too large")
	}
	return classify(resp.StatusCode, answer)
}

// failed maps a transport error: the caller giving up, the call's timeout,
// or the source not answering.
func failed(ctx, callCtx context.Context, timeout time.Duration, status int, err error) Outcome {
	if ctx.Err() != nil {
		return canceled(err)
	}
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		return Outcome{Kind: Down, Message: "source timed out after " + timeout.String(), StatusCode: status, Err: err}
	}
	if status != 0 {
		return Outcome{Kind: Down, Message: "source answer cut short", StatusCode: status, Err: err}
	}
	return Outcome{Kind: Down, Message: "source unreachable", Err: err}
}

func canceled(err error) Outcome {
	return Outcome{Kind: Canceled, Message: "call canceled before the source answered", Err: err}
}

// breaker returns the breaker of the source at url, making it on first use.
func (c *Client) breaker(url string) *Breaker {
	if b, ok := c.breakers.Load(url); ok {
		return b.(*Breaker)
	}
	b, _ := c.breakers.LoadOrStore(url, NewBreaker(c.settings, c.clock))
	return b.(*Breaker)
}

// FailFast returns what Call would answer, without a call, when the
// circuit of the source at url refuses calls now (see Breaker.Refuses),
// counted as Call counts it; ok is false when a call may go ahead. A
// caller that must wait its turn before a call (a rate limit) asks first,
// so as not to spend a turn on a call that would not be made.
func (c *Client) FailFast(url string) (out Outcome, ok bool) {
	b, found := c.breakers.Load(url)
	if !found || !b.(*Breaker).Refuses() {
		return Outcome{}, false
	}
	return c.refused(url), true
}

// refused is the outcome of a call the circuit of the source at url
// refused, counted in its stats.
func (c *Client) refused(url string) Outcome {
	out := down(0, "circuit open: source failing")
	c.statsOf(url).record(c.clock(), 0, out)
	return out
}

// BreakerState returns the state of the circuit of the source at url,
// "closed", "open" or "half_open", for metrics. A source never called is
// closed.
func (c *Client) BreakerState(url string) string {
	b, ok := c.breakers.Load(url)
	if !ok {
		return CircuitClosed.String()
	}
	return b.(*Breaker).State().String()
}

// The health of a source, as Health names it.
const (
	// HealthUp: calls go through, and the last one worked.
	HealthUp = "up"
	// HealthDegraded: calls go through but the last ones failed, or the
	// circuit lets a probe find out whether the source is back.
	HealthDegraded = "degraded"
	// HealthDown: the circuit is open; tasks fail SOURCE_DOWN at once.
	HealthDown = "down"
)

// Health says how the source at url is doing on this node, by its circuit
// breaker: HealthUp, HealthDegraded or HealthDown. A source never called
// is up.
func (c *Client) Health(url string) string {
	v, ok := c.breakers.Load(url)
	if !ok {
		return HealthUp
	}
	b := v.(*Breaker)
	switch b.State() {
	case CircuitOpen:
		return HealthDown
	case CircuitHalfOpen:
		return HealthDegraded
	}
	if b.Failing() {
		return HealthDegraded
	}
	return HealthUp
}

// CloseIdleConnections closes the connections kept for reuse, for a client
// being replaced (a config reload). Calls in flight are not affected.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
