package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The task phases' fixed sizes.
const (
	// lastPolled is how many of the last created tasks the completion
	// phase long-polls to see the end of the run: the workers claim the
	// oldest tasks first, so these end last.
	lastPolled = 64
	// completionChecks is about how many tasks, spread over the
	// completion phase, are read back to check that they completed.
	completionChecks = 100
	// latencyMaxWorkers bounds the requests in flight of the fixed-rate
	// phase, creations and long polls each.
	latencyMaxWorkers = 256
	// longPollSeconds is the wait of every long poll, the API's most.
	longPollSeconds = 30
)

// statusCompleted is the status of a task whose source answered it.
const statusCompleted = "completed"

// poller reads tasks through the task API, long polls included, as the
// bench account, or as the account of auth when it is set.
type poller struct {
	base   string
	client *http.Client
	auth   http.Header
}

func newPoller(s *server, conns int) *poller {
	return &poller{
		base: s.apiURL(),
		// A long poll lasts up to longPollSeconds; the client allows it
		// a little more.
		client: &http.Client{
			Transport: loopbackTransport(conns, 5*time.Second),
			Timeout:   (longPollSeconds + 10) * time.Second,
		},
	}
}

// taskEnd is what a read of a task saw: its status, and when the answer
// arrived.
type taskEnd struct {
	status string
	at     time.Time
}

// wait reads the task with GET /v3/tasks?request_id=…&wait=…: the answer
// comes the moment the task ends, or after wait seconds if it has not.
func (p *poller) wait(ctx context.Context, requestID string, wait int) (taskEnd, error) {
	u := fmt.Sprintf("%s/v3/tasks?request_id=%s&wait=%d", p.base, url.QueryEscape(requestID), wait)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return taskEnd{}, err
	}
	req.Header = credentials()
	if p.auth != nil {
		req.Header = p.auth.Clone()
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return taskEnd{}, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	at := time.Now()
	if err != nil {
		return taskEnd{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return taskEnd{}, fmt.Errorf("GET task %s: %s: %.200s", requestID, resp.Status, body)
	}
	var views []struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &views); err != nil || len(views) != 1 {
		return taskEnd{}, fmt.Errorf("GET task %s: unexpected answer %.200s", requestID, body)
	}
	return taskEnd{status: views[0].Status, at: at}, nil
}

// acceptedID returns the request id of a creation answered 202.
func acceptedID(r *vegeta.Result) (string, bool) {
	if r.Code != http.StatusAccepted {
		return "", false
	}
	var v struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.RequestID == "" {
		return "", false
	}
	return v.RequestID, true
}

// failures collects the creations not answered 202 and a few reasons.
type failures struct {
	n       uint64
	reasons []string
}

func (f *failures) add(r *vegeta.Result) {
	f.n++
	reason := r.Error
	if reason == "" {
		reason = fmt.Sprintf("status %d: %.200s", r.Code, r.Body)
	}
	if len(f.reasons) < 10 && !slices.Contains(f.reasons, reason) {
		f.reasons = append(f.reasons, reason)
	}
}

func (f *failures) err(what string) error {
	if f.n == 0 {
		return nil
	}
	return fmt.Errorf("%d %s creations were not answered 202: %v", f.n, what, f.reasons)
}

// completionResult is what the completion phase measured: tasks created
// by many clients as fast as they could, run by the workers against the
// fast source, until every one had ended.
type completionResult struct {
	created int
	failed  failures
	// createSpan runs from the first creation sent to the last 202.
	createSpan time.Duration
	// total runs from the first creation sent until every task had
	// ended.
	total time.Duration
	// backlog is how many tasks the source had not yet been called for
	// when the last 202 came, and drain how long they then took.
	backlog int64
	drain   time.Duration
	// calls counts the source's calls in the phase: one per task, when
	// every task ran once.
	calls int64
	// checked counts the tasks read back at the end, notCompleted those
	// of them that had not completed.
	checked, notCompleted int
}

