package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The accounts phase's fixed sizes.
const (
	// accountCreators is how many clients create the dynamic accounts at
	// once, each over a keep-alive connection of its own.
	accountCreators = 8
	// accountsTimeout bounds the creation of all the dynamic accounts.
	accountsTimeout = time.Minute
	// revocations is how many keys the revocation measure revokes, each
	// the first key of a fresh account.
	revocations = 20
	// revocationWait bounds each wait of a revocation: for the first
	// request with the key to be accepted, then, from the DELETE sent,
	// for the first to be refused.
	revocationWait = 5 * time.Second
	// maxKeyAnswers bounds the answers one revocation's client records.
	maxKeyAnswers = 1 << 20
)

// accountsPath is the admin API's collection of accounts.
const accountsPath = "/taskgate/accounts"

// invalidCredentials is the error code of a request whose key is not (or
// no longer) valid, answered 403.
const invalidCredentials = "INVALID_CREDENTIALS"

// accountInput is the body of an account creation.
type accountInput struct {
	Name      string   `json:"name"`
	RateLimit string   `json:"rate_limit"`
	Allow     []string `json:"allow"`
}

// createdAccount is the part of the answer to POST /taskgate/accounts the
// harness uses: the account's id, its first key, and that key's id.
type createdAccount struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
	Keys   []struct {
		ID string `json:"id"`
	} `json:"keys"`
}

// adminAccount is the part of an account object the harness checks: the
// ids of its keys.
type adminAccount struct {
	Keys []struct {
		ID string `json:"id"`
	} `json:"keys"`
}

// addedKey is the part of the answer to POST /taskgate/accounts/{id}/keys
// the harness uses.
type addedKey struct {
	KeyID  string `json:"key_id"`
	APIKey string `json:"api_key"`
}

// adminClient calls a server's admin API over keep-alive connections.
type adminClient struct {
	base   string
	client *http.Client
}

func newAdminClient(s *server, conns int, timeout time.Duration) *adminClient {
	return &adminClient{
		base:   s.adminURL,
		client: &http.Client{Transport: loopbackTransport(conns, timeout), Timeout: timeout},
	}
}

// call sends method path, with body as JSON unless it is nil, and decodes
// the answer into v unless v is nil. An answer other than want is an
// error.
func (a *adminClient) call(ctx context.Context, method, path string, body any, want int, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	// Every admin write says its body is JSON, with or without one (the
	// admin API refuses writes that do not, as a browser's cross-site
	// form post would not).
	if body != nil || method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %.200s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s %s: unexpected answer %.200s", method, path, b)
		}
	}
	return nil
}

// createAccount creates a dynamic account named name that no rate limit
// refuses and that takes requests from loopback only.
func (a *adminClient) createAccount(ctx context.Context, name string) (*createdAccount, error) {
	in := accountInput{Name: name, RateLimit: "1000000000/s", Allow: []string{"127.0.0.1/32"}}
	var c createdAccount
	if err := a.call(ctx, http.MethodPost, accountsPath, in, http.StatusCreated, &c); err != nil {
		return nil, err
	}
	if c.ID == "" || c.APIKey == "" || len(c.Keys) != 1 || c.Keys[0].ID == "" {
		return nil, fmt.Errorf("POST %s: the answer for %s lacks the id, the api_key or the key's id", accountsPath, name)
	}
	return &c, nil
}

// keyPath is the admin API's path of an account's keys, or of one of them
// when keyID is set.
func keyPath(accountID, keyID string) string {
	p := accountsPath + "/" + url.PathEscape(accountID) + "/keys"
	if keyID != "" {
		p += "/" + url.PathEscape(keyID)
	}
	return p
}

// accountCredentials returns the headers of a request as accountID with
// key.
func accountCredentials(accountID, key string) http.Header {
	return http.Header{
		"Account-Id": {accountID},
		"Api-Key":    {key},
	}
}

// accountsResult is what the accounts phase measured.
type accountsResult struct {
	// created is how many dynamic accounts accountCreators clients
	// created, in createSpan.
	created    int
	createSpan time.Duration
	// edge is the chain with requests cycling over every dynamic account
	// (a) against the chain with the static bench account (b).
	edge *pairResult
	// fromSent and fromAnswer hold, for each revocation, the time from
	// the DELETE sent, and from its answer's arrival, to the arrival of
	// the first 403 to a request with the revoked key; sorted. fromAnswer
	// is negative when the 403 came first.
	fromSent, fromAnswer []time.Duration
	// calls holds the DELETEs' own latencies, sorted.
	calls []time.Duration
	// keyRequests counts the requests with the keys under revocation.
	keyRequests int
}

func (r *accountsResult) createRate() float64 { return perSecond(float64(r.created), r.createSpan) }

func (r *accountsResult) check() error {
	return errors.Join(r.edge.a.check("dynamic-account chain"), r.edge.b.check("static-account chain"))
}

