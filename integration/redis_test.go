package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/internal/redistest"
)

// The tests of this file run three taskgate nodes on one redis-server
// (`storage redis`), each node with its own ports and admin endpoint, as
// a deployment behind a load balancer would.

// Figures of the shared store that the tests hold the nodes to.
const (
	// propagation is how soon an account change made on one node is in
	// force on the others (docs/admin-api.md: "within a second").
	propagation = time.Second
	// propagationGiveUp is how long a test keeps polling after
	// propagation has passed, to tell how late a change was.
	propagationGiveUp = 5 * time.Second
	// leaseLength is task.DefaultLease: a task of a node that died is run
	// again by another node once its lease has ended.
	leaseLength = 15 * time.Second
	// leaseRenewal is how often a running node renews its leases
	// (leaseLength/3): a node's lease ends more than leaseLength -
	// leaseRenewal after it died.
	leaseRenewal = leaseLength / 3
	// storeDownAnswer bounds how long a call that needs the store may take
	// to answer 503 STORAGE_UNAVAILABLE while Redis is down. (go-redis
	// dials 5 times, 100 ms apart, before it gives up: about 0.5 s.)
	storeDownAnswer = 3 * time.Second
	// storeRecovery bounds how soon every node works again once Redis is
	// back, without a restart of the nodes.
	storeRecovery = 5 * time.Second
)

// redisServer is a redis-server process of a test, on a free loopback port
// and in a directory of its own, with append-only persistence that fsyncs
// every write: a kill loses nothing Redis acknowledged.
type redisServer struct{ *redistest.Server }

// startRedis starts a redis-server and kills it when the test ends (after
// the nodes started later, which stop first).
func startRedis(t *testing.T) *redisServer { return &redisServer{redistest.Start(t)} }

// startRedisInMemory starts a redis-server that writes no file, for tests
// that count what rate limits let through: an fsync slower than the rate
// limiter's 100 ms timeout would have the nodes limit alone for a while.
func startRedisInMemory(t *testing.T) *redisServer {
	return &redisServer{redistest.StartInMemory(t)}
}

// url is the server's redis:// URL, database 0.
func (r *redisServer) url() string { return r.URL() }

func (r *redisServer) addr() string { return r.Addr() }

// kill stops the server at once (SIGKILL), as a crash would.
func (r *redisServer) kill() { r.Kill() }

// restart kills the server (if it runs) and starts it again on the same
// port and data directory.
func (r *redisServer) restart() { r.Restart() }

// redisNode is one taskgate node of a test's cluster.
type redisNode struct {
	*server
	// name is how failures name the node: "node 1", …
	name string
	// api is the port of the task API (taskSite); edge the port of the
	// edge chain in front of a respond (edgeSite).
	api, edge int
}

// redisGlobal is the taskgate block of nodes that share r: storage redis,
// then body.
func redisGlobal(r *redisServer, body string) string { return redisGlobalURL(r.url(), body) }

// redisGlobalURL is the taskgate block of nodes that share the Redis (or
// Redis Cluster) at url.
func redisGlobalURL(url, body string) string { return redisGlobalShards(url, 1, body) }

// redisGlobalShards is redisGlobalURL with the store's data in shards.
func redisGlobalShards(url string, shards int, body string) string {
	if shards > 1 {
		return fmt.Sprintf("taskgate {\n\tstorage redis %q {\n\t\tshards %d\n\t}\n%s}", url, shards, indent(body))
	}
	return fmt.Sprintf("taskgate {\n\tstorage redis %q\n%s}", url, indent(body))
}

// edgeSite is the edge chain on port, in front of a plain answer.
func edgeSite(port int) string {
	return fmt.Sprintf(`
http://:%d {
	api_key_auth
	account_rate_limit
	respond "ok" 200
}`, port)
}

// startNode starts a node with the taskgate block global, its task API and
// its edge chain on ports of its own.
func startNode(t *testing.T, name, global string) *redisNode {
	t.Helper()
	n := &redisNode{server: newServer(t), name: name, api: freePort(t), edge: freePort(t)}
	n.start(config{Global: global, Sites: taskSite(n.api) + "\n" + edgeSite(n.edge)})
	return n
}

// startNodes starts count nodes on the same taskgate block, one after the
// other.
func startNodes(t *testing.T, count int, global string) []*redisNode {
	t.Helper()
	nodes := make([]*redisNode, count)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("node %d", i+1), global)
	}
	return nodes
}

// client is the task API of the node as an account.
func (n *redisNode) client(accountID, key string) taskClient {
	return taskClient{s: n.server, port: n.api, auth: creds(accountID, key)}
}

// authStatus asks the node's task API for a listing with the credentials:
// 200 when the key works there, 403 when it is refused.
func (n *redisNode) authStatus(t *testing.T, accountID, key string) int {
	t.Helper()
	r := n.get(t, siteURL(n.api, "/v3/tasks?group_id=probe"), creds(accountID, key))
	switch r.status {
	case http.StatusOK:
	case http.StatusForbidden:
		wantError(t, r, http.StatusForbidden, "INVALID_CREDENTIALS")
	default:
		t.Fatalf("%s: GET /v3/tasks as %s: %d %s, want 200 or 403", n.name, accountID, r.status, r.body)
	}
	return r.status
}

