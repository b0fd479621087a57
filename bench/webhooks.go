package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/taskgate/taskgate/backend/webhook"
)

// duplicateSettle is how long the receiver goes on listening after the
// last expected delivery before the phase's receipts are counted, so that
// a duplicate close behind is seen: twice the dispatcher's poll.
const duplicateSettle = time.Second

// deliveryOutcome is what the receiver saw of the deliveries of the tasks
// created in a phase.
type deliveryOutcome struct {
	// expected is the number of tasks created, each due one delivery.
	expected int
	// attempts counts every POST received; delivered the deliveries
	// (webhook-ids) answered 2xx at least once.
	attempts, delivered int
	// duplicateIDs counts the 2xx answers beyond the first to one
	// webhook-id; tasksTwice the tasks delivered under more than one
	// webhook-id; missing the tasks not delivered at all.
	duplicateIDs, tasksTwice, missing int
	// badSignature counts the POSTs whose signature or timestamp did not
	// check out, badRequest those that were not a task with a webhook-id.
	badSignature, badRequest int
	// firstCompleted and lastCompleted are the earliest and latest
	// completed_at of the tasks received; lastDelivered is when the last
	// delivery was first answered 2xx.
	firstCompleted, lastCompleted, lastDelivered time.Time
	// latencies run from each delivered task's completed_at to the first
	// 2xx answer to its delivery (the same machine's clock), sorted.
	latencies []time.Duration
}

// outcome sums up the log for expected tasks. Call it once the log no
// longer changes (after a reset).
func (l *receipts) outcome(expected int) deliveryOutcome {
	o := deliveryOutcome{expected: expected, attempts: l.attempts, badSignature: l.badSignature, badRequest: l.badRequest}
	tasks := make(map[string]int, len(l.byID))
	for _, d := range l.byID {
		if c := d.completedAt; !c.IsZero() {
			if o.firstCompleted.IsZero() || c.Before(o.firstCompleted) {
				o.firstCompleted = c
			}
			if c.After(o.lastCompleted) {
				o.lastCompleted = c
			}
		}
		at, times := d.firstDelivered()
		if times == 0 {
			continue
		}
		o.delivered++
		o.duplicateIDs += times - 1
		if tasks[d.requestID]++; tasks[d.requestID] == 2 {
			o.tasksTwice++
		}
		if at.After(o.lastDelivered) {
			o.lastDelivered = at
		}
		if !d.completedAt.IsZero() {
			o.latencies = append(o.latencies, at.Sub(d.completedAt))
		}
	}
	o.missing = max(0, expected-len(tasks))
	slices.Sort(o.latencies)
	return o
}

// rate is deliveries per second from the first task's completion to the
// last delivery.
func (o *deliveryOutcome) rate() float64 {
	return perSecond(float64(o.delivered), o.lastDelivered.Sub(o.firstCompleted))
}

// completedRate is tasks completed per second, first to last completion.
func (o *deliveryOutcome) completedRate() float64 {
	if o.expected < 2 {
		return 0
	}
	return perSecond(float64(o.expected-1), o.lastCompleted.Sub(o.firstCompleted))
}

func (o *deliveryOutcome) check(phase string) error {
	var errs []error
	if o.missing > 0 {
		errs = append(errs, fmt.Errorf("%s: %d of %d tasks were not delivered to the webhook", phase, o.missing, o.expected))
	}
	if o.badSignature > 0 {
		errs = append(errs, fmt.Errorf("%s: %d of %d webhook POSTs had a bad signature or timestamp", phase, o.badSignature, o.attempts))
	}
	if o.badRequest > 0 {
		errs = append(errs, fmt.Errorf("%s: %d of %d webhook POSTs were not a task with a webhook-id", phase, o.badRequest, o.attempts))
	}
	return errors.Join(errs...)
}

