package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/taskgate/taskgate/internal/testport"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/taskgate/taskgate/backend/webhook"
)

// The bench account and its key. The key only ever travels over loopback.
const (
	benchAccount = "bench"
	benchKey     = "taskgate-bench-key"
)

// The limited account, whose rate limit the accuracy measure exceeds, and
// its key.
const (
	limitedAccount = "limited"
	limitedKey     = "taskgate-bench-limited-key"
)

// startupTimeout bounds the wait for the server to answer.
const startupTimeout = 30 * time.Second

// caddyfileTemplate is the server's config: the admin endpoint (for the
// readiness check, metrics and pprof), an account no rate limit will ever
// refuse (with a signed webhook, when the server has one), when asked a
// second account whose rate limit the accuracy measure exceeds, the task type
// bench/fast, and three sites: chain (the edge chain in front of
// respond), bare (respond alone) and api (the edge chain in front of the
// task API), and the operator console. Every site listens on loopback only, and nothing is written
// outside the server's directory.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.AdminPort}}
	persist_config off
	auto_https off
	grace_period 1s
	storage file_system {{printf "%q" .DataDir}}
	taskgate {
		storage {{.Storage}}
		# The revocations make a refusal each, from one address.
		auth_failures off
		account {{.Account}} {
			key_sha256 {{.KeySHA256}}
			rate_limit 1000000000/s
			allow 127.0.0.1/32
{{- if .WebhookURL}}
			webhook {{.WebhookURL}} {
				secret {{.WebhookSecret}}
			}
{{- end}}
		}
{{- range .Tenants}}
		account {{.ID}} {
			key_sha256 {{$.KeySHA256}}
			rate_limit 1000000000/s
			allow 127.0.0.1/32
{{- if .WebhookURL}}
			webhook {{.WebhookURL}} {
				secret {{$.WebhookSecret}}
			}
{{- end}}
		}
{{- end}}
{{- if .LimitedRate}}
		account {{.LimitedAccount}} {
			key_sha256 {{.LimitedKeySHA256}}
			rate_limit {{.LimitedRate}} burst {{.LimitedBurst}}
			allow 127.0.0.1/32
		}
{{- end}}
		task_type bench/fast {
			source {{.SourceURL}}
			timeout {{.SourceTimeout}}
			concurrency {{.Concurrency}}
		}
		webhooks {
			# The bench's receiver listens on loopback.
			allow_private 127.0.0.1/32 ::1/128
{{- if .WebhookRetry}}
			timeout {{.WebhookTimeout}}
			retry {{.WebhookRetry}}
{{- end}}
		}
	}
}

# chain: the full edge chain in front of the same response as bare.
http://:{{.ChainPort}} {
	bind 127.0.0.1
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "ok" 200
}

# bare: the response alone.
http://:{{.BarePort}} {
	bind 127.0.0.1
	respond "ok" 200
}

# console: the operator console (loopback clients only).
http://:{{.ConsolePort}} {
	bind 127.0.0.1
	taskgate_console
}

