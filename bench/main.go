// Command bench is the load harness behind `make bench`: it builds taskgate,
// serves two sites on loopback — the edge chain (api_key_auth, ip_allowlist,
// account_rate_limit, then respond) and a bare respond — and measures the
// maximum throughput and the latency of each with vegeta, alternating the two
// in short rounds so that a noisy machine weighs on both alike.
//
// Run it from the module root:
//
//	go run ./bench [-rounds 5] [-duration 2s] [-warmup 1s] [-workers 64] [-bare-headers] [-profile dir]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// options are the harness's flags.
type options struct {
	rounds         int
	duration       time.Duration
	warmup         time.Duration
	workers        int
	timeout        time.Duration
	out            string
	profileDir     string
	profileSeconds int
	bareHeaders    bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "measured rounds per site; the sites alternate within each round")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "length of one measured round of one site")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load on each site before the first round")
	flag.IntVar(&o.workers, "workers", 64, "concurrent requests (vegeta workers, one keep-alive connection each)")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of one request")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results", "edge.md"), "Markdown file the table is written to, relative to the module root")
	flag.BoolVar(&o.bareHeaders, "bare-headers", true, "send bare the same requests as the chain, credential headers included (false: bare requests carry none, so the ratio also counts the cost of carrying the headers)")
	flag.StringVar(&o.profileDir, "profile", "", "if set, after the rounds, load each site once more while fetching the server's CPU and allocation profiles into this directory (chain.pprof, chain.allocs.pprof, bare.pprof, bare.allocs.pprof)")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 5, "length of each profile, in seconds")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "bench: interrupted; server stopped")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	switch {
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case o.duration < 100*time.Millisecond:
		return errors.New("-duration must be at least 100ms")
	case o.warmup < 0:
		return errors.New("-warmup must not be negative")
	case o.workers < 1:
		return errors.New("-workers must be at least 1")
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	case o.profileSeconds < 1:
		return errors.New("-profile-seconds must be at least 1")
	}
	return nil
}

// run builds and starts the server, measures both sites, reports, and stops
// the server whatever happens.
func run(ctx context.Context, o options) (err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "taskgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "taskgate")
	fmt.Fprintln(os.Stderr, "bench: building ./cmd/taskgate")
	if err := build(ctx, root, bin); err != nil {
		return err
	}

	srv, err := startServer(ctx, bin, tmp)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := srv.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()

	chain, bare := srv.targets(o)
	defer chain.close()
	defer bare.close()
	if err := srv.waitReady(ctx, chain, bare); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: server up (chain %s, bare %s, admin %s)\n", chain.url, bare.url, srv.adminURL)

	res, err := measure(ctx, o, srv.cmd.Process.Pid, chain, bare)
	if err != nil {
		return err
	}

	table := res.table()
	fmt.Print(table)
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := writeReport(out, o, res, table); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "bench: wrote", out)

	if o.profileDir != "" {
		if err := srv.profile(ctx, o, chain, bare); err != nil {
			return err
		}
	}

	if n := res.chain.non200(); n > 0 {
		return fmt.Errorf("%d chain responses were not 200 (by status, 0 = transport error: %v; errors: %v)",
			n, res.chain.codes, res.chain.errors)
	}
	if n := res.bare.non200(); n > 0 {
		return fmt.Errorf("%d bare responses were not 200 (by status, 0 = transport error: %v; errors: %v)",
			n, res.bare.codes, res.bare.errors)
	}
	return nil
}