// waitAuth polls every node's task API with the credentials until it
// answers want (200: the key works, 403: it is refused), and returns how
// long after since each node did. A node that took longer than within
// fails the test; polling goes on up to propagationGiveUp to tell by how
// much.
func waitAuth(t *testing.T, nodes []*redisNode, since time.Time, accountID, key string, want int, within time.Duration, what string) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(nodes))
	done := make([]bool, len(nodes))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	giveUp := since.Add(propagationGiveUp)
	for pending := len(nodes); pending > 0; {
		for i, n := range nodes {
			if !done[i] && n.authStatus(t, accountID, key) == want {
				took[i], done[i] = time.Since(since), true
				pending--
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(giveUp) {
			for i, n := range nodes {
				if !done[i] {
					t.Errorf("%s: %s: not after %v (want within %v)", n.name, what, propagationGiveUp, within)
				}
			}
			t.FailNow()
		}
		<-tick.C
	}
	for i, d := range took {
		if d > within {
			t.Errorf("%s: %s only %v after the change, want within %v", nodes[i].name, what, d.Round(time.Millisecond), within)
		}
	}
	return took
}

// durations prints durations rounded to the millisecond.
func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(s, ", ")
}

// holdingSource is a source that holds every call until the test opens it,
// then answers each with its request id.
func holdingSource(t *testing.T) *fakeSource {
	t.Helper()
	return newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, echoResult(c.RequestID))
		}
	})
}

// echoResult is the result of a task that a test's source completed.
func echoResult(requestID string) string {
	return fmt.Sprintf(`{"status":"done","echo":%q}`, requestID)
}

// waitEnded polls every task every 50 ms until all have ended or the
// deadline passes, and returns them as last seen. It polls without wait,
// so as not to rely on the task end notices between nodes, which the long
// poll test checks on its own.
func waitEnded(t *testing.T, c taskClient, ids []string, deadline time.Time) map[string]taskObject {
	t.Helper()
	seen := make(map[string]taskObject, len(ids))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := 0
		for _, id := range ids {
			if o, ok := seen[id]; ok && o.terminal() {
				continue
			}
			o := c.task(t, id, 0)
			seen[id] = o
			if !o.terminal() {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return seen
		}
		<-tick.C
	}
}

// wantCompleted checks that every task completed with its own result,
// and returns how many did not.
func wantCompleted(t *testing.T, ids []string, seen map[string]taskObject) int {
	t.Helper()
	lost := 0
	for _, id := range ids {
		o := seen[id]
		switch {
		case !o.terminal():
			lost++
			t.Errorf("task %s still %q: lost", id, o.Status)
		case o.Status != "completed":
			t.Errorf("task %s: %s, want completed", id, o.raw)
		case !sameJSON(t, o.Result, echoResult(id)):
			t.Errorf("task %s: result %s, want %s", id, o.Result, echoResult(id))
		}
	}
	return lost
}

// TestRedis runs three taskgate nodes on one redis-server per subtest: what
// one node changes or accepts, the others see; a node killed with tasks in
// flight loses none; Redis killed and restarted stops nothing for good.
func TestRedis(t *testing.T) {
	t.Parallel()
	t.Run("shared state", func(t *testing.T) {
		t.Parallel()
		testRedisSharedState(t, startRedis(t).url(), 1)
	})
	t.Run("shared state on a cluster", func(t *testing.T) {
		t.Parallel()
		// Three shards: the accounts' data spread over the masters.
		testRedisSharedState(t, redistest.StartCluster(t, 3).URL(), 3)
	})
	t.Run("node killed", func(t *testing.T) {
		t.Parallel()
		testRedisNodeKilled(t)
	})
	t.Run("redis restarted", func(t *testing.T) {
		t.Parallel()
		testRedisRestarted(t)
	})
}

