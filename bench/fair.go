package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The fair-queue phases' fixed sizes.
const (
	// fairAccounts is how many accounts share the queue in the
	// many-accounts rounds of the throughput measure.
	fairAccounts = 1000
	// fairTasks is how many tasks each throughput round creates.
	fairTasks = 6000
	// fairRounds is how many rounds of each kind the throughput measure
	// runs, alternating.
	fairRounds = 2
	// fairCreators is how many clients create the tasks of a round.
	fairCreators = 16
	// fairConcurrency is bench/fast's workers in the wait measure: with
	// the slow source, fairConcurrency ÷ slowCall tasks a second.
	fairConcurrency = 4
	// heavyBacklog is how many tasks the heavy account queues at once.
	heavyBacklog = 1500
	// lightTasks is how many tasks the light account sends, one at a
	// time, in each of the idle and behind-heavy measures.
	lightTasks = 20
	// fairTimeout bounds each round and each wait.
	fairTimeout = 2 * time.Minute
)

// fairResult is what the fair-queue phases measured.
type fairResult struct {
	// oneAccount and manyAccounts are the tasks completed per second of
	// each round: fairTasks created by one account, or spread over
	// fairAccounts accounts in turn.
	oneAccount, manyAccounts []float64
	// idle and behind are the light account's create-to-complete
	// latencies, sorted: on an idle queue, and while the heavy account's
	// backlog of heavyBacklog tasks drains.
	idle, behind []time.Duration
	// backlogAhead is the heavy account's tasks still queued when the
	// light account sent its first task behind them, and drainRate the
	// tasks completed per second meanwhile: a single first-in first-out
	// queue would have made that task wait backlogAhead ÷ drainRate.
	backlogAhead int
	drainRate    float64
	// notCompleted counts the light tasks that did not end completed.
	notCompleted int
}

func (r *fairResult) fifoWait() time.Duration {
	if r.drainRate <= 0 {
		return 0
	}
	return time.Duration(float64(r.backlogAhead) / r.drainRate * float64(time.Second))
}

func (r *fairResult) check() error {
	if r == nil {
		return nil
	}
	if r.notCompleted > 0 {
		return fmt.Errorf("fair queues: %d light tasks did not complete", r.notCompleted)
	}
	return nil
}

// measureFairThroughput compares the tasks completed per second when one
// account creates them all with when fairAccounts accounts each create a
// share, in alternating rounds on the same server (storage bolt, the fast
// source): the cost of the turns accounts take.
func measureFairThroughput(ctx context.Context, o options, s *server, src *source, res *fairResult) error {
	admin := newAdminClient(s, accountCreators, o.timeout)
	defer admin.client.CloseIdleConnections()
	many := make([]http.Header, fairAccounts)
	var next atomic.Int64
	errs := make(chan error, accountCreators)
	for range accountCreators {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= fairAccounts {
					errs <- nil
					return
				}
				c, err := admin.createAccount(ctx, fmt.Sprintf("fair-%04d", i))
				if err != nil {
					errs <- err
					return
				}
				many[i] = accountCredentials(c.ID, c.APIKey)
			}
		}()
	}
	var err error
	for range accountCreators {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return err
	}
	one := []http.Header{credentials()}
	client := &http.Client{Transport: loopbackTransport(fairCreators, o.timeout), Timeout: o.timeout}
	defer client.CloseIdleConnections()
	for round := range 2 * fairRounds {
		accounts, into := one, &res.oneAccount
		if round%2 == 1 {
			accounts, into = many, &res.manyAccounts
		}
		rate, err := fairRound(ctx, client, s, src, accounts)
		if err != nil {
			return err
		}
		*into = append(*into, rate)
	}
	return nil
}

// fairRound creates fairTasks tasks of bench/fast, task i as account
// i mod len(accounts), and returns the tasks completed per second from the
// first creation sent to the source's last answer.
func fairRound(ctx context.Context, client *http.Client, s *server, src *source, accounts []http.Header) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, fairTimeout)
	defer cancel()
	done := src.fast.reached(src.fast.load() + fairTasks)
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, fairCreators)
	for range fairCreators {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= fairTasks {
					errs <- nil
					return
				}
				if _, err := createTask(ctx, client, s.apiURL(), accounts[i%len(accounts)]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
	for range fairCreators {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return 0, err
	}
	select {
	case at := <-done:
		return perSecond(fairTasks, at.Sub(start)), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("fair queues: the source saw %d of %d tasks within %s", src.fast.load(), fairTasks, fairTimeout)
	}
}

// measureFairWait times a light account's tasks, one at a time, on an
// idle queue and then behind a heavy account's backlog, on a server whose
// fairConcurrency workers call the slow source.
func measureFairWait(ctx context.Context, o options, s *server, src *source, res *fairResult) error {
	ctx, cancel := context.WithTimeout(ctx, fairTimeout)
	defer cancel()
	admin := newAdminClient(s, 1, o.timeout)
	defer admin.client.CloseIdleConnections()
	c, err := admin.createAccount(ctx, "light")
	if err != nil {
		return err
	}
	light := accountCredentials(c.ID, c.APIKey)
	client := &http.Client{Transport: loopbackTransport(fairCreators, o.timeout), Timeout: o.timeout}
	defer client.CloseIdleConnections()
	poll := newPoller(s, 1)
	poll.auth = light
	defer poll.client.CloseIdleConnections()

	lightRun := func() ([]time.Duration, error) {
		var out []time.Duration
		for range lightTasks {
			start := time.Now()
			id, err := createTask(ctx, client, s.apiURL(), light)
			if err != nil {
				return nil, err
			}
			end, err := poll.wait(ctx, id, longPollSeconds)
			for err == nil && end.status == "in_progress" {
				end, err = poll.wait(ctx, id, longPollSeconds)
			}
			if err != nil {
				return nil, err
			}
			if end.status != statusCompleted {
				res.notCompleted++
			}
			out = append(out, end.at.Sub(start))
		}
		slices.Sort(out)
		return out, nil
	}
	if res.idle, err = lightRun(); err != nil {
		return err
	}

	// The heavy account queues its backlog as fast as it can.
	before := src.slow.load()
	drained := src.slow.reached(before + heavyBacklog + lightTasks)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, fairCreators)
	for range fairCreators {
		wg.Go(func() {
			for int(next.Add(1)) <= heavyBacklog {
				if _, err := createTask(ctx, client, s.apiURL(), credentials()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err != nil {
		return err
	}
	queued := time.Now()
	ran := src.slow.load() - before
	res.backlogAhead = heavyBacklog - int(ran)
	if res.behind, err = lightRun(); err != nil {
		return err
	}
	select {
	case at := <-drained:
		res.drainRate = perSecond(float64(heavyBacklog-int(ran)+lightTasks), at.Sub(queued))
	case <-ctx.Done():
		return fmt.Errorf("fair queues: the heavy backlog did not drain within %s", fairTimeout)
	}
	return nil
}

// createTask creates a task of bench/fast as the account of h and returns
// its request id.
func createTask(ctx context.Context, client *http.Client, base string, h http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+createPath, bytes.NewReader([]byte(createBody)))
	if err != nil {
		return "", err
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	var v struct {
		RequestID string `json:"request_id"`
	}
	if err := doJSON(client, req, http.StatusAccepted, &v); err != nil {
		return "", err
	}
	return v.RequestID, nil
}

// doJSON sends req and decodes the answer, which must have status want.
func doJSON(client *http.Client, req *http.Request, want int, v any) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %.200s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}
