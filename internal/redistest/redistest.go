// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, stopped when the test ends.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskgate/taskgate/internal/testport"
)

// Server is a redis-server process of a test.
type Server struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	// extra are more arguments of redis-server.
	extra []string
	// sentinel, when set, is the master a Sentinel started by
	// StartSentinel monitors, under name.
	sentinel *Server
	name     string
}

// Start starts redis-server with append-only persistence (fsync on every
// write, so that a Kill loses nothing acknowledged) on a free port
// and stops it when the test ends. It fails the test when redis-server is
// not installed (make deps installs it).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartInMemory starts redis-server as Start does, with no persistence:
// for tests that measure timing, where a write waiting on a slow disk
// would be a stall of the machine, not of what they measure.
func StartInMemory(t testing.TB) *Server {
	t.Helper()
	return start(t, []string{"--appendonly", "no"})
}

func start(t testing.TB, extra []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed: run `make deps` (Debian: apt-get install redis-server)")
	}
	s := &Server{t: t, dir: t.TempDir(), extra: extra}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// StartReplica starts a redis-server as Start does, replicating master,
// and waits until its link to the master is up and the master counts it
// online.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed: run `make deps` (Debian: apt-get install redis-server)")
	}
	// The master's first sync waits 5 s for more replicas by default.
	if _, err := master.command("CONFIG SET repl-diskless-sync-delay 0"); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: t.TempDir(), extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}}
	s.start()
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Up on the replica's side, and online on the master's: a WAIT
		// counts it only then.
		info, err := s.command("INFO replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			if minfo, err := master.command("INFO replication"); err == nil &&
				strings.Contains(minfo, fmt.Sprintf("port=%d,state=online", s.port)) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica on port %d: no link to the master within 10s: %v %s", s.port, err, info)
		}
		select {
		case <-s.done:
			t.Fatalf("replica on port %d exited", s.port)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Cluster is a Redis Cluster of masters started by StartCluster.
type Cluster struct {
	Masters []*Server
}

// URL is the cluster's URL as go-redis's cluster client reads it: the
// first master, the others as addr parameters.
func (c *Cluster) URL() string {
	u := "redis://" + c.Masters[0].Addr()
	for i, m := range c.Masters[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + m.Addr()
	}
	return u
}

// StartCluster starts n redis-servers in cluster mode (persistence as
// Start's), joins them into a cluster of n masters with the slots spread
// over them (redis-cli --cluster create), and waits until every node says
// the cluster is ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli is not installed: run `make deps` (Debian: apt-get install redis-tools)")
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range n {
		dir := t.TempDir()
		// The bus port is the node's own, not port+10000, which another
		// test may hold. No test fails a node over: a long node timeout
		// keeps a slow fsync on a busy machine from marking one failed.
		bus, err := testport.Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		m := &Server{t: t, dir: dir, extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "15000",
			"--cluster-port", strconv.Itoa(bus),
		}}
		m.start()
		t.Cleanup(m.Kill)
		c.Masters = append(c.Masters, m)
		args = append(args, m.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, m := range c.Masters {
		for {
			info, err := m.command("CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster node %s: not ok within 20s: %v %s", m.Addr(), err, info)
			}
			<-tick.C
		}
	}
	return c
}

// StartSentinel starts a Redis Sentinel on a free port that monitors
// master under name, with the given quorum, and declares a master down
// after 500 ms without an answer.
func StartSentinel(t testing.TB, master *Server, name string, quorum int) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), sentinel: master, name: name, extra: []string{strconv.Itoa(quorum)}}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// startSentinel writes the Sentinel's config (Sentinel rewrites it as it
// learns) and runs it.
func (s *Server) startSentinel() {
	s.t.Helper()
	conf := filepath.Join(s.dir, "sentinel.conf")
	body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d %s
sentinel down-after-milliseconds %s 500
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, s.port, s.dir, filepath.Join(s.dir, "redis.log"), s.name, s.sentinel.port, s.extra[0], s.name, s.name, s.name)
	if _, err := os.Stat(conf); err != nil {
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	s.cmd = exec.Command("redis-server", conf, "--sentinel")
	s.run()
}

// ScriptCalls returns how many scripts (EVALSHA and EVAL) Redis ran, from
// the text of INFO commandstats.
func ScriptCalls(commandstats string) int {
	calls := 0
	for _, line := range strings.Split(commandstats, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(line, cmd+"calls="); ok {
				if end := strings.IndexByte(rest, ','); end > 0 {
					n, _ := strconv.Atoi(rest[:end])
					calls += n
				}
			}
		}
	}
	return calls
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Command sends one inline command on a fresh connection and returns the
// answer's first line, or its bulk string.
func (s *Server) Command(cmd string) (string, error) { return s.command(cmd) }

// command sends one inline command on a fresh connection and returns the
// answer's first bulk or line.
func (s *Server) command(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return line, err
	}
	if strings.HasPrefix(line, "*") {
		// An array (of bulk strings): its items, joined by spaces.
		n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil {
			return "", err
		}
		items := make([]string, 0, max(n, 0))
		for range n {
			item, err := readBulk(r)
			if err != nil {
				return "", err
			}
			items = append(items, item)
		}
		return strings.Join(items, " "), nil
	}
	return bulk(r, line)
}

// readBulk reads one bulk string (or line) of an answer.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return bulk(r, line)
}

// bulk returns the bulk string whose header is line, or line itself when
// it is not one.
func bulk(r *bufio.Reader, line string) (string, error) {
	if !strings.HasPrefix(line, "$") {
		return line, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return "", err
	}
	b := make([]byte, n+2)
	_, err = io.ReadFull(r, b)
	return string(b[:n]), err
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// start runs redis-server on the server's port (a new free one the first
// time) and waits until it answers PING.
func (s *Server) start() {
	s.t.Helper()
	if s.port == 0 {
		port, err := testport.Pick("127.0.0.1")
		if err != nil {
			s.t.Fatal(err)
		}
		s.port = port
	}
	if s.sentinel != nil {
		s.startSentinel()
		return
	}
	s.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--save", "",
		"--maxmemory-policy", "noeviction",
		"--protected-mode", "yes",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	s.cmd.Args = append(s.cmd.Args, s.extra...)
	s.run()
}

// run starts s.cmd and waits until the server answers PING.
func (s *Server) run() {
	s.t.Helper()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on port %d did not answer within 10s: %v\n%s", s.port, err, log)
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server exited at start:\n%s", log)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ping sends PING on a fresh connection.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill stops the server at once (SIGKILL), as a crash would; what was not
// yet in the append-only file is lost. It is safe to call twice.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP), as a stalled host would:
// it holds its connections but answers nothing until Resume.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart kills the server and starts it again on the same port and data
// directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}