// testRedisSharedState: an account created on node 1 works on nodes 2 and
// 3 within a second, a key revoked on node 2 fails on nodes 1 and 3
// within a second, a task created on one node is read on another, and
// each webhook is delivered once whichever node's dispatcher takes it.
func testRedisSharedState(t *testing.T, url string, shards int) {
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if strings.HasSuffix(c.Path, "/held") && !f.hold(r) {
			return
		}
		answerJSON(w, http.StatusOK, echoResult(c.RequestID))
	})
	recv := newHookReceiver(t, always(http.StatusNoContent))
	nodes := startNodes(t, 3, redisGlobalShards(url, shards, fmt.Sprintf(`
# Polling until a change reaches the other nodes is refused many times.
auth_failures off
account fixed {
	key key-fixed
	rate_limit 100000/s
	webhook %[2]s/hooks
}
task_type share/echo {
	source %[1]s/echo
}
task_type share/held {
	source %[1]s/held
	timeout 30s
}
webhooks {
	allow_private 127.0.0.1/32
}`, src.url, recv.url)))
	fixed := func(n *redisNode) taskClient { return n.client("fixed", "key-fixed") }

	// A dynamic account created on node 1: in force there before the
	// answer, on the others within a second.
	acct := createAccount(t, nodes[0].server, `{"name":"Shared Ltd","rate_limit":"100000/s"}`)
	created := time.Now()
	if got := nodes[0].authStatus(t, acct.ID, acct.APIKey); got != http.StatusOK {
		t.Errorf("node 1 made the account but refuses its key: %d", got)
	}
	took := waitAuth(t, nodes[1:], created, acct.ID, acct.APIKey, http.StatusOK, propagation, "the key of an account created on node 1 works")
	t.Logf("account created on node 1: its key works on nodes 2, 3 after %s", durations(took))

	// A new key made on node 2, then the first key revoked on node 2.
	k2 := addKey(t, nodes[1].server, acct.ID, "")
	added := time.Now()
	others := []*redisNode{nodes[0], nodes[2]}
	took = waitAuth(t, others, added, acct.ID, k2.APIKey, http.StatusOK, propagation, "a key added on node 2 works")
	t.Logf("key added on node 2: works on nodes 1, 3 after %s", durations(took))
	var after adminAccount
	decodeAnswer(t, adminCall(t, nodes[1].server, http.MethodDelete, "/taskgate/accounts/"+acct.ID+"/keys/"+acct.Keys[0].ID, ""), http.StatusOK, &after)
	revoked := time.Now()
	if got := nodes[1].authStatus(t, acct.ID, acct.APIKey); got != http.StatusForbidden {
		t.Errorf("node 2 revoked the key but accepts it: %d", got)
	}
	took = waitAuth(t, others, revoked, acct.ID, acct.APIKey, http.StatusForbidden, propagation, "a key revoked on node 2 is refused")
	t.Logf("key revoked on node 2: refused on nodes 1, 3 after %s", durations(took))
	for _, n := range nodes {
		if got := n.authStatus(t, acct.ID, k2.APIKey); got != http.StatusOK {
			t.Errorf("%s: the account's other key is refused (%d) after one key was revoked", n.name, got)
		}
	}

	// Tasks created on every node, the first on node 1: read on node 3 at
	// once, ended by whichever node claims them, each webhook once.
	var ids []string
	for i := range 9 {
		ids = append(ids, fixed(nodes[i%3]).createAsync(t, "share/echo", fmt.Sprintf("t-%d", i), "g-share", fmt.Sprintf(`{"i":%d}`, i)))
	}
	if o := fixed(nodes[2]).task(t, ids[0], 0); o.Action != "share" || o.Type != "echo" || o.TaskID != "t-0" {
		t.Errorf("node 3 reads the task created on node 1 as %s", o.raw)
	}
	if wantCompleted(t, ids, waitEnded(t, fixed(nodes[2]), ids, time.Now().Add(taskWait))) != 0 {
		t.FailNow()
	}
	if listed := fixed(nodes[1]).list(t, "group_id", "g-share"); len(listed) != len(ids) {
		t.Errorf("node 2 lists %d tasks of the group, want the %d created on all nodes", len(listed), len(ids))
	}

	// A long poll answers the moment its task ends, on every node: the
	// README's promise, whichever node runs the task.
	t.Run("long poll on every node", func(t *testing.T) {
		ids = append(ids, testLongPollAcrossNodes(t, src, nodes, fixed))
	})

	// Every delivery is recorded delivered after one attempt, and the
	// receiver got it once: the dispatchers of three nodes do not share a
	// delivery. Checked last, so that the other dispatchers had the
	// time of the long poll test to send a duplicate.
	hooks := fixed(nodes[1])
	for _, id := range ids {
		d := hooks.waitDelivery(t, id, "", "delivered", hasStatus("delivered"))
		if len(d.Attempts) != 1 {
			t.Errorf("delivery of %s: %d attempts, want 1:\n%s", id, len(d.Attempts), d.raw)
		}
		if got := recv.withID(d.ID); len(got) != 1 {
			t.Errorf("delivery %s of %s: the receiver got it %d times, want once", d.ID, id, len(got))
		}
	}
	byID := map[string]int{}
	for _, r := range recv.requests() {
		byID[r.ID]++
	}
	if len(byID) != len(ids) || len(recv.requests()) != len(ids) {
		t.Errorf("receiver: %d requests with %d webhook-ids, want %d of each", len(recv.requests()), len(byID), len(ids))
	}
	t.Logf("%d tasks created over 3 nodes: every one read on another node, completed, and its webhook delivered once", len(ids))

	// Every node lists the three, up, each with its own rates.
	for _, n := range nodes {
		var list struct {
			Nodes []struct {
				ID   string `json:"id"`
				Up   bool   `json:"up"`
				Self bool   `json:"self"`
			} `json:"nodes"`
		}
		deadline := time.Now().Add(propagation + 5*time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			decodeAnswer(t, adminCall(t, n.server, http.MethodGet, "/taskgate/nodes", ""), http.StatusOK, &list)
			up := 0
			for _, x := range list.Nodes {
				if x.Up {
					up++
				}
			}
			if len(list.Nodes) == 3 && up == 3 && list.Nodes[0].Self {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lists the nodes %+v, want the three, up, itself first", n.name, list.Nodes)
			}
			<-tick.C
		}
	}
}

