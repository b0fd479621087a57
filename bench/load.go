package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// target is one site under load, with its own pool of keep-alive
// connections that lasts across rounds.
type target struct {
	name      string
	url       string
	vt        vegeta.Target
	client    *http.Client
	transport *http.Transport
}

func newTarget(name, url string, header http.Header, o options) *target {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: o.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.workers,
		MaxIdleConnsPerHost: o.workers,
		MaxConnsPerHost:     o.workers,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &target{
		name:      name,
		url:       url,
		vt:        vegeta.Target{Method: http.MethodGet, URL: url, Header: header},
		client:    &http.Client{Transport: tr, Timeout: o.timeout},
		transport: tr,
	}
}

// close drops the target's idle connections.
func (t *target) close() { t.transport.CloseIdleConnections() }

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

// attack loads t as fast as workers concurrent requests allow for du and
// returns the round's figures; each latency also goes to lat when it is not
// nil. The attack stops early, with ctx's error, when ctx ends.
func (t *target) attack(ctx context.Context, du time.Duration, workers int, lat *vegeta.LatencyMetrics) (round, error) {
	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(workers)),
		vegeta.MaxWorkers(uint64(workers)),
	)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-stopped:
		}
	}()

	var m vegeta.Metrics
	// Rate 0 with a fixed number of workers: each worker sends its next
	// request as soon as the previous one is answered.
	for res := range atk.Attack(vegeta.NewStaticTargeter(t.vt), vegeta.Rate{}, du, t.name) {
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

// siteResult gathers one target's rounds.
type siteResult struct {
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

// non200 counts the responses that were not 200, transport errors included.
func (s *siteResult) non200() uint64 { return s.requests - uint64(s.codes["200"]) }

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

// results are the figures of a whole run.
type results struct {
	rounds      int
	chain, bare siteResult
}

// measure warms both targets up, then runs the measured rounds. Within a
// round the order of the targets alternates (chain first, then bare first),
// so that drift in the machine's load falls on both alike.
func measure(ctx context.Context, o options, serverPID int, chain, bare *target) (*results, error) {
	res := &results{rounds: o.rounds}
	if o.warmup > 0 {
		for _, t := range []*target{chain, bare} {
			if _, err := t.attack(ctx, o.warmup, o.workers, nil); err != nil {
				return nil, err
			}
		}
	}
	sites := map[*target]*siteResult{chain: &res.chain, bare: &res.bare}
	for i := range o.rounds {
		order := []*target{chain, bare}
		if i%2 == 1 {
			order = []*target{bare, chain}
		}
		for _, t := range order {
			site := sites[t]
			server0, client0, cpuErr := cpuTimes(serverPID)
			r, err := t.attack(ctx, o.duration, o.workers, &site.latencies)
			if err != nil {
				return nil, err
			}
			server1, client1, cpuErr1 := cpuTimes(serverPID)
			r.serverCPU, r.clientCPU, r.cpuErr = server1-server0, client1-client0, errors.Join(cpuErr, cpuErr1)
			site.add(r)
			fmt.Fprintf(os.Stderr, "bench: round %d/%d %-5s %8.0f req/s (%d requests, %d not 200)\n",
				i+1, o.rounds, t.name, r.throughput, r.requests, r.requests-uint64(r.codes["200"]))
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