// summary is the outcome's figures for the table: received (duplicate
// ids, tasks twice, missing, bad signatures).
func (o *deliveryOutcome) summary() string {
	return fmt.Sprintf("%d (%d, %d, %d, %d)", o.delivered, o.duplicateIDs, o.tasksTwice, o.missing, o.badSignature)
}

// deliveryResult is what the delivery-rate phase measured: tasks created
// as fast as the clients can, each delivered to the receiver answering
// 204, until every one was delivered (or the wait ran out).
type deliveryResult struct {
	creation *creation
	outcome  deliveryOutcome
	// serverCPU is the server's CPU time from the first creation to the
	// last delivery: running and delivering every task.
	serverCPU time.Duration
	cpuErr    error
}

// cpuPerTask is the server's CPU time per task run and delivered.
func (d *deliveryResult) cpuPerTask() (time.Duration, bool) {
	if d.cpuErr != nil || d.outcome.delivered == 0 {
		return 0, false
	}
	return d.serverCPU / time.Duration(d.outcome.delivered), true
}

func (d *deliveryResult) check() error {
	return errors.Join(d.creation.failed.err("webhook-phase"), d.outcome.check("webhook deliveries"))
}

// measureDeliveries creates o.webhookTasks tasks (or as many as
// o.tasksTimeout allows) with o.createWorkers clients as fast as the
// server answers, and waits, at most o.webhookWait, until the receiver
// has been delivered every one.
func measureDeliveries(ctx context.Context, o options, srv *server, rcv *receiver) (*deliveryResult, error) {
	t := newTarget("create-"+srv.name, createRequest(srv.apiURL()), http.StatusAccepted, o.createWorkers, o.timeout)
	defer t.close()
	rcv.reset()
	log := rcv.current()
	profiled := func() error { return nil }
	if o.profileDir != "" {
		profiled = srv.profileCPU(ctx, o, "webhooks-bolt")
	}
	res := &deliveryResult{}
	server0, _, cpuErr0 := cpuTimes(srv.cmd.Process.Pid)
	c, err := createTasks(ctx, t, o.webhookTasks, o.tasksTimeout, nil)
	if err != nil {
		return nil, errors.Join(err, profiled())
	}
	res.creation = c
	if c.created == 0 {
		return nil, errors.Join(c.failed.err("webhook-phase"), profiled())
	}
	_, _, err = waitCount(ctx, &log.delivered, c.created, o.webhookWait)
	server1, _, cpuErr1 := cpuTimes(srv.cmd.Process.Pid)
	res.serverCPU, res.cpuErr = server1-server0, errors.Join(cpuErr0, cpuErr1)
	if err = errors.Join(err, profiled(), sleepCtx(ctx, duplicateSettle)); err != nil {
		return nil, err
	}
	res.outcome = rcv.reset().outcome(c.created)
	return res, nil
}

// deliveryLatencyResult is what the fixed-rate phase measured: tasks
// created at a moderate rate, each delivered to the receiver answering
// 204.
type deliveryLatencyResult struct {
	created int
	failed  failures
	// span runs from the first creation sent to the last.
	span    time.Duration
	outcome deliveryOutcome
	// createToWebhook runs, for each delivered task, from its creation
	// request sent to the first 2xx answer to its delivery (matched by
	// request_id; the same process's clock), sorted.
	createToWebhook []time.Duration
}

func (l *deliveryLatencyResult) rate() float64 {
	if l.created < 2 {
		return 0
	}
	return perSecond(float64(l.created-1), l.span)
}

func (l *deliveryLatencyResult) check() error {
	return errors.Join(l.failed.err("fixed-rate webhook"), l.outcome.check("webhook latency"))
}