// testLongPollAcrossNodes long-polls a held task on every node at once,
// lets the source answer, and checks that every poll answers the moment
// the task ends, not when its wait runs out. It returns the task's
// request id.
func testLongPollAcrossNodes(t *testing.T, src *fakeSource, nodes []*redisNode, client func(*redisNode) taskClient) string {
	const wait = 5 // seconds
	id := client(nodes[0]).createAsync(t, "share/held", "t-held", "g-held", `{}`)
	src.waitFor(t, "the held call", func() bool {
		return slices.ContainsFunc(src.calls, func(c sourceCall) bool { return c.RequestID == id })
	})
	hc := &http.Client{Timeout: 2 * wait * time.Second}
	defer hc.CloseIdleConnections()
	// answer is a poll's answer and when it came.
	type answer struct {
		status int
		header http.Header
		body   []byte
		err    error
		at     time.Time
	}
	// wrote gets a signal once each poll is on the wire.
	wrote := make(chan struct{}, len(nodes))
	answers := make([]chan answer, len(nodes))
	for i, n := range nodes {
		answers[i] = make(chan answer, 1)
		c := client(n)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, c.url(fmt.Sprintf("/v3/tasks?wait=%d&request_id=%s", wait, url.QueryEscape(id))), nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { wrote <- struct{}{} },
			}))
			req.Header = c.auth.Clone()
			resp, err := hc.Do(req)
			if err != nil {
				answers[i] <- answer{err: err, at: time.Now()}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answers[i] <- answer{status: resp.StatusCode, header: resp.Header, body: b, err: err, at: time.Now()}
		}()
	}
	for range nodes {
		select {
		case <-wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("a long poll was not sent within 10s")
		}
	}
	for i, ch := range answers {
		select {
		case a := <-ch:
			t.Fatalf("%s: the long poll answered before the task ended: %d %s %v", nodes[i].name, a.status, a.body, a.err)
		default:
		}
	}
	released := time.Now()
	src.passOne(t)
	var took []time.Duration
	for i, ch := range answers {
		a := <-ch
		if a.err != nil || a.status != http.StatusOK {
			t.Errorf("%s: long poll: %d %s %v", nodes[i].name, a.status, a.body, a.err)
			continue
		}
		tasks := wantTasks(t, response{status: a.status, header: a.header, body: a.body})
		if len(tasks) != 1 || tasks[0].Status != "completed" {
			t.Errorf("%s: long poll answered %s, want the completed task", nodes[i].name, a.body)
		}
		d := a.at.Sub(released)
		took = append(took, d)
		if d > time.Second {
			t.Errorf("%s: the long poll answered %v after the source did, want at once (its wait was %ds): a task ended by another node does not wake the waits of this one",
				nodes[i].name, d.Round(time.Millisecond), wait)
		}
	}
	t.Logf("long polls (wait=%d) on nodes 1, 2, 3 answered %s after the source", wait, durations(took))
	return id
}

// TestRedisRateLimit sends requests round-robin to three nodes sharing a
// Redis for a bounded time and counts what passes the edge chain: GCRA on
// Redis admits burst + rate × elapsed, whatever node each request reaches,
// not that once per node. It runs alone (not parallel), on a Redis that
// writes no file. Should a Redis call still take longer than the
// fallback's 100 ms timeout (a stalled machine), the node would decide
// alone for a second, and the count would no longer be Redis's: such a
// measure is logged and taken again, once.
func TestRedisRateLimit(t *testing.T) {
	const rate, burst = 100.0, 100.0
	for attempt := 1; ; attempt++ {
		m := measureRedisRateLimit(t, rate, burst)
		if t.Failed() {
			return
		}
		if len(m.alone) > 0 && attempt < 2 {
			t.Logf("%s decided alone for a while (a Redis call over the fallback's timeout): measuring again", strings.Join(m.alone, ", "))
			continue
		}
		for _, name := range m.alone {
			t.Errorf("%s decided alone for a while, in two measures (Redis slower than the fallback's timeout): the count is not Redis's alone", name)
		}
		if m.limited == 0 {
			t.Fatal("no request was refused: the load did not reach the limit")
		}
		ratio := float64(m.admitted) / m.expected
		if m.admitted >= int(1.5*m.expected) {
			t.Errorf("admitted %d, %.2f× the limit: each node limits alone", m.admitted, ratio)
		} else if math.Abs(ratio-1) > 0.05 {
			t.Errorf("admitted %d, expected %.1f: ratio %.4f, want within ±5%%", m.admitted, m.expected, ratio)
		}
		for i, n := range m.perNode {
			if n == 0 {
				t.Errorf("node %d admitted nothing: the round robin did not reach it", i+1)
			}
		}
		return
	}
}

