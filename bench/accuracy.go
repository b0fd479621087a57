package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// degradedLog is what a node logs when it falls back from the Redis rate
// limit to its own (on_store_error).
const degradedLog = "rate limit store unreachable"

// accuracyResult is one bounded load on the limited account, round robin
// over one or more nodes.
type accuracyResult struct {
	storage string
	nodes   int
	limit   limitConfig
	// requests were sent; admitted were answered 2xx, refused 429; codes
	// counts the other answers by status (0: transport error).
	requests          int
	admitted, refused int
	codes             map[uint16]int
	errors            []string
	// elapsed runs from the first request sent to the last answered.
	elapsed time.Duration
	// fallbacks counts the nodes' log lines, during the load, saying
	// they fell back to limiting on their own.
	fallbacks int
}

// expected is what an exact limit admits over elapsed from a whole burst.
func (a *accuracyResult) expected() float64 {
	return float64(a.limit.burst) + float64(a.limit.rate)*a.elapsed.Seconds()
}

func (a *accuracyResult) accuracy() float64 { return float64(a.admitted) / a.expected() }

func (a *accuracyResult) sendRate() float64 { return perSecond(float64(a.requests), a.elapsed) }

func (a *accuracyResult) failures() int { return a.requests - a.admitted - a.refused }

// check reports answers other than 2xx and 429.
func (a *accuracyResult) check() error {
	if n := a.failures(); n > 0 {
		return fmt.Errorf("%d of the limited account's requests (%s, %d node(s)) were answered neither 2xx nor 429 (by status, 0 = transport error: %v; errors: %v)",
			n, a.storage, a.nodes, a.codes, a.errors)
	}
	return nil
}

// cell renders the result: admitted / expected = ratio, and the load.
func (a *accuracyResult) cell() string {
	s := fmt.Sprintf("%d / %.1f = %.3f (%s sent in %s, %.0f/s)", a.admitted, a.expected(), a.accuracy(),
		thousands(a.requests), latency(a.elapsed), a.sendRate())
	if a.fallbacks > 0 {
		s += fmt.Sprintf("; %d fallback(s) to per-node limiting logged", a.fallbacks)
	}
	return s
}

// measureAccuracy loads the limited account, whose limiter must be idle,
// with o.workers clients for o.limitDuration, round robin over nodes, and
// counts what was admitted.
func measureAccuracy(ctx context.Context, o options, storage string, nodes []*server) (*accuracyResult, error) {
	vts := make([]vegeta.Target, len(nodes))
	for i, s := range nodes {
		vts[i] = vegeta.Target{Method: http.MethodGet, URL: s.chainURL(), Header: accountCredentials(limitedAccount, limitedKey)}
	}
	t := newTargets(fmt.Sprintf("limited-%s-%d", storage, len(nodes)), vts, http.StatusOK, o.workers, o.timeout)
	defer t.close()
	fallbacks := 0
	for _, s := range nodes {
		fallbacks -= s.logCount(degradedLog)
	}

	atk := vegeta.NewAttacker(
		vegeta.Client(t.client),
		vegeta.Workers(uint64(t.workers)),
		vegeta.MaxWorkers(uint64(t.workers)),
	)
	defer stopWhenDone(ctx, atk)()
	a := &accuracyResult{storage: storage, nodes: len(nodes), limit: limitConfig{rate: o.limitRate, burst: o.limitBurst}, codes: map[uint16]int{}}
	var first, last time.Time
	for r := range atk.Attack(vegeta.NewStaticTargeter(vts...), vegeta.Rate{}, o.limitDuration, t.name) {
		a.requests++
		if first.IsZero() || r.Timestamp.Before(first) {
			first = r.Timestamp
		}
		switch {
		case r.Code >= 200 && r.Code < 300:
			a.admitted++
		case r.Code == http.StatusTooManyRequests:
			a.refused++
		default:
			a.codes[r.Code]++
			if r.Error != "" && !slices.Contains(a.errors, r.Error) && len(a.errors) < 10 {
				a.errors = append(a.errors, r.Error)
			}
			continue
		}
		if end := r.End(); end.After(last) {
			last = end
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.elapsed = last.Sub(first)
	for _, s := range nodes {
		fallbacks += s.logCount(degradedLog)
	}
	a.fallbacks = fallbacks
	fmt.Fprintf(os.Stderr, "bench: rate-limit accuracy, storage %s, %d node(s): %s\n", storage, len(nodes), a.cell())
	return a, nil
}