// measureDeliveryLatency creates tasks at o.webhookRate for
// o.webhookDuration, waits (at most o.webhookWait) until each has been
// delivered, and takes each delivery's latency from its task's
// completed_at to its arrival, and from its creation request sent to its
// arrival.
func measureDeliveryLatency(ctx context.Context, o options, srv *server, rcv *receiver) (*deliveryLatencyResult, error) {
	t := newTarget("create-"+srv.name+"-rate", createRequest(srv.apiURL()), http.StatusAccepted, latencyMaxWorkers, o.timeout)
	defer t.close()
	rcv.reset()
	log := rcv.current()
	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(o.createWorkers)),
		vegeta.MaxWorkers(latencyMaxWorkers),
	)
	defer stopWhenDone(ctx, atk)()
	res := &deliveryLatencyResult{}
	var first, last time.Time
	// sent holds when each accepted creation was sent, by request_id.
	sent := make(map[string]time.Time, o.webhookRate*int(o.webhookDuration/time.Second+1))
	rate := vegeta.Rate{Freq: o.webhookRate, Per: time.Second}
	for r := range atk.Attack(vegeta.NewStaticTargeter(t.vt), rate, o.webhookDuration, t.name) {
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
		sent[id] = r.Timestamp
		res.created++
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.span = last.Sub(first)
	if _, _, err := waitCount(ctx, &log.delivered, res.created, o.webhookWait); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, duplicateSettle); err != nil {
		return nil, err
	}
	done := rcv.reset()
	res.outcome = done.outcome(res.created)
	res.createToWebhook = done.createToDelivery(sent)
	return res, nil
}

// createToDelivery returns, for each task in sent (when its creation was
// sent, by request_id) that was delivered, the time from its creation
// sent to the first 2xx answer to its delivery, sorted. A task delivered
// under more than one webhook-id counts once, by its first delivery.
func (l *receipts) createToDelivery(sent map[string]time.Time) []time.Duration {
	delivered := make(map[string]time.Time, len(sent))
	for _, d := range l.byID {
		at, times := d.firstDelivered()
		if times == 0 {
			continue
		}
		if _, ok := sent[d.requestID]; !ok {
			continue
		}
		if prev, ok := delivered[d.requestID]; !ok || at.Before(prev) {
			delivered[d.requestID] = at
		}
	}
	latencies := make([]time.Duration, 0, len(delivered))
	for id, at := range delivered {
		latencies = append(latencies, at.Sub(sent[id]))
	}
	slices.Sort(latencies)
	return latencies
}

// memorySample is the server's memory at one moment: resident (all, and
// anonymous) from /proc, and the Go heap in use from its metrics.
type memorySample struct {
	rss, anon, heapInUse uint64
	err                  error
}

// memory samples the server's memory.
func (s *server) memory(ctx context.Context) memorySample {
	var m memorySample
	var errRSS error
	m.rss, m.anon, errRSS = residentMemory(s.cmd.Process.Pid)
	heap, err := s.metric(ctx, "go_memstats_heap_inuse_bytes")
	m.heapInUse = uint64(heap)
	m.err = errors.Join(errRSS, err)
	return m
}

// commitUsage sums a bolt server's commits and the changes they held,
// and its creation log's syncs and the creations they held, over the
// rounds it observes (as a target's observe).
type commitUsage struct {
	commits, changes float64
	logSyncs, logged float64
	err              error
}

// commitMetrics are the metrics commitUsage reads, in its fields' order.
var commitMetrics = []string{"taskgate_store_commits_total", "taskgate_store_changes_total",
	"taskgate_store_log_syncs_total", "taskgate_store_logged_total"}

// observe returns the observe of a target of s.
func (u *commitUsage) observe(s *server) func(ctx context.Context) (after func()) {
	return func(ctx context.Context) func() {
		v0, err0 := s.metrics(ctx, commitMetrics...)
		return func() {
			v1, err1 := s.metrics(ctx, commitMetrics...)
			if err := errors.Join(err0, err1); err != nil {
				u.err = errors.Join(u.err, err)
				return
			}
			u.commits += v1[0] - v0[0]
			u.changes += v1[1] - v0[1]
			u.logSyncs += v1[2] - v0[2]
			u.logged += v1[3] - v0[3]
		}
	}
}