// rateLimitMeasure is what measureRedisRateLimit counted.
type rateLimitMeasure struct {
	admitted, limited int
	perNode           [3]int
	// expected is burst + rate × the measure's length.
	expected float64
	// alone names the nodes that decided without Redis for a while.
	alone []string
}

// measureRedisRateLimit starts a Redis and three nodes limiting one account
// to rate/s with burst, loads them round-robin for a bounded time and
// counts the answers.
func measureRedisRateLimit(t *testing.T, rate, burst float64) rateLimitMeasure {
	t.Helper()
	const (
		clients = 6
		loadFor = 3 * time.Second
		// perClient bounds each client's requests, should the machine
		// be much faster than this one (about 8,000 in loadFor).
		perClient = 50000
	)
	rs := startRedisInMemory(t)
	nodes := startNodes(t, 3, redisGlobal(rs, fmt.Sprintf(`
account metered {
	key key-metered
	rate_limit %d/s burst %d
}`, int(rate), int(burst))))
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true},
	}
	defer hc.CloseIdleConnections()
	auth := creds("metered", "key-metered")

	// tally is what one client saw.
	type tally struct {
		first, last time.Time // the first request sent, the last answer read
		requests    int
		admitted    [3]int // by node
		limited     int
		problems    []string
	}
	tallies := make([]tally, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			tl := &tallies[g]
			<-start
			end := time.Now().Add(loadFor)
			for k := 0; k < perClient && time.Now().Before(end); k++ {
				i := (g + k) % len(nodes)
				sent := time.Now()
				status, body, err := send(hc, http.MethodGet, siteURL(nodes[i].edge, "/"), auth, "")
				if tl.first.IsZero() {
					tl.first = sent
				}
				tl.last = time.Now()
				tl.requests++
				switch {
				case err != nil:
					tl.problems = append(tl.problems, fmt.Sprintf("%s: %v", nodes[i].name, err))
				case status == http.StatusOK:
					tl.admitted[i]++
				case status == http.StatusTooManyRequests:
					tl.limited++
				default:
					tl.problems = append(tl.problems, fmt.Sprintf("%s: %d %s", nodes[i].name, status, body))
				}
				if len(tl.problems) > 10 {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()

	var m rateLimitMeasure
	var first, last time.Time
	var requests int
	for _, tl := range tallies {
		for _, p := range tl.problems {
			t.Errorf("request: %s", p)
		}
		if first.IsZero() || tl.first.Before(first) {
			first = tl.first
		}
		if tl.last.After(last) {
			last = tl.last
		}
		requests += tl.requests
		m.limited += tl.limited
		for i, n := range tl.admitted {
			m.perNode[i] += n
			m.admitted += n
		}
	}
	elapsed := last.Sub(first)
	m.expected = burst + rate*elapsed.Seconds()
	t.Logf("rate limit %v/s burst %v over 3 nodes: %d requests by %d clients in %v; admitted %d (nodes 1, 2, 3: %d, %d, %d), refused %d; expected %.1f; admitted/expected = %.4f",
		rate, burst, requests, clients, elapsed.Round(time.Microsecond), m.admitted, m.perNode[0], m.perNode[1], m.perNode[2], m.limited, m.expected, float64(m.admitted)/m.expected)
	for _, n := range nodes {
		if strings.Contains(n.output(), "rate limit store unreachable") {
			m.alone = append(m.alone, n.name)
		}
		// Should the test measure again, these stay out of its way.
		n.stop(t, os.Kill)
	}
	rs.kill()
	return m
}

// testRedisNodeKilled: node 1 runs tasks alone, nodes 2 and 3 join, node 1
// is killed (SIGKILL) while its source calls are held; once its leases end
// the others run its tasks again, and every accepted task completes.
func testRedisNodeKilled(t *testing.T) {
	const (
		perNode = 4 // concurrency of the task type on each node
		queued  = 2 // tasks left in the queue when nodes 2 and 3 start
		// margin is how long after the end of the lease the tasks may
		// take: a node rescues expired leases every 5 s, then claims.
		margin = 7 * time.Second
	)
	src := holdingSource(t)
	rs := startRedis(t)
	global := redisGlobal(rs, fmt.Sprintf(`
account k {
	key key-k
	rate_limit 100000/s
}
task_type kill/held {
	source %s/held
	timeout 60s
	concurrency %d
}`, src.url, perNode))
	node1 := startNode(t, "node 1", global)
	var ids []string
	for i := range perNode + queued {
		ids = append(ids, node1.client("k", "key-k").createAsync(t, "kill/held", fmt.Sprintf("t-%d", i), "g-kill", fmt.Sprintf(`{"i":%d}`, i)))
	}
	// Node 1 holds as many as its concurrency allows; the rest wait.
	src.waitCalls(t, perNode)
	ofNode1 := map[string]bool{}
	for _, c := range src.received() {
		ofNode1[c.RequestID] = true
	}
	if len(ofNode1) != perNode {
		t.Fatalf("node 1 called the source for %d tasks, want %d (its concurrency)", len(ofNode1), perNode)
	}
	node2 := startNode(t, "node 2", global)
	startNode(t, "node 3", global)
	src.waitCalls(t, perNode+queued)

	node1.stop(t, os.Kill)
	killed := time.Now()
	src.open()

	c2 := node2.client("k", "key-k")
	seen := waitEnded(t, c2, ids, killed.Add(leaseLength+margin))
	if lost := wantCompleted(t, ids, seen); lost != 0 {
		t.Errorf("%d of %d accepted tasks lost: not ended %v after node 1 was killed", lost, len(ids), leaseLength+margin)
	}
	var takeover time.Duration
	for id := range ofNode1 {
		o := seen[id]
		if !o.terminal() {
			continue
		}
		d := mustTime(t, *o.CompletedAt).Sub(killed)
		takeover = max(takeover, d)
		if d < leaseLength-leaseRenewal-100*time.Millisecond {
			t.Errorf("task %s of node 1 ended %v after the kill, before its lease could have ended (%v at the earliest)", id, d, leaseLength-leaseRenewal)
		}
		if n := src.hits(id); n < 2 {
			t.Errorf("task %s of node 1: source called %d times, want again after the kill", id, n)
		}
	}
	calls := len(src.received())
	t.Logf("node 1 killed holding %d tasks: nodes 2 and 3 ended them all %v after the kill (lease %v, renewed every %v); %d tasks, %d source calls",
		perNode, takeover.Round(time.Millisecond), leaseLength, leaseRenewal, len(ids), calls)
}

// testRedisRestarted: Redis killed while three nodes run with tasks in
// flight: task creation answers 503 STORAGE_UNAVAILABLE at once on every
// node, the edge chain goes on limiting on each node alone; Redis
// restarted: every node creates tasks again without a restart, account
// changes reach the others again, and every task accepted before the kill
// is still there and completes.
func testRedisRestarted(t *testing.T) {
	src := holdingSource(t)
	rs := startRedis(t)
	nodes := startNodes(t, 3, redisGlobal(rs, fmt.Sprintf(`
# Polling until a change reaches the other nodes is refused many times.
auth_failures off
account out {
	key key-out
	rate_limit 100000/s
}
account edge {
	key key-edge
	rate_limit 5/s burst 5
}
task_type out/held {
	source %s/held
	timeout 60s
	concurrency 2
}`, src.url)))
	out := func(n *redisNode) taskClient { return n.client("out", "key-out") }
	edgeAuth := creds("edge", "key-edge")

	// Before: 9 tasks, 6 of them held by the source (2 per node), 3
	// queued.
	var before []string
	for i := range 9 {
		before = append(before, out(nodes[i%3]).createAsync(t, "out/held", fmt.Sprintf("before-%d", i), "g-out", `{}`))
	}
	src.waitCalls(t, 6)
	for _, n := range nodes {
		if r := n.get(t, siteURL(n.edge, "/"), edgeAuth); r.status != http.StatusOK {
			t.Fatalf("%s: edge chain before the kill: %d %s", n.name, r.status, r.body)
		}
	}

	rs.kill()
	killed := time.Now()

	// Creation: 503 STORAGE_UNAVAILABLE within storeDownAnswer, never a
	// 202, on every node.
	var slowest time.Duration
	var firsts []time.Duration
	for k := range 3 {
		for _, n := range nodes {
			sent := time.Now()
			r := out(n).post(t, "async", "out/held", createBody(fmt.Sprintf("during-%d", k), "g-out", `{}`), nil)
			took := time.Since(sent)
			if k == 0 {
				firsts = append(firsts, took)
			}
			slowest = max(slowest, took)
			if r.status == http.StatusAccepted {
				t.Fatalf("%s: a create was accepted (%s) while Redis was down", n.name, r.body)
			}
			wantError(t, r, http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE")
			if took > storeDownAnswer {
				t.Errorf("%s: create answered after %v while Redis was down, want within %v", n.name, took.Round(time.Millisecond), storeDownAnswer)
			}
		}
	}
	// Reads need the store too: 200 or 503 STORAGE_UNAVAILABLE, no other
	// 5xx.
	for _, n := range nodes {
		sent := time.Now()
		r := out(n).get(t, "request_id="+url.QueryEscape(before[0]))
		if took := time.Since(sent); took > storeDownAnswer {
			t.Errorf("%s: GET answered after %v while Redis was down", n.name, took.Round(time.Millisecond))
		}
		if r.status != http.StatusOK {
			wantError(t, r, http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE")
		}
	}
	// The admin API answers 503 STORAGE_UNAVAILABLE for a change.
	sent := time.Now()
	wantError(t, adminCall(t, nodes[0].server, http.MethodPost, "/taskgate/accounts", `{"name":"During"}`), http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE")
	if took := time.Since(sent); took > storeDownAnswer {
		t.Errorf("node 1: admin create answered after %v while Redis was down", took.Round(time.Millisecond))
	}
	// The edge chain limits on each node alone (on_store_error local): a
	// fresh burst of 5 per node, then 429, never an error.
	var edgeSlowest time.Duration
	for _, n := range nodes {
		var admitted, limited int
		for range 10 {
			sent := time.Now()
			r := n.get(t, siteURL(n.edge, "/"), edgeAuth)
			edgeSlowest = max(edgeSlowest, time.Since(sent))
			switch r.status {
			case http.StatusOK:
				admitted++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Errorf("%s: edge chain while Redis was down: %d %s, want 200 or 429", n.name, r.status, r.body)
			}
		}
		if admitted == 0 || limited == 0 || admitted > 7 {
			t.Errorf("%s: edge chain while Redis was down admitted %d of 10 and refused %d: want the local limit (burst 5)", n.name, admitted, limited)
		}
	}
	outage := time.Since(killed)
	t.Logf("Redis down: creates answered 503 STORAGE_UNAVAILABLE after %s on nodes 1, 2, 3 (first call), %v at most; edge chain answered within %v",
		durations(firsts), slowest.Round(time.Millisecond), edgeSlowest.Round(time.Microsecond))

	rs.restart()
	restarted := time.Now()

	// Every node creates again, without a restart.
	var after []string
	var recovery []time.Duration
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i, n := range nodes {
		for k := 0; ; k++ {
			r := out(n).post(t, "async", "out/held", createBody(fmt.Sprintf("after-%d-%d", i, k), "g-out", `{}`), nil)
			if r.status == http.StatusAccepted {
				after = append(after, wantAccepted(t, r))
				recovery = append(recovery, time.Since(restarted))
				break
			}
			wantError(t, r, http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE")
			if time.Since(restarted) > 2*storeRecovery {
				t.Fatalf("%s: creates still fail %v after Redis came back", n.name, 2*storeRecovery)
			}
			<-tick.C
		}
	}
	for i, d := range recovery {
		if d > storeRecovery {
			t.Errorf("%s: creates work again %v after Redis came back, want within %v", nodes[i].name, d.Round(time.Millisecond), storeRecovery)
		}
	}
	t.Logf("Redis down %v, then back: creates accepted again on nodes 1, 2, 3 after %s", outage.Round(time.Millisecond), durations(recovery))

	// Account changes reach the other nodes again (their subscriptions
	// came back, or they reloaded every account).
	acct := createAccount(t, nodes[0].server, `{"name":"After Ltd"}`)
	created := time.Now()
	took := waitAuth(t, nodes[1:], created, acct.ID, acct.APIKey, http.StatusOK, storeRecovery, "an account created after Redis came back works")
	t.Logf("account created on node 1 %v after Redis came back: works on nodes 2, 3 after %s", created.Sub(restarted).Round(time.Millisecond), durations(took))

	// Nothing accepted was lost: the tasks of before, held by the source
	// across the outage or queued, and those of after all complete.
	src.open()
	ids := append(slices.Clone(before), after...)
	if lost := wantCompleted(t, ids, waitEnded(t, out(nodes[1]), ids, time.Now().Add(taskWait))); lost != 0 {
		t.Errorf("%d of %d accepted tasks lost across the Redis restart", lost, len(ids))
	}
}

// TestRedisWebhookNodeKilled is the delivery twin of the "node killed"
// subtest: node 1 alone attempts the deliveries of its tasks against a
// receiver that holds each first attempt, nodes 2 and 3 join, node 1 is
// killed (SIGKILL) mid-attempt; once its leases end the others attempt
// them again under the same webhook-id, and every delivery arrives.
func TestRedisWebhookNodeKilled(t *testing.T) {
	t.Parallel()
	const (
		// tasks is webhook.DefaultPerURL: node 1 attempts every
		// delivery at once, and none is left for nodes 2 and 3 to take
		// before the kill.
		tasks = 4
		// rescueEvery is webhook.DefaultRescueEvery: how often each
		// node rescues deliveries whose lease ended.
		rescueEvery = 5 * time.Second
		// margin is how long the deliveries may take after the lease
		// ended and a rescue ran: a claim, an attempt, a loaded machine.
		margin = 5 * time.Second
	)
	// open ends the holds: from then on the receiver answers 204 to
	// every attempt, those it holds included.
	open := make(chan struct{})
	var openOnce sync.Once
	openReceiver := func() { openOnce.Do(func() { close(open) }) }
	recv := newHookReceiver(t, func(r *http.Request, n int) int {
		if n == 1 {
			select {
			case <-open:
			case <-r.Context().Done():
			}
			// The sender is gone (node 1 killed): nobody to answer.
			if r.Context().Err() != nil {
				return 0
			}
		}
		return http.StatusNoContent
	})
	// Runs before the receiver's own cleanup, should the test end early.
	t.Cleanup(openReceiver)
	src := okSource(t)
	rs := startRedis(t)
	// The attempt timeout is well past the test, so that node 1 waits on
	// its held attempts until it is killed.
	global := redisGlobal(rs, fmt.Sprintf(`
account k {
	key key-k
	rate_limit 100000/s
	webhook %s/hooks
}
task_type hook/fast {
	source %s/fast
}
webhooks {
	allow_private 127.0.0.1/32 ::1/128
	timeout 60s
}`, recv.url, src.url))
	node1 := startNode(t, "node 1", global)
	requestIDs := map[string]bool{}
	for i := range tasks {
		requestIDs[node1.client("k", "key-k").createAsync(t, "hook/fast", fmt.Sprintf("t-%d", i), "g-hook", `{}`)] = true
	}
	recv.waitFor(t, fmt.Sprintf("node 1 attempting %d deliveries", tasks), func() bool { return recv.inFlight >= tasks })

	// The held attempts: one per delivery, its webhook-id the delivery's.
	held := map[string]string{} // webhook-id → request id
	for _, r := range recv.requests() {
		var body struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || !requestIDs[body.RequestID] {
			t.Fatalf("held attempt %s carries %s, want a task of the test", r.ID, r.Body)
		}
		if _, dup := held[r.ID]; dup {
			t.Fatalf("node 1 attempted delivery %s twice before the kill", r.ID)
		}
		if r.Status != 0 {
			t.Fatalf("the receiver answered %d to %s before the kill, want it held", r.Status, r.ID)
		}
		held[r.ID] = body.RequestID
	}
	if len(held) != tasks {
		t.Fatalf("node 1 attempts %d deliveries, want %d", len(held), tasks)
	}

	node2 := startNode(t, "node 2", global)
	startNode(t, "node 3", global)
	node1.stop(t, os.Kill)
	killed := time.Now()
	openReceiver()

	// A delivery arrived once an attempt sent after the kill, by node 2
	// or 3, was answered 204.
	deadline := killed.Add(leaseLength + rescueEvery + margin)
	arrived := func(got []hookRequest) map[string]time.Time {
		first := map[string]time.Time{}
		for _, r := range got {
			if r.At.After(killed) && r.Status == http.StatusNoContent {
				if at, ok := first[r.ID]; !ok || r.At.Before(at) {
					first[r.ID] = r.At
				}
			}
		}
		return first
	}
	waitObserved(&recv.observed, deadline, func() bool { return len(arrived(recv.got)) >= len(held) })
	requests := recv.requests()
	first := arrived(requests)

	var earliest, takeover time.Duration
	lost := 0
	for id, requestID := range held {
		at, ok := first[id]
		if !ok {
			lost++
			t.Errorf("delivery %s of task %s: not delivered %v after node 1 was killed holding it: lost", id, requestID, deadline.Sub(killed))
			continue
		}
		d := at.Sub(killed)
		if earliest == 0 || d < earliest {
			earliest = d
		}
		takeover = max(takeover, d)
		if d < leaseLength-leaseRenewal-100*time.Millisecond {
			t.Errorf("delivery %s attempted again %v after the kill, before its lease could have ended (%v at the earliest)", id, d.Round(time.Millisecond), leaseLength-leaseRenewal)
		}
	}
	// Every attempt after the kill carries the webhook-id of a held
	// delivery: the re-attempt is the same delivery, not a new one.
	// Several 204s for one webhook-id are duplicates: allowed, counted.
	after, duplicates := 0, 0
	per := map[string]int{}
	for _, r := range requests {
		if !r.At.After(killed) {
			continue
		}
		after++
		if _, ok := held[r.ID]; !ok {
			t.Errorf("an attempt after the kill carries webhook-id %q, not one of the held deliveries (%s)", r.ID, r.Body)
		}
		if r.Status == http.StatusNoContent {
			if per[r.ID]++; per[r.ID] == 2 {
				duplicates++
			}
		}
	}
	// The store agrees: each task's one delivery is delivered, under the
	// webhook-id the receiver got, its last attempt answered 204.
	c2 := node2.client("k", "key-k")
	for id, requestID := range held {
		if _, ok := first[id]; !ok {
			continue
		}
		d := c2.waitDelivery(t, requestID, "", "delivered", hasStatus("delivered"))
		if d.ID != id {
			t.Errorf("task %s: delivery %s delivered, but node 1 attempted it as webhook-id %s", requestID, d.ID, id)
		}
		if c := d.last().code(); c != http.StatusNoContent {
			t.Errorf("delivery %s: last attempt %d, want 204: %s", id, c, d.raw)
		}
	}
	t.Logf("node 1 killed attempting %d deliveries: nodes 2 and 3 delivered them all, takeover %v to %v after the kill (lease %v, renewed every %v, rescue every %v); %d lost; %d attempts after the kill, %d deliveries taken more than once",
		len(held), earliest.Round(time.Millisecond), takeover.Round(time.Millisecond), leaseLength, leaseRenewal, rescueEvery, lost, after, duplicates)
	if duplicates > 0 {
		t.Logf("204s per webhook-id after the kill (at least once: duplicates allowed): %v", per)
	}
	if lost > 0 {
		t.Errorf("%d of %d deliveries lost", lost, len(held))
	}
}

// waitObserved waits until cond, called with o locked, holds or deadline
// passes, and tells which: unlike observed.waitFor, a late state is for
// the caller to report.
func waitObserved(o *observed, deadline time.Time, cond func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		o.mu.Lock()
		ok := cond()
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		changed := o.changed
		o.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}
