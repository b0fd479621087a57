package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"
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
	fmt.Fprintf(os.Stderr, "bench: console, %d accounts: accounts page p50 %s (%.1f KB), admin API listing p50 %s (%.1f KB), search p50 %s\n",
		accounts, latency(quantile(res.page, 0.5)), float64(res.pageBytes)/1000,
		latency(quantile(res.list, 0.5)), float64(res.listBytes)/1000, latency(quantile(res.search, 0.5)))
	return res, nil
}
