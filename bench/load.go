package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// target is one kind of request to one site under load, with its own pool
// of keep-alive connections that lasts across rounds.
type target struct {
	name string
	// vt is the request sent; when vts holds several, they are sent in
	// turn, and vt is the first of them.
	vt  vegeta.Target
	vts []vegeta.Target
	// want is the status code of a successful answer, as vegeta counts
	// codes ("200", "202").
	want string
	// workers is how many requests are in flight at once (one connection
	// each).
	workers int
	client  *http.Client
	// observe, when set, is called before each of the target's measured
	// rounds in measurePair, and what it returns right after the round.
	observe func(ctx context.Context) (after func())
	// pid, when set, is the process whose CPU time measurePair counts for
	// this target's rounds, instead of its serverPID: when a and b are
	// two servers.
	pid int
	// settle is how long measurePair waits after each of the target's
	// rounds before it reads the CPU time: the server's work left from the
	// round is counted in it, not in the next round.
	settle time.Duration
}

// newTarget returns a target that sends vt with at most workers requests
// in flight.
func newTarget(name string, vt vegeta.Target, want, workers int, timeout time.Duration) *target {
	return newTargets(name, []vegeta.Target{vt}, want, workers, timeout)
}

// newTargets returns a target that sends the requests of vts in turn,
// round robin, with at most workers requests in flight. vts must not be
// empty.
func newTargets(name string, vts []vegeta.Target, want, workers int, timeout time.Duration) *target {
	return &target{
		name:    name,
		vt:      vts[0],
		vts:     vts,
		want:    strconv.Itoa(want),
		workers: workers,
		client:  &http.Client{Transport: loopbackTransport(workers, timeout), Timeout: timeout},
	}
}

// loopbackTransport returns a transport with up to conns keep-alive
// connections that ignores proxy settings.
func loopbackTransport(conns int, timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// close drops the target's idle connections.
func (t *target) close() { t.client.CloseIdleConnections() }

// round is what one bounded attack on one target measured.
type round struct {
	requests   uint64
	throughput float64 // successful requests per second
	codes      map[string]int
	errors     []string
	// CPU time of the server and of the client during the round: per
	// request, it depends much less than throughput on what else the
	// machine runs.
	serverCPU, clientCPU time.Duration
	cpuErr               error
}

// attack loads t as fast as its workers allow for du and returns the
// round's figures; each latency also goes to lat when it is not nil. The
// attack stops early, with ctx's error, when ctx ends.
func (t *target) attack(ctx context.Context, du time.Duration, lat *vegeta.LatencyMetrics) (round, error) {
	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(t.workers)),
		vegeta.MaxWorkers(uint64(t.workers)),
	)
	defer stopWhenDone(ctx, atk)()

	var m vegeta.Metrics
	// Rate 0 with a fixed number of workers: each worker sends its next
	// request as soon as the previous one is answered.
	for res := range atk.Attack(vegeta.NewStaticTargeter(t.vts...), vegeta.Rate{}, du, t.name) {
		m.Add(res)
		if lat != nil {
			lat.Add(res.Latency)
		}
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return round{}, err
	}
	return round{requests: m.Requests, throughput: m.Throughput, codes: m.StatusCodes, errors: m.Errors}, nil
}

// stopWhenDone stops atk when ctx ends, until the returned function is
// called (once the attack is over).
func stopWhenDone(ctx context.Context, atk *vegeta.Attacker) (release func()) {
	over := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-over:
		}
	}()
	return func() { close(over) }
}

// siteResult gathers one target's rounds.
type siteResult struct {
	// want is the status code of a successful answer.
	want        string
	throughputs []float64
	latencies   vegeta.LatencyMetrics
	requests    uint64
	codes       map[string]int
	errors      []string
	// CPU time the server and the client (this process) spent in the
	// rounds; valid when cpuErr is nil.
	serverCPU, clientCPU time.Duration
	cpuErr               error
}

func (s *siteResult) add(r round) {
	s.throughputs = append(s.throughputs, r.throughput)
	s.serverCPU += r.serverCPU
	s.clientCPU += r.clientCPU
	if s.cpuErr == nil {
		s.cpuErr = r.cpuErr
	}
	s.requests += r.requests
	if s.codes == nil {
		s.codes = map[string]int{}
	}
	for code, n := range r.codes {
		s.codes[code] += n
	}
	for _, e := range r.errors {
		if !slices.Contains(s.errors, e) && len(s.errors) < 10 {
			s.errors = append(s.errors, e)
		}
	}
}

