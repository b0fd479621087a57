package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskgate/taskgate/internal/testport"
)

// readyTimeout bounds how long a server may take to load its config.
const readyTimeout = 20 * time.Second

// server is one taskgate process under test.
type server struct {
	t *testing.T

	// dir holds everything of this server: config, storage, home, logs.
	dir string
	// storage is the Caddy storage directory (certificates, local CA).
	storage string
	// adminAddr is the admin endpoint, host:port.
	adminAddr string
	// httpPort and httpsPort are free ports given to Caddy as its
	// http_port and https_port, so that it never touches 80 or 443.
	httpPort, httpsPort int
	// env is added to the child's environment.
	env []string

	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	client  *http.Client
}

// config is what a test adds to the Caddyfile the helper writes.
type config struct {
	// Global holds extra global options (the taskgate block, servers, …).
	Global string
	// Sites holds the site blocks.
	Sites string
	// Env is added to the child's environment ("NAME=value").
	Env []string
}

// newServer prepares a server (directories, ports) without starting it, so
// that a test can use its ports in the config it then passes to start.
func newServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:         t,
		dir:       dir,
		storage:   filepath.Join(dir, "storage"),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpPort:  freePort(t),
		httpsPort: freePort(t),
		logPath:   filepath.Join(dir, "taskgate.log"),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableCompression: true},
		},
	}
	for _, d := range []string{"home", "data", "config"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// startServer starts a server with the given config and waits until it
// serves it.
func startServer(t *testing.T, c config) *server {
	t.Helper()
	s := newServer(t)
	s.start(c)
	return s
}

// caddyfile returns the complete Caddyfile of c: the helper's global
// options (admin endpoint, storage in the temp dir, loopback only, no
// trust-store changes) followed by c's own.
func (s *server) caddyfile(c config) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	storage file_system %s
	default_bind 127.0.0.1
	http_port %d
	https_port %d
	skip_install_trust
	local_certs
	auto_https disable_redirects
%s
}