// metric reads one unlabelled metric from the admin endpoint's /metrics.
func (s *server) metric(ctx context.Context, name string) (float64, error) {
	v, err := s.metrics(ctx, name)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// metrics reads unlabelled metrics from one answer of the admin
// endpoint's /metrics, in the order of names.
func (s *server) metrics(ctx context.Context, names ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.adminURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", s.adminURL, resp.Status)
	}
	values := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		for i, name := range names {
			if value, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				if values[i], err = strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
					return nil, err
				}
				found[i] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, name := range names {
		if !found[i] {
			return nil, fmt.Errorf("%s/metrics has no %s", s.adminURL, name)
		}
	}
	return values, nil
}

// retryResult is what the retry phase measured: deliveries to a receiver
// answering 503, retried under a short policy, then let through.
type retryResult struct {
	policy  webhook.Policy
	created int
	failed  failures
	// firstAttempts runs from the first task's completion until every
	// delivery had had its first attempt; firstAttemptsDone is false when
	// the wait ran out first (the window then starts at its end).
	firstAttempts     time.Duration
	firstAttemptsDone bool
	// idle is the server's memory before the phase's tasks; pending once
	// every delivery had its first attempt; windowEnd at the window's end.
	idle, pending, windowEnd memorySample
	// window is the time the receiver went on failing after every first
	// attempt; attempts counts the POSTs in it, serverCPU the server's CPU
	// time over it.
	window    time.Duration
	attempts  int
	serverCPU time.Duration
	cpuErr    error
	// lateness holds, for each retry in the window, how long after the
	// end of its delay range (the previous attempt's arrival plus the
	// policy's longest delay for that retry) it arrived, 0 when within,
	// sorted; early counts those that came before the range began.
	lateness []time.Duration
	early    int
	// scheduled is the attempts per second it takes to keep every
	// delivery on schedule once its delays have reached the policy's
	// cap: the pending deliveries over the mean capped delay.
	scheduled float64
	// drain runs from the receiver turning to 204 until the last
	// delivery; drained is false when the wait ran out first.
	drain   time.Duration
	drained bool
	outcome deliveryOutcome
}

func (r *retryResult) attemptRate() float64 { return perSecond(float64(r.attempts), r.window) }

func (r *retryResult) drainRate() float64 { return perSecond(float64(r.outcome.delivered), r.drain) }

func (r *retryResult) cores() (float64, bool) {
	if r.cpuErr != nil || r.window <= 0 {
		return 0, false
	}
	return r.serverCPU.Seconds() / r.window.Seconds(), true
}

func (r *retryResult) check() error {
	var errs []error
	errs = append(errs, r.failed.err("retry-phase"), r.outcome.check("webhook retries"))
	if !r.firstAttemptsDone {
		errs = append(errs, fmt.Errorf("webhook retries: not every delivery had its first attempt within the wait"))
	}
	return errors.Join(errs...)
}