// failures counts the responses whose status was not the wanted one,
// transport errors included.
func (s *siteResult) failures() uint64 { return s.requests - uint64(s.codes[s.want]) }

// check reports failed responses.
func (s *siteResult) check(name string) error {
	if n := s.failures(); n > 0 {
		return fmt.Errorf("%d %s responses were not %s (by status, 0 = transport error: %v; errors: %v)",
			n, name, s.want, s.codes, s.errors)
	}
	return nil
}

func (s *siteResult) medianThroughput() float64 { return median(s.throughputs) }

// cpuPerRequest returns the server's and the client's CPU time per request.
func (s *siteResult) cpuPerRequest() (server, client time.Duration, ok bool) {
	if s.cpuErr != nil || s.requests == 0 {
		return 0, 0, false
	}
	n := time.Duration(s.requests)
	return s.serverCPU / n, s.clientCPU / n, true
}

func (s *siteResult) p50() time.Duration { return s.latencies.Quantile(0.50) }

func (s *siteResult) p99() time.Duration { return s.latencies.Quantile(0.99) }

// pairResult is two targets measured in alternating rounds: a, the one
// under study, and b, its reference (bare respond).
type pairResult struct {
	rounds int
	a, b   siteResult
}

// check checks both sites of p, a named name and b bare; nil (a measure
// skipped) passes.
func (p *pairResult) check(name string) error {
	return p.checkSites(name, "bare POST")
}

// checkSites checks both sites of p, named a and b; nil passes.
func (p *pairResult) checkSites(a, b string) error {
	if p == nil {
		return nil
	}
	return errors.Join(p.a.check(a), p.b.check(b))
}

// pairedRatio is the median over rounds of a/b within the round: the two
// ran seconds apart, so a change in the machine's load between rounds
// cancels out.
func (p *pairResult) pairedRatio() float64 {
	ratios := make([]float64, 0, len(p.a.throughputs))
	for i, x := range p.a.throughputs {
		if i < len(p.b.throughputs) && p.b.throughputs[i] > 0 {
			ratios = append(ratios, x/p.b.throughputs[i])
		}
	}
	return median(ratios)
}

// measurePair warms both targets up, then runs the measured rounds. Within
// a round the order of the targets alternates (a first, then b first), so
// that drift in the machine's load falls on both alike.
func measurePair(ctx context.Context, serverPID, rounds int, du, warmup time.Duration, a, b *target) (*pairResult, error) {
	res := &pairResult{rounds: rounds, a: siteResult{want: a.want}, b: siteResult{want: b.want}}
	if warmup > 0 {
		for _, t := range []*target{a, b} {
			if _, err := t.attack(ctx, warmup, nil); err != nil {
				return nil, err
			}
		}
	}
	sites := map[*target]*siteResult{a: &res.a, b: &res.b}
	for i := range rounds {
		order := []*target{a, b}
		if i%2 == 1 {
			order = []*target{b, a}
		}
		for _, t := range order {
			site := sites[t]
			var after func()
			if t.observe != nil {
				after = t.observe(ctx)
			}
			pid := serverPID
			if t.pid != 0 {
				pid = t.pid
			}
			server0, client0, cpuErr := cpuTimes(pid)
			r, err := t.attack(ctx, du, &site.latencies)
			if err != nil {
				return nil, err
			}
			if t.settle > 0 {
				select {
				case <-time.After(t.settle):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			server1, client1, cpuErr1 := cpuTimes(pid)
			if after != nil {
				after()
			}
			r.serverCPU, r.clientCPU, r.cpuErr = server1-server0, client1-client0, errors.Join(cpuErr, cpuErr1)
			site.add(r)
			fmt.Fprintf(os.Stderr, "bench: round %d/%d %-12s %8.0f req/s (%d requests, %d not %s)\n",
				i+1, rounds, t.name, r.throughput, r.requests, r.requests-uint64(r.codes[t.want]), t.want)
		}
	}
	return res, nil
}

// median returns the median of xs (the mean of the middle two when even).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
