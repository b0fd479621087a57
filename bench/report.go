package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// table renders the results as a Markdown table; the ratio column is
// chain/bare (below 1 for throughput and above 1 for latency means the chain
// costs something).
func (r *results) table() string {
	var b strings.Builder
	row := func(cells ...string) { fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | ")) }
	row("measure", "chain", "bare", "ratio chain/bare")
	row("---", "---:", "---:", "---:")
	ct, bt := r.chain.medianThroughput(), r.bare.medianThroughput()
	row(fmt.Sprintf("throughput req/s (median of %d)", r.rounds), fmt.Sprintf("%.0f", ct), fmt.Sprintf("%.0f", bt), ratio(ct, bt))
	row("throughput, median of the rounds' own ratios", "", "", fmt.Sprintf("%.2f", r.pairedRatio()))
	c50, b50 := r.chain.p50(), r.bare.p50()
	row("p50 latency", latency(c50), latency(b50), ratio(float64(c50), float64(b50)))
	c99, b99 := r.chain.p99(), r.bare.p99()
	row("p99 latency", latency(c99), latency(b99), ratio(float64(c99), float64(b99)))
	if cs, cc, ok := r.chain.cpuPerRequest(); ok {
		if bs, bc, ok := r.bare.cpuPerRequest(); ok {
			row("server CPU per request", micros(cs), micros(bs), ratio(float64(cs), float64(bs)))
			row("client CPU per request", micros(cc), micros(bc), ratio(float64(cc), float64(bc)))
		}
	}
	row("responses (not 200)", fmt.Sprintf("%d (%d)", r.chain.requests, r.chain.non200()),
		fmt.Sprintf("%d (%d)", r.bare.requests, r.bare.non200()), "")
	return b.String()
}

// pairedRatio is the median over rounds of chain/bare within the round: the
// two ran seconds apart, so a change in the machine's load between rounds
// cancels out.
func (r *results) pairedRatio() float64 {
	ratios := make([]float64, 0, len(r.chain.throughputs))
	for i, c := range r.chain.throughputs {
		if i < len(r.bare.throughputs) && r.bare.throughputs[i] > 0 {
			ratios = append(ratios, c/r.bare.throughputs[i])
		}
	}
	return median(ratios)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func latency(d time.Duration) string {
	return d.Round(time.Microsecond).String()
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// writeReport writes the table, with the run's conditions and each round's
// throughput, to path.
func writeReport(path string, o options, r *results, table string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Edge chain vs bare respond\n\n")
	bareHeaders := "bare requests carry no credentials"
	if o.bareHeaders {
		bareHeaders = "bare requests carry the same credential headers"
	}
	fmt.Fprintf(&b, "%s, %s %s/%s, %d CPUs shared by client and server; %d rounds × %s per site after %s warm-up, %d workers, keep-alive, rate unbounded; %s.\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), o.rounds, o.duration, o.warmup, o.workers, bareHeaders)
	b.WriteString(table)
	fmt.Fprintf(&b, "\nThroughput of each round (req/s): chain %s; bare %s.\n",
		formatRounds(r.chain.throughputs), formatRounds(r.bare.throughputs))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func formatRounds(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}