// measureRetries fails every delivery while o.retryTasks tasks are created
// and run, waits until each delivery has had its first attempt, then
// watches the retries for o.retryWindow, and lets them through: the
// receiver answers 204 until each has been delivered (at most
// o.webhookWait for each wait).
//
// create, when not nil, creates the tasks (the tenants'); else the bench
// account does.
func measureRetries(ctx context.Context, o options, srv *server, rcv *receiver, policy webhook.Policy, create *target) (*retryResult, error) {
	t := create
	if t == nil {
		t = newTarget("create-"+srv.name, createRequest(srv.apiURL()), http.StatusAccepted, o.createWorkers, o.timeout)
	}
	defer t.close()
	rcv.failing.Store(true)
	defer rcv.failing.Store(false)
	rcv.reset()
	log := rcv.current()
	res := &retryResult{policy: policy.WithDefaults()}
	res.idle = srv.memory(ctx)

	c, err := createTasks(ctx, t, o.retryTasks, o.tasksTimeout, nil)
	if err != nil {
		return nil, err
	}
	res.created, res.failed = c.created, c.failed
	if res.created == 0 {
		return nil, res.failed.err("retry-phase")
	}
	var firstDone time.Time
	firstDone, res.firstAttemptsDone, err = waitCount(ctx, &log.seen, res.created, o.webhookWait)
	if err != nil {
		return nil, err
	}
	windowStart := time.Now()
	if !res.firstAttemptsDone {
		firstDone = windowStart
	}
	res.pending = srv.memory(ctx)

	profiled := func() error { return nil }
	if o.profileDir != "" {
		profiled = srv.profileCPU(ctx, o, "webhook-retries")
	}
	server0, _, cpuErr0 := cpuTimes(srv.cmd.Process.Pid)
	err = sleepCtx(ctx, o.retryWindow)
	server1, _, cpuErr1 := cpuTimes(srv.cmd.Process.Pid)
	res.windowEnd = srv.memory(ctx)
	rcv.failing.Store(false)
	switched := time.Now()
	res.window = switched.Sub(windowStart)
	res.serverCPU, res.cpuErr = server1-server0, errors.Join(cpuErr0, cpuErr1)
	if err = errors.Join(err, profiled()); err != nil {
		return nil, err
	}

	_, res.drained, err = waitCount(ctx, &log.delivered, res.created, o.webhookWait)
	if err = errors.Join(err, sleepCtx(ctx, duplicateSettle)); err != nil {
		return nil, err
	}
	done := rcv.reset()
	res.outcome = done.outcome(res.created)
	res.firstAttempts = firstDone.Sub(res.outcome.firstCompleted)
	if res.drained {
		res.drain = res.outcome.lastDelivered.Sub(switched)
	}
	res.timeRetries(done, windowStart, switched)
	return res, nil
}

// timeRetries measures the attempts that arrived in [from, to): how many,
// and how each retry kept to the policy's delay range for its number.
func (r *retryResult) timeRetries(l *receipts, from, to time.Time) {
	ranges := map[int][2]time.Duration{}
	delayRange := func(retry int) (lo, hi time.Duration) {
		rg, ok := ranges[retry]
		if !ok {
			rg = [2]time.Duration{r.policy.Delay(retry, func() float64 { return 0 }), r.policy.Delay(retry, func() float64 { return 1 })}
			ranges[retry] = rg
		}
		return rg[0], rg[1]
	}
	for _, d := range l.byID {
		for i, at := range d.attempts {
			if at.Before(from) || !at.Before(to) {
				continue
			}
			r.attempts++
			if i == 0 {
				continue
			}
			lo, hi := delayRange(i)
			gap := at.Sub(d.attempts[i-1])
			if gap < lo {
				r.early++
			}
			r.lateness = append(r.lateness, max(0, gap-hi))
		}
	}
	slices.Sort(r.lateness)
	// Far enough into the doubling for any policy to be at its cap.
	lo, hi := delayRange(64)
	r.scheduled = perSecond(float64(r.created), (lo+hi)/2)
}

// waitCount waits until c reaches n, for at most limit. It returns when c
// did, or false when limit passed first.
func waitCount(ctx context.Context, c *counter, n int, limit time.Duration) (at time.Time, reached bool, err error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case at := <-c.reached(int64(n)):
		return at, true, nil
	case <-timer.C:
		fmt.Fprintf(os.Stderr, "bench: waited %s for %d webhook receipts, got %d\n", limit, n, c.load())
		return time.Time{}, false, nil
	case <-ctx.Done():
		return time.Time{}, false, ctx.Err()
	}
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retrySpec is a policy as the webhooks option's retry line has it.
func retrySpec(p webhook.Policy) string {
	return fmt.Sprintf("retry %s %s %s", shortDuration(p.First), shortDuration(p.Max), shortDuration(p.GiveUp))
}

// shortDuration writes d without its zero trailing units: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