// measureAccounts creates o.accounts dynamic accounts through the admin
// API, measures the chain with requests cycling over all of them against
// static (the chain with the static bench account) in alternating rounds,
// then times revocations, each of a fresh account's first key. The
// revocations come last: an account with two keys makes every
// authentication compare two.
func measureAccounts(ctx context.Context, o options, s *server, static *target) (*accountsResult, error) {
	admin := newAdminClient(s, accountCreators, o.timeout)
	defer admin.client.CloseIdleConnections()

	res := &accountsResult{}
	vts, span, err := createAccounts(ctx, admin, s.chainURL(), o.accounts)
	if err != nil {
		return nil, err
	}
	res.created, res.createSpan = len(vts), span
	fmt.Fprintf(os.Stderr, "bench: %d dynamic accounts created through the admin API by %d clients in %s: %.0f/s\n",
		res.created, accountCreators, span.Round(time.Millisecond), res.createRate())

	dynamic := newTargets("dynamic", vts, http.StatusOK, o.workers, o.timeout)
	defer dynamic.close()
	if res.edge, err = measurePair(ctx, s.cmd.Process.Pid, o.rounds, o.duration, o.warmup, dynamic, static); err != nil {
		return nil, err
	}

	// One keep-alive connection to the chain site, shared by the
	// revocations one after the other.
	client := &http.Client{Transport: loopbackTransport(1, o.timeout), Timeout: o.timeout}
	defer client.CloseIdleConnections()
	for i := range revocations {
		r, err := measureRevocation(ctx, admin, client, s.chainURL(), i)
		if err != nil {
			return nil, fmt.Errorf("revocation %d of %d: %w", i+1, revocations, err)
		}
		res.fromSent = append(res.fromSent, r.fromSent)
		res.fromAnswer = append(res.fromAnswer, r.fromAnswer)
		res.calls = append(res.calls, r.call)
		res.keyRequests += r.requests
	}
	slices.Sort(res.fromSent)
	slices.Sort(res.fromAnswer)
	slices.Sort(res.calls)
	fmt.Fprintf(os.Stderr, "bench: %d revocations: first 403 after the DELETE sent p50 %s, max %s; after its answer p50 %s, max %s; DELETE p50 %s (%d requests with the keys)\n",
		len(res.fromSent), latency(quantile(res.fromSent, 0.5)), latency(quantile(res.fromSent, 1)),
		latency(quantile(res.fromAnswer, 0.5)), latency(quantile(res.fromAnswer, 1)),
		latency(quantile(res.calls, 0.5)), res.keyRequests)
	return res, nil
}

// createAccounts creates n dynamic accounts, bench-0 to bench-<n-1>, with
// accountCreators clients, and returns a GET of chainURL with each one's
// credentials, and how long the creations took. It stops at the first
// failure, or when accountsTimeout has passed.
func createAccounts(ctx context.Context, admin *adminClient, chainURL string, n int) ([]vegeta.Target, time.Duration, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, accountsTimeout,
		fmt.Errorf("creating %d accounts took longer than %s", n, accountsTimeout))
	defer cancel()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)

	vts := make([]vegeta.Target, n)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range min(accountCreators, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				a, err := admin.createAccount(ctx, fmt.Sprintf("bench-%d", i))
				if err != nil {
					fail(err) // only the first failure is kept
					return
				}
				vts[i] = vegeta.Target{Method: http.MethodGet, URL: chainURL, Header: accountCredentials(a.ID, a.APIKey)}
			}
		})
	}
	wg.Wait()
	span := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	return vts, span, nil
}

// revocation is what one revocation measured.
type revocation struct {
	// fromSent and fromAnswer run from the DELETE sent, and from its
	// answer's arrival, to the arrival of the first 403.
	fromSent, fromAnswer time.Duration
	// call is the DELETE's own latency.
	call time.Duration
	// requests counts the requests with the revoked key.
	requests int
}

// keyAnswer is one answer to a request with the key under revocation.
type keyAnswer struct {
	// sent is when the request was sent, at when its answer arrived.
	sent, at time.Time
	status   int
	// code is the error code of a 403.
	code string
}

// keyOutcome is how the client of a key under revocation ended.
type keyOutcome struct {
	answers []keyAnswer
	err     error
}

