package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/chromedp/chromedp"
)

// consoleLoads is how many times each page of the console phase is loaded.
const consoleLoads = 40

// consoleResult is the operator console's accounts page against the admin
// API's listing of the same accounts, which the page is made from.
type consoleResult struct {
	accounts int
	// page and list are each load's time to the last byte, sorted;
	// pageBytes and listBytes the size of one answer.
	page, list           []time.Duration
	pageBytes, listBytes int
	// search is the accounts page searched by a name that matches one.
	search []time.Duration
	// paints are the first contentful paints of the accounts page in
	// headless chromium, from the start of each navigation, sorted, and
	// barePaints those of the bare site's "ok" in the same tab, taking
	// turns: the browser's own floor. None when chromium is not installed.
	paints, barePaints []time.Duration
}

func (r *consoleResult) ratio() float64 {
	return quantile(r.page, 0.5).Seconds() / quantile(r.list, 0.5).Seconds()
}

// measureConsole loads, one after the other and taking turns, the
// console's first page of accounts, the admin API's listing of every
// account, and a search, consoleLoads times each.
func measureConsole(ctx context.Context, o options, s *server, accounts int) (*consoleResult, error) {
	client := &http.Client{Transport: loopbackTransport(1, o.timeout), Timeout: o.timeout}
	defer client.CloseIdleConnections()
	console := fmt.Sprintf("http://127.0.0.1:%d", s.consolePort)
	load := func(url string) (time.Duration, int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return took, int(n), err
	}
	res := &consoleResult{accounts: accounts}
	for range consoleLoads {
		took, n, err := load(console + "/accounts")
		if err != nil {
			return nil, err
		}
		res.page, res.pageBytes = append(res.page, took), n
		if took, n, err = load(s.adminURL + "/taskgate/accounts"); err != nil {
			return nil, err
		}
		res.list, res.listBytes = append(res.list, took), n
		if took, _, err = load(console + fmt.Sprintf("/accounts?q=bench-%d", accounts-1)); err != nil {
			return nil, err
		}
		res.search = append(res.search, took)
	}
	slices.Sort(res.page)
	slices.Sort(res.list)
	slices.Sort(res.search)
	paints, err := measurePaints(ctx, console+"/accounts", s.bareURL())
	if err != nil {
		return nil, fmt.Errorf("first paints in chromium: %w", err)
	}
	if paints != nil {
		res.paints, res.barePaints = paints[0], paints[1]
	}
	fmt.Fprintf(os.Stderr, "bench: console, %d accounts: accounts page p50 %s (%.1f KB), admin API listing p50 %s (%.1f KB), search p50 %s\n",
		accounts, latency(quantile(res.page, 0.5)), float64(res.pageBytes)/1000,
		latency(quantile(res.list, 0.5)), float64(res.listBytes)/1000, latency(quantile(res.search, 0.5)))
	if len(res.paints) > 0 {
		fmt.Fprintf(os.Stderr, "bench: console in chromium: first contentful paint p50 %s, best %s of %d loads; a bare page's p50 %s, best %s\n",
			latency(quantile(res.paints, 0.5)), latency(res.paints[0]), len(res.paints),
			latency(quantile(res.barePaints, 0.5)), latency(res.barePaints[0]))
	}
	return res, nil
}

// consolePaints is how many times chromium loads the console's page.
const consolePaints = 20

// measurePaints loads each of urls in one tab of headless chromium
// consolePaints times, taking turns, and returns each url's first
// contentful paints, sorted: nil when chromium is not installed (make
// deps installs it).
func measurePaints(ctx context.Context, urls ...string) ([][]time.Duration, error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: chromium not found (make deps installs it): no first paints measured")
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("no-proxy-server", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-gpu-vsync", true), chromedp.Flag("disable-frame-rate-limit", true))...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	paints := make([][]time.Duration, len(urls))
	for i := range consolePaints {
		for j, url := range urls {
			err := chromedp.Do(tab,
				chromedp.Navigate(fmt.Sprintf("%s?load=%d", url, i)),
				chromedp.Poll[chromedp.Void](`performance.getEntriesByName("first-contentful-paint").length > 0`, chromedp.WithPollingTimeout(30*time.Second)),
			)
			if err != nil {
				return nil, err
			}
			ms, err := chromedp.Run(tab, chromedp.Evaluate[float64](`performance.getEntriesByName("first-contentful-paint")[0].startTime`))
			if err != nil {
				return nil, err
			}
			paints[j] = append(paints[j], time.Duration(ms*float64(time.Millisecond)))
		}
	}
	for _, p := range paints {
		slices.Sort(p)
	}
	return paints, nil
}
