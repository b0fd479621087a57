package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The bench account and its key. The key only ever travels over loopback.
const (
	benchAccount = "bench"
	benchKey     = "taskgate-bench-key"
)

// startupTimeout bounds the wait for the server to answer.
const startupTimeout = 30 * time.Second

// caddyfileTemplate is the server's config: the admin endpoint (for the
// readiness check and pprof), an account no rate limit will ever refuse, the
// chain site and the bare site. Both sites listen on loopback only, and
// nothing is written outside the temporary directory.
const caddyfileTemplate = `{
	admin 127.0.0.1:%[1]d
	persist_config off
	auto_https off
	grace_period 1s
	storage file_system %[2]q
	taskgate {
		storage memory
		account %[3]s {
			key_sha256 %[4]s
			rate_limit 1000000000/s
			allow 127.0.0.1/32
		}
	}
}

# chain: the full edge chain in front of the same response as bare.
http://:%[5]d {
	bind 127.0.0.1
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "ok" 200
}

# bare: the response alone.
http://:%[6]d {
	bind 127.0.0.1
	respond "ok" 200
}
`

// server is the taskgate process under load.
type server struct {
	cmd       *exec.Cmd
	cancel    context.CancelFunc
	exited    chan struct{} // closed when the process has exited
	waitErr   error         // valid once exited is closed
	logPath   string
	adminURL  string
	chainPort int
	barePort  int
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Held open until all are chosen, so the ports are distinct.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startServer writes the Caddyfile into dir and starts bin on it. The
// process is interrupted (then killed) when ctx ends or stop is called.
func startServer(ctx context.Context, bin, dir string) (*server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, fmt.Errorf("choosing ports: %w", err)
	}
	keyHash := sha256.Sum256([]byte(benchKey))
	caddyfile := fmt.Sprintf(caddyfileTemplate, ports[0], filepath.Join(dir, "data"),
		benchAccount, hex.EncodeToString(keyHash[:]), ports[1], ports[2])
	configPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(configPath, []byte(caddyfile), 0o600); err != nil {
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
		cmd:       cmd,
		cancel:    cancel,
		exited:    make(chan struct{}),
		logPath:   logPath,
		adminURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		chainPort: ports[1],
		barePort:  ports[2],
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// stop interrupts the server and waits for it to exit. It reports an exit
// that came before it asked for one.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return fmt.Errorf("taskgate exited before the end of the run: %v\n%s", s.waitErr, s.logTail())
	default:
	}
	s.cancel()
	<-s.exited
	return nil
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

// waitReady polls the admin endpoint, then both sites, until each answers,
// or the startup deadline passes. Only a refused connection is retried: any
// answer but 200 means the run is misconfigured.
func (s *server) waitReady(ctx context.Context, chain, bare *target) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	checks := []struct {
		what string
		req  func() (*http.Request, error)
	}{
		{"admin endpoint", func() (*http.Request, error) { return http.NewRequest(http.MethodGet, s.adminURL+"/config/", nil) }},
		{"bare site", bare.vt.Request},
		{"chain site", chain.vt.Request},
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, c := range checks {
		for {
			req, err := c.req()
			if err != nil {
				return err
			}
			resp, err := client.Do(req.WithContext(ctx))
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s answered %s: %s", c.what, resp.Status, bytes.TrimSpace(body))
				}
				break
			}
			select {
			case <-tick.C:
			case <-s.exited:
				return fmt.Errorf("taskgate exited during startup: %v\n%s", s.waitErr, s.logTail())
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("%s did not answer within %s (last error: %v)\n%s", c.what, startupTimeout, err, s.logTail())
				}
				return ctx.Err()
			}
		}
	}
	return nil
}

// targets returns the chain and bare targets of the server.
func (s *server) targets(o options) (chain, bare *target) {
	credentials := http.Header{
		"Account-Id": {benchAccount},
		"Api-Key":    {benchKey},
	}
	chain = newTarget("chain", fmt.Sprintf("http://127.0.0.1:%d/", s.chainPort), credentials, o)
	var bareHeader http.Header
	if o.bareHeaders {
		bareHeader = credentials
	}
	bare = newTarget("bare", fmt.Sprintf("http://127.0.0.1:%d/", s.barePort), bareHeader, o)
	return chain, bare
}

// serverProfiles are the profiles fetched from the admin endpoint, each
// over the same window: file name suffix and pprof path.
var serverProfiles = []struct{ suffix, path string }{
	{".pprof", "/debug/pprof/profile"},       // CPU
	{".allocs.pprof", "/debug/pprof/allocs"}, // allocations made in the window
}

// profile loads each site for profileSeconds while fetching a CPU profile
// and an allocation profile of the server from the admin endpoint, and
// saves them as <site>.pprof and <site>.allocs.pprof.
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
			r, err := t.attack(ctx, time.Duration(secs)*time.Second+time.Second, o.workers, nil)
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
		fmt.Fprintf(os.Stderr, "bench: wrote %s{%s,%s}: %ds of %s load at %.0f req/s (≈%.0f requests in the window, %d not 200)\n",
			filepath.Join(o.profileDir, t.name), serverProfiles[0].suffix, serverProfiles[1].suffix,
			secs, t.name, load.r.throughput, load.r.throughput*float64(secs), load.r.requests-uint64(load.r.codes["200"]))
	}
	fmt.Fprintf(os.Stderr, "bench: compare with: go tool pprof -top -diff_base %s %s\n",
		filepath.Join(o.profileDir, "bare.pprof"), filepath.Join(o.profileDir, "chain.pprof"))
	return nil
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