func (c *completionResult) createRate() float64    { return perSecond(float64(c.created), c.createSpan) }
func (c *completionResult) completedRate() float64 { return perSecond(float64(c.created), c.total) }
func (c *completionResult) drainRate() float64     { return perSecond(float64(c.backlog), c.drain) }

func (c *completionResult) check() error {
	if err := c.failed.err("completion-phase"); err != nil {
		return err
	}
	if c.notCompleted > 0 {
		return fmt.Errorf("%d of %d tasks read back had not completed", c.notCompleted, c.checked)
	}
	if c.calls != int64(c.created) {
		return fmt.Errorf("the source was called %d times for %d tasks", c.calls, c.created)
	}
	return nil
}

func perSecond(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// creation is what a burst of task creations saw.
type creation struct {
	created int
	failed  failures
	// first is when the first creation was sent, lastAccepted when the
	// last 202 came.
	first, lastAccepted time.Time
}

func (c *creation) span() time.Duration { return c.lastAccepted.Sub(c.first) }

// createTasks sends up to n creations of t, round robin over its
// requests, with t's workers as fast as the server answers, for at most limit, and hands the request id of each
// one answered 202 to accepted (when not nil), in the order they came.
func createTasks(ctx context.Context, t *target, n int, limit time.Duration, accepted func(id string)) (*creation, error) {
	var sent atomic.Int64
	targeter := func(tgt *vegeta.Target) error {
		i := sent.Add(1)
		if i > int64(n) {
			return vegeta.ErrNoTargets
		}
		// Round robin over t's requests (the tenants' creations, say).
		*tgt = t.vts[(i-1)%int64(len(t.vts))]
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(t.workers)),
		vegeta.MaxWorkers(uint64(t.workers)),
	)
	defer stopWhenDone(ctx, atk)()

	c := &creation{}
	for r := range atk.Attack(vegeta.Targeter(targeter), vegeta.Rate{}, limit, t.name) {
		if r.Error == vegeta.ErrNoTargets.Error() {
			continue // a worker that found the count reached
		}
		if c.first.IsZero() || r.Timestamp.Before(c.first) {
			c.first = r.Timestamp
		}
		id, ok := acceptedID(r)
		if !ok {
			c.failed.add(r)
			continue
		}
		c.created++
		if end := r.End(); end.After(c.lastAccepted) {
			c.lastAccepted = end
		}
		if accepted != nil {
			accepted(id)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// measureCompletion creates o.tasks tasks (or as many as o.tasksTimeout
// allows) with o.createWorkers clients as fast as the server answers,
// then waits until every task has ended. The end is the later of the
// moment the source has been called for every task and the moment the
// long polls of the last created tasks have answered.
func measureCompletion(ctx context.Context, o options, srv *server, src *source, poll *poller) (*completionResult, error) {
	t := newTarget("create-"+srv.name, createRequest(srv.apiURL()), http.StatusAccepted, o.createWorkers, o.timeout)
	defer t.close()

	res := &completionResult{}
	calls0 := src.fast.load()
	last := make([]string, 0, lastPolled+1)
	var checks []string
	every := max(1, o.tasks/completionChecks)
	n := 0
	c, err := createTasks(ctx, t, o.tasks, o.tasksTimeout, func(id string) {
		n++
		if last = append(last, id); len(last) > lastPolled {
			last = slices.Delete(last, 0, 1)
		}
		if n%every == 0 {
			checks = append(checks, id)
		}
	})
	if err != nil {
		return nil, err
	}
	res.created, res.failed = c.created, c.failed
	if res.created == 0 {
		return nil, res.failed.err("completion-phase")
	}
	res.createSpan = c.span()
	lastAccepted := c.lastAccepted
	first := c.first
	res.backlog = int64(res.created) - (src.fast.load() - calls0)

	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type polled struct {
		end taskEnd
		err error
	}
	polls := make(chan polled, len(last))
	for _, id := range last {
		go func() {
			end, err := poll.wait(pollCtx, id, longPollSeconds)
			polls <- polled{end, err}
		}()
	}
	timer := time.NewTimer(o.drainTimeout)
	defer timer.Stop()
	var end time.Time
	select {
	case end = <-src.fast.reached(calls0 + int64(res.created)):
	case <-timer.C:
		return nil, fmt.Errorf("the source was called for %d of %d tasks within %s of the last creation",
			src.fast.load()-calls0, res.created, o.drainTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for range last {
		p := <-polls
		if p.err != nil {
			return nil, p.err
		}
		res.checked++
		if p.end.status != statusCompleted {
			res.notCompleted++
		}
		if p.end.at.After(end) {
			end = p.end.at
		}
	}
	res.total = end.Sub(first)
	res.drain = end.Sub(lastAccepted)
	res.calls = src.fast.load() - calls0

	for _, id := range checks {
		e, err := poll.wait(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		res.checked++
		if e.status != statusCompleted {
			res.notCompleted++
		}
	}
	return res, nil
}

// latencyResult is what the latency phase measured: tasks created at a
// fixed rate, each sampled one long-polled from the moment its 202 came.
type latencyResult struct {
	created int
	failed  failures
	// span runs from the first creation sent to the last.
	span time.Duration
	// accept holds the creations' latencies (to the 202), complete the
	// sampled tasks' from the creation sent to the long poll's answer;
	// both sorted.
	accept, complete []time.Duration
	// notCompleted counts the sampled tasks whose long poll saw them end
	// otherwise than completed, or not end at all.
	notCompleted int
}

func (l *latencyResult) rate() float64 {
	if l.created < 2 {
		return 0
	}
	return perSecond(float64(l.created-1), l.span)
}

func (l *latencyResult) check() error {
	if err := l.failed.err("fixed-rate"); err != nil {
		return err
	}
	if l.notCompleted > 0 {
		return fmt.Errorf("%d of %d sampled tasks did not complete within %ds", l.notCompleted, l.notCompleted+len(l.complete), longPollSeconds)
	}
	return nil
}

// measureLatency creates tasks at o.latencyRate for o.latencyDuration and
// long-polls every o.latencySample-th right after its 202: the poll
// answers the moment the task ends, so its answer minus the creation's
// start is the task's create-to-complete latency.
func measureLatency(ctx context.Context, o options, srv *server, poll *poller) (*latencyResult, error) {
	t := newTarget("create-"+srv.name+"-rate", createRequest(srv.apiURL()), http.StatusAccepted, latencyMaxWorkers, o.timeout)
	defer t.close()
	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(o.createWorkers)),
		vegeta.MaxWorkers(latencyMaxWorkers),
	)
	defer stopWhenDone(ctx, atk)()

	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &latencyResult{}
	var (
		mu          sync.Mutex
		wg          sync.WaitGroup
		pollErr     error
		first, last time.Time
	)
	rate := vegeta.Rate{Freq: o.latencyRate, Per: time.Second}
	for r := range atk.Attack(vegeta.NewStaticTargeter(t.vt), rate, o.latencyDuration, t.name) {
		if first.IsZero() || r.Timestamp.Before(first) {
			first = r.Timestamp
		}
		if r.Timestamp.After(last) {
			last = r.Timestamp
		}
		id, ok := acceptedID(r)
		if !ok {
			res.failed.add(r)
			continue
		}
		res.accept = append(res.accept, r.Latency)
		res.created++
		if (res.created-1)%o.latencySample != 0 {
			continue
		}
		start := r.Timestamp
		wg.Go(func() {
			end, err := poll.wait(pollCtx, id, longPollSeconds)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if pollErr == nil {
					pollErr = err
				}
			case end.status != statusCompleted:
				res.notCompleted++
			default:
				res.complete = append(res.complete, end.at.Sub(start))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if pollErr != nil {
		return nil, pollErr
	}
	res.span = last.Sub(first)
	slices.Sort(res.accept)
	slices.Sort(res.complete)
	return res, nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