# api: the full edge chain in front of the task API.
http://:{{.APIPort}} {
	bind 127.0.0.1
	route /v3/* {
		api_key_auth
		ip_allowlist
		account_rate_limit
		task_api
	}
}
`))

// serverConfig is what differs between the servers of a run.
type serverConfig struct {
	// name tells the server apart in messages and names its directory.
	name string
	// storage is the argument of the taskgate app's storage option:
	// "memory", "bolt <file>" or "redis <url>".
	storage string
	// sourceURL is where the workers of bench/fast send tasks.
	sourceURL string
	// sourceTimeout bounds one call to the source.
	sourceTimeout time.Duration
	// concurrency is bench/fast's number of workers.
	concurrency int
	// webhook, when set, is the bench account's one webhook.
	webhook *webhookConfig
	// limited, when set, adds the limited account with this limit.
	limited *limitConfig
	// tenants adds that many accounts like the bench account (tenantName),
	// with its key.
	tenants int
	// tenantHooks gives each tenant a webhook of its own: webhook's URL
	// and "/t<i>", with its secret.
	tenantHooks bool
}

// tenantData is a tenant account of the Caddyfile.
type tenantData struct{ ID, WebhookURL string }

// tenantName is the id of the i-th tenant account.
func tenantName(i int) string { return fmt.Sprintf("tenant-%d", i) }

// tenantTargets returns the chain and creation targets of the tenant
// accounts, each round robin over them.
func (s *server) tenantTargets(o options, tenants int) (chain, create *target) {
	var chains, creates []vegeta.Target
	for i := range tenants {
		h := credentials()
		h.Set("Account-Id", tenantName(i))
		chains = append(chains, vegeta.Target{Method: http.MethodGet, URL: s.chainURL(), Header: h})
		c := createRequest(s.apiURL())
		c.Header = h.Clone()
		c.Header.Set("Content-Type", "application/json")
		creates = append(creates, c)
	}
	return newTargets("chain-"+s.name, chains, http.StatusOK, o.workers, o.timeout),
		newTargets("create-"+s.name, creates, http.StatusAccepted, o.createWorkers, o.timeout)
}

// limitConfig is the rate limit of the limited account: rate requests per
// second, with a burst of burst.
type limitConfig struct {
	rate, burst int
}

// webhookConfig is the bench account's webhook and the server's delivery
// settings.
type webhookConfig struct {
	// url receives the deliveries, signed with secret ("whsec_…").
	url, secret string
	// retry, when its First is set, replaces the server's default retry
	// policy (retry First Max GiveUp, and timeout Timeout).
	retry webhook.Policy
}

// caddyfileData fills caddyfileTemplate.
type caddyfileData struct {
	AdminPort, ChainPort, BarePort, APIPort int
	ConsolePort                             int
	DataDir, Storage, Account, KeySHA256    string
	SourceURL                               string
	SourceTimeout                           string
	Concurrency                             int
	WebhookURL, WebhookSecret               string
	// WebhookRetry is "<first> <max> <give up>", empty for the defaults.
	WebhookRetry, WebhookTimeout string
	// LimitedRate ("<n>/s") is empty when the server has no limited
	// account.
	LimitedAccount, LimitedKeySHA256, LimitedRate string
	LimitedBurst                                  int
	// Tenants are the tenant accounts.
	Tenants []tenantData
}

// server is the taskgate process under load.
type server struct {
	name      string
	dir       string
	cmd       *exec.Cmd
	cancel    context.CancelFunc
	exited    chan struct{} // closed when the process has exited
	waitErr   error         // valid once exited is closed
	stopped   bool
	logPath   string
	adminURL  string
	chainPort int
	barePort  int
	apiPort   int
	// consolePort serves the operator console.
	consolePort int
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module; run from the taskgate module root")
	}
	return filepath.Dir(gomod), nil
}

// build compiles the taskgate binary to bin.
func build(ctx context.Context, root, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/taskgate")
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/taskgate: %w", err)
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		port, err := testport.Pick("127.0.0.1")
		if err != nil {
			return nil, err
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// startServer writes the Caddyfile of cfg into dir and starts bin on it.
// The process is interrupted (then killed) when ctx ends or stop is called.
func startServer(ctx context.Context, bin, dir string, cfg serverConfig) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, fmt.Errorf("choosing ports: %w", err)
	}
	keyHash := sha256.Sum256([]byte(benchKey))
	data := caddyfileData{
		AdminPort:     ports[0],
		ChainPort:     ports[1],
		BarePort:      ports[2],
		APIPort:       ports[3],
		ConsolePort:   ports[4],
		DataDir:       filepath.Join(dir, "data"),
		Storage:       cfg.storage,
		Account:       benchAccount,
		KeySHA256:     hex.EncodeToString(keyHash[:]),
		SourceURL:     cfg.sourceURL,
		SourceTimeout: cfg.sourceTimeout.String(),
		Concurrency:   cfg.concurrency,
	}
	for i := range cfg.tenants {
		td := tenantData{ID: tenantName(i)}
		if cfg.tenantHooks && cfg.webhook != nil {
			td.WebhookURL = fmt.Sprintf("%s/t%d", cfg.webhook.url, i)
		}
		data.Tenants = append(data.Tenants, td)
	}
	if w := cfg.webhook; w != nil {
		data.WebhookURL, data.WebhookSecret = w.url, w.secret
		if p := w.retry; p.First > 0 {
			p = p.WithDefaults()
			data.WebhookRetry = fmt.Sprintf("%s %s %s", shortDuration(p.First), shortDuration(p.Max), shortDuration(p.GiveUp))
			data.WebhookTimeout = p.Timeout.String()
		}
	}
	if l := cfg.limited; l != nil {
		h := sha256.Sum256([]byte(limitedKey))
		data.LimitedAccount, data.LimitedKeySHA256 = limitedAccount, hex.EncodeToString(h[:])
		data.LimitedRate, data.LimitedBurst = fmt.Sprintf("%d/s", l.rate), l.burst
	}
	var caddyfile bytes.Buffer
	if err := caddyfileTemplate.Execute(&caddyfile, data); err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(configPath, caddyfile.Bytes(), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor

	srvCtx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(srvCtx, bin, "run", "--config", configPath, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A graceful stop first; a kill if it takes longer than WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting taskgate: %w", err)
	}
	s := &server{
		name:        cfg.name,
		dir:         dir,
		cmd:         cmd,
		cancel:      cancel,
		exited:      make(chan struct{}),
		logPath:     logPath,
		adminURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		chainPort:   ports[1],
		barePort:    ports[2],
		apiPort:     ports[3],
		consolePort: ports[4],
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// stop interrupts the server and waits for it to exit. It reports an exit
// that came before it asked for one. Calls after the first do nothing.
func (s *server) stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	select {
	case <-s.exited:
		return fmt.Errorf("taskgate (%s) exited before the end of the run: %v\n%s", s.name, s.waitErr, s.logTail())
	default:
	}
	s.cancel()
	<-s.exited
	return nil
}

// logCount counts the occurrences of s in the server's log.
func (s *server) logCount(substr string) int {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte(substr))
}

// logTail returns the end of the server's log.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "server log (tail):\n" + string(b)
}

// waitReady polls the admin endpoint, then each site, until each answers,
// or the startup deadline passes. Only a refused connection is retried: any
// answer but 200 means the run is misconfigured.
func (s *server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	checks := []struct{ what, url string }{
		{"admin endpoint", s.adminURL + "/config/"},
		{"bare site", s.bareURL()},
		{"chain site", s.chainURL()},
		// A listing reads the store through the whole chain, and creates
		// nothing.
		{"api site", s.apiURL() + "/v3/tasks?task_id=ready"},
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, c := range checks {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
			if err != nil {
				return err
			}
			req.Header = credentials()
			resp, err := client.Do(req)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s of %s answered %s: %s", c.what, s.name, resp.Status, bytes.TrimSpace(body))
				}
				break
			}
			select {
			case <-tick.C:
			case <-s.exited:
				return fmt.Errorf("taskgate (%s) exited during startup: %v\n%s", s.name, s.waitErr, s.logTail())
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("%s of %s did not answer within %s (last error: %v)\n%s", c.what, s.name, startupTimeout, err, s.logTail())
				}
				return ctx.Err()
			}
		}
	}
	return nil
}

func (s *server) chainURL() string { return fmt.Sprintf("http://127.0.0.1:%d/", s.chainPort) }
func (s *server) bareURL() string  { return fmt.Sprintf("http://127.0.0.1:%d/", s.barePort) }
func (s *server) apiURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", s.apiPort) }

// credentials returns the bench account's headers.
func credentials() http.Header {
	return http.Header{
		"Account-Id": {benchAccount},
		"Api-Key":    {benchKey},
	}
}

// edgeTargets returns the chain and bare targets of the edge comparison.
func (s *server) edgeTargets(o options) (chain, bare *target) {
	chain = newTarget("chain", vegeta.Target{Method: http.MethodGet, URL: s.chainURL(), Header: credentials()},
		http.StatusOK, o.workers, o.timeout)
	var bareHeader http.Header
	if o.bareHeaders {
		bareHeader = credentials()
	}
	bare = newTarget("bare", vegeta.Target{Method: http.MethodGet, URL: s.bareURL(), Header: bareHeader},
		http.StatusOK, o.workers, o.timeout)
	return chain, bare
}

// createBody is the body of every task creation.
const createBody = `{"task_id":"t","group_id":"g","data":{"n":1}}`

// createPath creates a task of bench/fast and answers at once.
const createPath = "/v3/tasks/async/bench/fast"

// createRequest returns a task creation sent to base.
func createRequest(base string) vegeta.Target {
	h := credentials()
	h.Set("Content-Type", "application/json")
	return vegeta.Target{Method: http.MethodPost, URL: base + createPath, Header: h, Body: []byte(createBody)}
}

// createTargets returns the targets of the creation comparison: the task
// API creating tasks, and bare answering the very same request.
func (s *server) createTargets(o options) (create, bare *target) {
	return s.createTargetsOf(o, o.createWorkers, "")
}

// createTargetsOf returns the targets of the creation comparison with
// workers clients each, their names ending in suffix.
func (s *server) createTargetsOf(o options, workers int, suffix string) (create, bare *target) {
	create = s.createTarget(o, workers, suffix)
	bare = newTarget("bare-post"+suffix, createRequest(strings.TrimSuffix(s.bareURL(), "/")), http.StatusOK, workers, o.timeout)
	return create, bare
}

// createTarget returns the target that creates tasks on s's API with
// workers clients, its name ending in suffix.
func (s *server) createTarget(o options, workers int, suffix string) *target {
	return newTarget("create-"+s.name+suffix, createRequest(s.apiURL()), http.StatusAccepted, workers, o.timeout)
}

// measureCreateMany measures creations against bare as the creation
// comparison does, with o.createMany clients instead (nil when that is
// 0): as many clients as a busy API has, so that each group commit or
// script call carries more tasks. observe, when set, observes the
// creation rounds.
func (s *server) measureCreateMany(ctx context.Context, o options, observe func(context.Context) func()) (*pairResult, error) {
	if o.createMany == 0 {
		return nil, nil
	}
	create, bare := s.createTargetsOf(o, o.createMany, "-many")
	defer create.close()
	defer bare.close()
	create.observe = observe
	return measurePair(ctx, s.cmd.Process.Pid, o.createRounds, o.duration, o.warmup, create, bare)
}

// headToHeadSettle is how long each server of the head-to-head rounds has
// after a round to finish its work (bolt stores the creations it logged
// within 50 ms) before its CPU time is read.
const headToHeadSettle = 150 * time.Millisecond

// measureHeadToHead measures the creations of bolt (a) against those of
// memory (b), two servers up together, with workers clients each, their
// rounds alternating; each side's CPU time is its own server's.
func measureHeadToHead(ctx context.Context, o options, bolt, memory *server, workers int) (*pairResult, error) {
	suffix := fmt.Sprintf("-%d", workers)
	a, b := bolt.createTarget(o, workers, suffix), memory.createTarget(o, workers, suffix)
	defer a.close()
	defer b.close()
	a.pid, b.pid = bolt.cmd.Process.Pid, memory.cmd.Process.Pid
	a.settle, b.settle = headToHeadSettle, headToHeadSettle
	res, err := measurePair(ctx, 0, o.h2hRounds, o.duration, o.warmup, a, b)
	if err != nil || o.profileDir == "" {
		return res, err
	}
	if err := bolt.profile(ctx, o, a); err != nil {
		return nil, err
	}
	return res, memory.profile(ctx, o, b)
}

// serverProfiles are the profiles fetched from the admin endpoint, each
// over the same window: file name suffix and pprof path.
var serverProfiles = []struct{ suffix, path string }{
	{".pprof", "/debug/pprof/profile"},       // CPU
	{".allocs.pprof", "/debug/pprof/allocs"}, // allocations made in the window
}

// profile loads each target for profileSeconds while fetching a CPU
// profile and an allocation profile of the server from the admin endpoint,
// and saves them as <target>.pprof and <target>.allocs.pprof.
func (s *server) profile(ctx context.Context, o options, targets ...*target) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	secs := o.profileSeconds
	client := &http.Client{
		Timeout:   time.Duration(secs)*time.Second + 10*time.Second,
		Transport: &http.Transport{Proxy: nil},
	}
	for _, t := range targets {
		type outcome struct {
			r   round
			err error
		}
		// The load starts with the profiles and outlasts them by a second.
		loaded := make(chan outcome, 1)
		go func() {
			r, err := t.attack(ctx, time.Duration(secs)*time.Second+time.Second, nil)
			loaded <- outcome{r, err}
		}()
		fetched := make(chan error, len(serverProfiles))
		for _, p := range serverProfiles {
			go func() {
				url := fmt.Sprintf("%s%s?seconds=%d", s.adminURL, p.path, secs)
				path := filepath.Join(o.profileDir, t.name+p.suffix)
				fetched <- fetchProfile(ctx, client, url, path)
			}()
		}
		var errs []error
		for range serverProfiles {
			errs = append(errs, <-fetched)
		}
		load := <-loaded
		errs = append(errs, load.err)
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("profiling %s: %w", t.name, err)
		}
		// The rate turns the profiles' totals into costs per request.
		fmt.Fprintf(os.Stderr, "bench: wrote %s{%s,%s}: %ds of %s load at %.0f req/s (≈%.0f requests in the window, %d not %s)\n",
			filepath.Join(o.profileDir, t.name), serverProfiles[0].suffix, serverProfiles[1].suffix,
			secs, t.name, load.r.throughput, load.r.throughput*float64(secs), load.r.requests-uint64(load.r.codes[t.want]), t.want)
	}
	return nil
}

// profileCPU starts fetching a CPU profile of the server over the next
// profileSeconds into <name>.pprof, and returns a function that waits until
// it is saved.
func (s *server) profileCPU(ctx context.Context, o options, name string) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			done <- err
			return
		}
		client := &http.Client{
			Timeout:   time.Duration(o.profileSeconds)*time.Second + 10*time.Second,
			Transport: &http.Transport{Proxy: nil},
		}
		defer client.CloseIdleConnections()
		url := fmt.Sprintf("%s%s?seconds=%d", s.adminURL, serverProfiles[0].path, o.profileSeconds)
		path := filepath.Join(o.profileDir, name+serverProfiles[0].suffix)
		if err := fetchProfile(ctx, client, url, path); err != nil {
			done <- fmt.Errorf("profiling %s: %w", name, err)
			return
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", path)
		done <- nil
	}()
	return func() error { return <-done }
}

// fetchProfile saves the pprof profile at url to path.
func fetchProfile(ctx context.Context, client *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	return os.WriteFile(path, data, 0o644)
}