// measureRevocation creates the account bench-revoked-<n>, sends
// requests with its first key to chainURL back to back from a goroutine
// of its own, and once one has been accepted, gives the account a second
// key and revokes the first. It returns how long after the DELETE was
// sent, and after its answer came, the first request with the revoked
// key was refused, having checked that no request sent after that answer
// was accepted and that the second key works.
func measureRevocation(ctx context.Context, admin *adminClient, client *http.Client, chainURL string, n int) (*revocation, error) {
	a, err := admin.createAccount(ctx, fmt.Sprintf("bench-revoked-%d", n))
	if err != nil {
		return nil, err
	}

	// The client's own deadline outlasts both waits below: it ends
	// whatever happens here.
	clientCtx, stop := context.WithTimeout(ctx, 2*revocationWait+time.Second)
	defer stop()
	accepted := make(chan struct{})
	done := make(chan keyOutcome, 1)
	go func() {
		answers, err := sendUntilRefused(clientCtx, client, chainURL, accountCredentials(a.ID, a.APIKey), accepted)
		done <- keyOutcome{answers, err}
	}()
	// abort stops the client and waits until it has.
	abort := func(err error) (*revocation, error) {
		stop()
		<-done
		return nil, err
	}

	wait := time.NewTimer(revocationWait)
	defer wait.Stop()
	select {
	case <-accepted:
	case out := <-done:
		err := out.err
		if err == nil {
			last := out.answers[len(out.answers)-1]
			err = fmt.Errorf("answered %d %s", last.status, last.code)
		}
		return nil, fmt.Errorf("account %s: the first request with its first key was not accepted: %w", a.ID, err)
	case <-wait.C:
		return abort(fmt.Errorf("account %s: no request with its first key was accepted within %s", a.ID, revocationWait))
	case <-ctx.Done():
		return abort(ctx.Err())
	}

	var second addedKey
	if err := admin.call(ctx, http.MethodPost, keyPath(a.ID, ""), nil, http.StatusCreated, &second); err != nil {
		return abort(err)
	}
	var after adminAccount
	sent := time.Now()
	err = admin.call(ctx, http.MethodDelete, keyPath(a.ID, a.Keys[0].ID), nil, http.StatusOK, &after)
	answered := time.Now()
	if err != nil {
		return abort(err)
	}
	if len(after.Keys) != 1 || after.Keys[0].ID != second.KeyID {
		return abort(fmt.Errorf("account %s: keys after the revocation %v, want only %s", a.ID, after.Keys, second.KeyID))
	}

	wait.Reset(time.Until(sent.Add(revocationWait)))
	var out keyOutcome
	select {
	case out = <-done:
	case <-wait.C:
		stop()
		out = <-done
		return nil, fmt.Errorf("account %s: no request with the revoked key was refused within %s of the DELETE sent (%d answered, the last %d)",
			a.ID, revocationWait, len(out.answers), out.answers[len(out.answers)-1].status)
	case <-ctx.Done():
		return abort(ctx.Err())
	}
	if out.err != nil {
		return nil, fmt.Errorf("account %s: requests with the revoked key: %w", a.ID, out.err)
	}
	refused := out.answers[len(out.answers)-1]
	if refused.code != invalidCredentials {
		return nil, fmt.Errorf("account %s: the revoked key was refused with %s, want %s", a.ID, refused.code, invalidCredentials)
	}
	if refused.at.Before(sent) {
		return nil, fmt.Errorf("account %s: its first key was refused before its revocation was sent", a.ID)
	}
	// The revocation holds before its answer is sent.
	for _, ans := range out.answers {
		if ans.status == http.StatusOK && ans.sent.After(answered) {
			return nil, fmt.Errorf("account %s: a request with the revoked key sent %s after the DELETE's answer was accepted",
				a.ID, latency(ans.sent.Sub(answered)))
		}
	}
	if err := checkAccepted(ctx, client, chainURL, accountCredentials(a.ID, second.APIKey)); err != nil {
		return nil, fmt.Errorf("account %s: its second key after the revocation: %w", a.ID, err)
	}
	return &revocation{
		fromSent:   refused.at.Sub(sent),
		fromAnswer: refused.at.Sub(answered),
		call:       answered.Sub(sent),
		requests:   len(out.answers),
	}, nil
}

// sendUntilRefused sends GET chainURL with header h back to back, one at
// a time, and records each answer, until one is 403, ctx ends, or it has
// recorded maxKeyAnswers. It closes accepted at the first 200. An answer
// other than 200 or 403 ends it with an error.
func sendUntilRefused(ctx context.Context, client *http.Client, chainURL string, h http.Header, accepted chan<- struct{}) ([]keyAnswer, error) {
	var answers []keyAnswer
	for len(answers) < maxKeyAnswers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, chainURL, nil)
		if err != nil {
			return answers, err
		}
		req.Header = h // read, never written, by the client
		sent := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return answers, ctx.Err()
			}
			return answers, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		at := time.Now()
		if err != nil {
			return answers, err
		}
		ans := keyAnswer{sent: sent, at: at, status: resp.StatusCode}
		switch resp.StatusCode {
		case http.StatusOK:
			// Every answer before this one was a 200 too.
			answers = append(answers, ans)
			if len(answers) == 1 {
				close(accepted)
			}
		case http.StatusForbidden:
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			ans.code = e.Error
			return append(answers, ans), nil
		default:
			return append(answers, ans), fmt.Errorf("GET %s: %s: %.200s", chainURL, resp.Status, bytes.TrimSpace(body))
		}
	}
	return answers, fmt.Errorf("%d answers, none 403", maxKeyAnswers)
}

// checkAccepted sends one GET chainURL with header h and checks that it
// is answered 200.
func checkAccepted(ctx context.Context, client *http.Client, chainURL string, h http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, chainURL, nil)
	if err != nil {
		return err
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", chainURL, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