%s
`, s.adminAddr, s.storage, s.httpPort, s.httpsPort, indent(c.Global), c.Sites)
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line != "" {
			b.WriteString("\t")
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// start writes c as a Caddyfile and runs the server on it.
func (s *server) start(c config) {
	s.t.Helper()
	path := filepath.Join(s.dir, "Caddyfile")
	writeFile(s.t, path, s.caddyfile(c))
	s.env = append(s.env, c.Env...)
	s.run("--config", path, "--adapter", "caddyfile")
}

// startFile runs the server on an existing config file (JSON when adapter
// is empty).
func (s *server) startFile(path, adapter string, env ...string) {
	s.t.Helper()
	s.env = append(s.env, env...)
	args := []string{"--config", path}
	if adapter != "" {
		args = append(args, "--adapter", adapter)
	}
	s.run(args...)
}

func (s *server) run(args ...string) {
	t := s.t
	t.Helper()
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(taskgateBin, append([]string{"run"}, args...)...)
	s.cmd.Dir = s.dir
	s.cmd.Env = append(os.Environ(),
		"HOME="+filepath.Join(s.dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(s.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"),
	)
	s.cmd.Env = append(s.cmd.Env, s.env...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("taskgate (pid %d) did not exit after kill", s.cmd.Process.Pid)
		}
		s.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("taskgate output:\n%s", s.output())
		}
	})
	s.waitReady()
}

// waitReady polls the admin endpoint until the config is loaded: Caddy
// answers GET /config/ only once a load has finished.
func (s *server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.exited:
			s.t.Fatalf("taskgate exited before it was ready:\n%s", s.output())
		default:
		}
		resp, err := s.client.Get("http://" + s.adminAddr + "/config/")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) != "null" {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("taskgate not ready after %v (last error: %v):\n%s", readyTimeout, err, s.output())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// alive tells whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// output returns what the process wrote to stdout and stderr so far.
func (s *server) output() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	return string(b)
}

// response is an HTTP answer, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the given headers (nil: none besides Go's own)
// and reads the whole answer; t is the (sub)test that asks.
func (s *server) do(t *testing.T, method, url string, header http.Header, body io.Reader) response {
	t.Helper()
	return doWith(t, s.client, method, url, header, body)
}

// get is do with GET and no body.
func (s *server) get(t *testing.T, url string, header http.Header) response {
	t.Helper()
	return s.do(t, http.MethodGet, url, header, nil)
}

func doWith(t *testing.T, c *http.Client, method, url string, header http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	resp, err := c.Do(req)
	// Across a config reload, a new connection may be accepted by the
	// server on its way out and closed unanswered, or reset before it is
	// accepted: a client retries an idempotent request on a fresh
	// connection, as browsers do (a POST with an Idempotency-Key is one),
	// and any request that never left (the dial failed).
	for retries := 0; err != nil && retries < 3 && retriable(req, err); retries++ {
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				t.Fatal(err)
			}
		}
		resp, err = c.Do(req)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// retriable tells whether a request that failed with err may be sent
// again: one whose connection was refused or reset while being set up, or
// an idempotent one whose connection closed unanswered.
func retriable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead ||
		req.Method == http.MethodPost && req.Header.Get("Idempotency-Key") != ""
	return idempotent && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

// admin sends a request to the admin endpoint.
func (s *server) admin(t *testing.T, method, path, contentType string, body []byte) response {
	t.Helper()
	var h http.Header
	if contentType != "" {
		h = http.Header{"Content-Type": {contentType}}
	}
	return s.do(t, method, "http://"+s.adminAddr+path, h, bytes.NewReader(body))
}

// load replaces the running config with c through the admin API, the way
// `caddy reload` does.
func (s *server) load(t *testing.T, c config) response {
	t.Helper()
	r := s.admin(t, http.MethodPost, "/load", "text/caddyfile", []byte(s.caddyfile(c)))
	// The old config's servers close their idle connections as they go:
	// a request on one of them could meet the close (EOF).
	s.client.CloseIdleConnections()
	return r
}

// siteURL is a URL on 127.0.0.1 at port.
func siteURL(port int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

// creds returns the credential headers of a request.
func creds(accountID, key string) http.Header {
	return http.Header{"Account-Id": {accountID}, "Api-Key": {key}}
}

// apiError is the body of every error answer.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// wantError checks that r is an error answer with the given status and code:
// JSON content type and a body of exactly {"error","message"}.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	if len(fields) != 2 {
		t.Errorf("body %s: want exactly the fields error and message", r.body)
	}
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if e.Error != code {
		t.Errorf("error = %q, want %q (body %s)", e.Error, code, r.body)
	}
	if strings.TrimSpace(e.Message) == "" {
		t.Errorf("empty message in %s", r.body)
	}
}

// wantOK checks that r is a 200 with the given body.
func wantOK(t *testing.T, r response, body string) {
	t.Helper()
	if r.status != http.StatusOK || string(r.body) != body {
		t.Errorf("got %d %q, want 200 %q", r.status, r.body, body)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, that
// no other test of this process got, and that no outgoing connection can
// take before the server binds it.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := testport.Pick("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freePort6 returns such a TCP port on [::1], or skips the test when the
// host has no IPv6 loopback.
func freePort6(t *testing.T) int {
	t.Helper()
	port, err := testport.Pick("::1")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	return port
}

// sha256Hex is what `taskgate hash-key` prints for key.
func sha256Hex(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// taskgateCmd runs a taskgate subcommand to completion in dir and returns
// its standard output, its standard error and its exit code.
func taskgateCmd(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, taskgateBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("taskgate %v: timed out:\n%s%s", args, out.String(), errOut.String())
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("taskgate %v: %v", args, err)
		}
		return out.String(), errOut.String(), ee.ExitCode()
	}
	return out.String(), errOut.String(), 0
}

// rawRequest writes raw bytes to addr as one HTTP/1.1 request and returns
// the status code of the answer (0 when the server closed without one).
func rawRequest(t *testing.T, addr string, raw []byte) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(raw); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("bad status line %q", line)
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("bad status line %q", line)
	}
	return code
}

// stalledBody sends, over a connection of its own to addr, a request that
// announces a body of length bytes and sends only partial of it, then
// reads the answer, waiting at most 10 s. It returns the answer and the
// connection, left open for the caller, who closes it. It may run outside
// the test's goroutine: it reports trouble as an error.
func stalledBody(addr, method, target string, header http.Header, length int, partial string) (response, net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return response{}, nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return response{}, conn, err
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, target, addr, length)
	_ = header.Write(&head)
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()+partial); err != nil {
		return response{}, conn, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{}, conn, fmt.Errorf("reading the answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}, conn, err
}

// metricLine matches a sample of the Prometheus text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)

// metrics fetches the admin endpoint's /metrics and returns every sample
// whose name starts with prefix, keyed by `name{labels}` as exposed, along
// with the whole exposition.
func (s *server) metrics(t *testing.T, prefix string) (map[string]float64, string) {
	t.Helper()
	r := s.get(t, "http://"+s.adminAddr+"/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(r.body), "\n") {
		m := metricLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[1], prefix) {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		samples[m[1]+m[2]] = v
	}
	return samples, string(r.body)
}

// forEachStorage runs test as a parallel subtest per storage kind.
func forEachStorage(t *testing.T, test func(t *testing.T, storage string)) {
	for _, storage := range []string{"memory", "bolt"} {
		t.Run(storage, func(t *testing.T) {
			t.Parallel()
			test(t, storage)
		})
	}
}

// storageOption returns the taskgate storage option of a kind: bolt gets
// a database file in the server's directory.
func (s *server) storageOption(kind string) string {
	if kind == "bolt" {
		return "bolt " + filepath.Join(s.dir, "tg.db")
	}
	return kind
}
