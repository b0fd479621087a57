package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFault is the fault suite: mixed load over many accounts, each with a
// webhook to one receiver that refuses every other attempt, while the node
// is killed with SIGKILL and restarted on its bolt file (subtest "bolt
// kill"), or while Redis is killed and restarted under two nodes (subtest
// "redis restart"). Whatever happens, every task answered 202 is found and
// ends, every ended task's webhook arrives at least once, clients see no
// 5xx but 503 STORAGE_UNAVAILABLE while Redis is down, and the node's
// memory stays bounded.
//
// The fast form (make test) runs 2 kill cycles and 1 Redis restart in a
// few seconds of load. With TASKGATE_SOAK set to a duration (make soak),
// the same scenario runs about that long: a kill cycle or a Redis restart
// every faultSoakCycle, and the node's memory is checked for growth across
// cycles.
func TestFault(t *testing.T) {
	t.Parallel()
	plan := faultPlanFromEnv(t)
	t.Run("bolt kill", func(t *testing.T) {
		t.Parallel()
		testFaultKill(t, plan)
	})
	t.Run("redis restart", func(t *testing.T) {
		t.Parallel()
		testFaultRedis(t, plan)
	})
}

// testFaultKill: one node on bolt, killed mid-load and restarted on the
// same file plan.cycles times, then loaded once more.
func testFaultKill(t *testing.T, plan faultPlan) {
	src := newFaultSource(t)
	recv := newFaultReceiver(t)
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: faultGlobal(fmt.Sprintf("bolt %s", filepath.Join(s.dir, "tg.db")), plan, src, recv),
		Sites:  taskSite(port),
	})
	l := newFaultLoad(t, plan, false, []faultTarget{{s: s, port: port}})
	defer l.hc.CloseIdleConnections()

	var rss []rssSample
	for cycle := 1; cycle <= plan.cycles; cycle++ {
		killAt := plan.killPoint()
		stop := make(chan struct{})
		base := l.snapshot()
		wait := l.start(cycle, stop)
		l.waitProgress(t, fmt.Sprintf("cycle %d: %d creates accepted before the kill", cycle, killAt), func() bool {
			return l.accepted-base.accepted >= killAt
		})
		r := readRSS(t, s)
		rss = append(rss, r)
		l.down.Store(true)
		s.stop(t, os.Kill)
		close(stop)
		wait()
		got := l.snapshot()
		s = s.restart(t)
		l.targets[0].s = s
		l.hc.CloseIdleConnections()
		l.down.Store(false)
		t.Logf("cycle %d: killed after %d creates accepted (%d in all this cycle, %d cut off by the kill); RSS before the kill %s",
			cycle, killAt, got.accepted-base.accepted, got.cutOff-base.cutOff, r)
	}
	// The node restarted last takes load too.
	stop := make(chan struct{})
	base := l.snapshot()
	wait := l.start(plan.cycles+1, stop)
	l.waitProgress(t, fmt.Sprintf("%d creates accepted after the last restart", plan.afterFault), func() bool {
		return l.accepted-base.accepted >= plan.afterFault
	})
	close(stop)
	wait()

	res := l.settle(t, recv, l.targets)
	final := readRSS(t, s)
	res.log(t, fmt.Sprintf("bolt: %d kill cycles (SIGKILL, restart on the same file)", plan.cycles), src)
	checkRSS(t, plan, "node", rss, final)
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
}

// testFaultRedis: two nodes on one redis-server (appendfsync always),
// Redis killed mid-load and restarted plan.redisRestarts times; the nodes
// keep running.
func testFaultRedis(t *testing.T, plan faultPlan) {
	src := newFaultSource(t)
	recv := newFaultReceiver(t)
	rs := startRedis(t)
	nodes := startNodes(t, 2, redisGlobal(rs, faultGlobal("", plan, src, recv)))
	targets := make([]faultTarget, len(nodes))
	for i, n := range nodes {
		targets[i] = faultTarget{s: n.server, port: n.api}
	}
	l := newFaultLoad(t, plan, true, targets)
	defer l.hc.CloseIdleConnections()

	rss := make([][]rssSample, len(nodes))
	for cycle := 1; cycle <= plan.redisRestarts; cycle++ {
		killAt := plan.killPoint()
		stop := make(chan struct{})
		base := l.snapshot()
		wait := l.start(cycle, stop)
		l.waitProgress(t, fmt.Sprintf("cycle %d: %d creates accepted before Redis is killed", cycle, killAt), func() bool {
			return l.accepted-base.accepted >= killAt
		})
		rs.kill()
		killed := time.Now()
		down := l.snapshot()
		// Redis comes back once the clients have seen it gone.
		l.waitProgress(t, fmt.Sprintf("cycle %d: %d creates refused 503 STORAGE_UNAVAILABLE", cycle, plan.outage503), func() bool {
			return l.unavailable-down.unavailable >= plan.outage503
		})
		rs.restart()
		restarted := time.Now()
		outage := restarted.Sub(killed)
		back := l.snapshot()
		l.waitProgress(t, fmt.Sprintf("cycle %d: a create accepted after Redis came back", cycle), func() bool {
			return l.accepted > back.accepted
		})
		recovered := time.Since(restarted)
		l.waitProgress(t, fmt.Sprintf("cycle %d: %d creates accepted after Redis came back", cycle, plan.afterFault), func() bool {
			return l.accepted-back.accepted >= plan.afterFault
		})
		close(stop)
		wait()
		got := l.snapshot()
		var sizes []string
		for i, n := range nodes {
			r := readRSS(t, n.server)
			rss[i] = append(rss[i], r)
			sizes = append(sizes, n.name+" "+r.String())
		}
		t.Logf("cycle %d: Redis killed after %d creates accepted, down %v (%d answers 503 STORAGE_UNAVAILABLE meanwhile), creates accepted again %v after it came back (%d answers 503 in all); %d creates accepted in the cycle; RSS %s",
			cycle, killAt, outage.Round(time.Millisecond), back.unavailable-down.unavailable, recovered.Round(time.Millisecond),
			got.unavailable-down.unavailable, got.accepted-base.accepted, strings.Join(sizes, ", "))
	}

	res := l.settle(t, recv, targets)
	res.log(t, fmt.Sprintf("redis: %d nodes, %d Redis restarts (SIGKILL, appendfsync always)", len(nodes), plan.redisRestarts), src)
	for i, n := range nodes {
		checkRSS(t, plan, n.name, rss[i], readRSS(t, n.server))
		if !n.alive() {
			t.Errorf("%s exited", n.name)
		}
	}
}

// faultSoakCycle is how long one kill cycle or Redis restart cycle of the
// long form lasts, about.
const faultSoakCycle = 30 * time.Second

// faultPlan is the shape of a fault run: its load, its faults, its bounds.
type faultPlan struct {
	// soak is the TASKGATE_SOAK duration, 0 in the fast form.
	soak time.Duration
	// accounts is how many accounts the load is spread over, each with a
	// webhook of its own to the receiver.
	accounts int
	// clients send requests at once, each one every interval; a client
	// sends at most perCycle requests per cycle and stops after cycleFor,
	// whatever happens.
	clients  int
	interval time.Duration
	perCycle int
	cycleFor time.Duration
	// killMin and killMax bound the creates accepted in a cycle before the
	// fault (kill -9 of the node, or of Redis): a random point in between.
	killMin, killMax int
	// afterFault is how many creates a cycle must have accepted after the
	// fault (the node or Redis back) before it ends.
	afterFault int
	// outage503 is how many 503 STORAGE_UNAVAILABLE answers the clients
	// must have seen before Redis comes back.
	outage503 int
	// cycles is the number of kill cycles; redisRestarts the number of
	// Redis restarts.
	cycles, redisRestarts int
	// settle bounds how long tasks may take to end, and then webhooks to
	// arrive, once the load is over.
	settle time.Duration
	// rssLimit bounds each node's VmRSS at the end; rssGrowth bounds the
	// growth of its anonymous memory from the first cycle to the last
	// (soak only), as a fraction of the first plus rssSlack.
	rssLimit  uint64
	rssGrowth float64
	rssSlack  uint64
}

// faultPlanFromEnv returns the fast plan, or the long one when
// TASKGATE_SOAK holds a duration.
func faultPlanFromEnv(t *testing.T) faultPlan {
	t.Helper()
	p := faultPlan{
		accounts:      20,
		clients:       12,
		interval:      20 * time.Millisecond,
		perCycle:      150,
		cycleFor:      20 * time.Second,
		killMin:       100,
		killMax:       200,
		afterFault:    100,
		outage503:     100,
		cycles:        2,
		redisRestarts: 1,
		// A task or delivery whose end Redis lost in an outage runs again
		// when its lease has ended (15 s, then a rescue pass every 5 s).
		settle:    leaseLength + 15*time.Second,
		rssLimit:  300 << 20,
		rssGrowth: 0.5,
		rssSlack:  32 << 20,
	}
	v := os.Getenv("TASKGATE_SOAK")
	if v == "" {
		return p
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("TASKGATE_SOAK=%q: want a positive duration such as 10m", v)
	}
	cycles := max(2, int(d/faultSoakCycle))
	p.soak = d
	p.interval = 100 * time.Millisecond
	// Three requests in four are creates: a cycle of faultSoakCycle
	// accepts about clients × ¾ × faultSoakCycle/interval creates; the
	// fault comes in its second half, and the clients may go on twice as
	// long before the cycle gives up.
	perCycle := int(faultSoakCycle / p.interval)
	creates := p.clients * perCycle * 3 / 4
	p.perCycle = 2 * perCycle
	p.cycleFor = 2*faultSoakCycle + 30*time.Second
	p.killMin, p.killMax = creates/2, creates
	p.afterFault = creates / 4
	p.cycles, p.redisRestarts = cycles, cycles
	t.Logf("soak: %v, %d kill cycles and %d Redis restarts of about %v, %d clients each sending every %v",
		d, p.cycles, p.redisRestarts, faultSoakCycle, p.clients, p.interval)
	return p
}

// killPoint draws how many creates a cycle accepts before its fault.
func (p faultPlan) killPoint() int {
	return p.killMin + rand.N(p.killMax-p.killMin+1)
}

// faultGlobal is the taskgate block of a fault run without its storage
// line when storage is empty (redisGlobal adds it): the accounts, each
// with a webhook to the receiver under a path of its own (so the attempts
// of one account do not queue behind the others'), the task type, and
// webhook retries short enough for a test.
func faultGlobal(storage string, plan faultPlan, src *faultSource, recv *faultReceiver) string {
	var b strings.Builder
	if storage != "" {
		b.WriteString("storage " + storage + "\n")
	}
	for _, a := range faultAccounts(plan) {
		b.WriteString(hookAccount(a, fmt.Sprintf("webhook %s/hooks/%s", recv.url, a)) + "\n")
	}
	fmt.Fprintf(&b, `task_type fault/pan {
	source %s/pan
	timeout 5s
	concurrency 16
}
webhooks {
	allow_private 127.0.0.1/32 ::1/128
	timeout 5s
	retry 100ms 500ms 5m
}
`, src.url)
	if storage != "" {
		return "taskgate {\n" + indent(b.String()) + "}"
	}
	return b.String()
}

// faultAccounts are the ids of the accounts of a run.
func faultAccounts(plan faultPlan) []string {
	ids := make([]string, plan.accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("fault-%02d", i)
	}
	return ids
}

// faultTarget is a node the load goes to: its process and task API port.
type faultTarget struct {
	s    *server
	port int
}

// faultLoad is the clients of a fault run and what they saw. Its counters
// are read and changed under observed's lock.
type faultLoad struct {
	plan     faultPlan
	accounts []string
	targets  []faultTarget
	hc       *http.Client
	// outage: the run stops Redis, so 503 STORAGE_UNAVAILABLE is an
	// expected answer.
	outage bool
	// down is set just before the node is killed: a request that fails
	// from then on was cut off by the kill.
	down atomic.Bool
	// turn spreads requests round robin over accounts and nodes.
	turn atomic.Uint64

	observed
	faultCounts
	// account and fails are per accepted request id: the account index
	// that created it, and whether its source is told to fail it.
	account map[string]int
	fails   map[string]bool
	ids     []string
	// statuses counts every answer by status code.
	statuses map[int]int
	problems []string
}

// faultCounts are the counters of a faultLoad.
type faultCounts struct {
	creates, polls, accepted int
	// unavailable counts answers 503 STORAGE_UNAVAILABLE; cutOff the
	// requests that got no answer because the node was being killed;
	// unexpected every other failure (a problem).
	unavailable, cutOff, unexpected int
}

func newFaultLoad(t *testing.T, plan faultPlan, outage bool, targets []faultTarget) *faultLoad {
	t.Helper()
	return &faultLoad{
		plan:     plan,
		accounts: faultAccounts(plan),
		targets:  targets,
		outage:   outage,
		hc: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: plan.clients, DisableCompression: true},
		},
		account:  map[string]int{},
		fails:    map[string]bool{},
		statuses: map[int]int{},
	}
}

// snapshot returns the counters so far.
func (l *faultLoad) snapshot() faultCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.faultCounts
}

// waitProgress waits, up to the plan's cycleFor, until cond (called with
// the load locked) holds.
func (l *faultLoad) waitProgress(t *testing.T, what string, cond func() bool) {
	t.Helper()
	l.waitFor(t, what, l.plan.cycleFor, cond)
}

// start runs the clients of a cycle until stop is closed, each for at most
// perCycle requests and cycleFor; the returned function waits for them.
// Each client sends, every interval, a create (with a task that its
// source fails, one in eight) or, one request in four, a poll of the last
// task it created.
func (l *faultLoad) start(cycle int, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	end := time.Now().Add(l.plan.cycleFor)
	for g := range l.plan.clients {
		wg.Go(func() {
			pace := time.NewTimer(rand.N(l.plan.interval))
			defer pace.Stop()
			lastID, lastAccount := "", 0
			for i := 0; i < l.plan.perCycle && time.Now().Before(end); i++ {
				select {
				case <-stop:
					return
				case <-pace.C:
					pace.Reset(l.plan.interval)
				}
				n := l.turn.Add(1)
				acct := int(n % uint64(len(l.accounts)))
				target := l.targets[int(n/uint64(len(l.accounts)))%len(l.targets)]
				if i%4 == 3 && lastID != "" {
					l.poll(target, lastAccount, lastID)
					continue
				}
				fail := n%8 == 0
				data := fmt.Sprintf(`{"n":%d}`, n)
				if fail {
					data = fmt.Sprintf(`{"n":%d,"fail":true}`, n)
				}
				body := createBody(fmt.Sprintf("fault-%d-%d-%d", cycle, g, i), fmt.Sprintf("fault-%d", cycle), data)
				if id := l.create(target, acct, body, fail); id != "" {
					lastID, lastAccount = id, acct
				}
			}
		})
	}
	return wg.Wait
}

// header is the headers of a request as the account.
func (l *faultLoad) header(acct int) http.Header {
	id := l.accounts[acct]
	return http.Header{"Content-Type": {"application/json"}, "Account-Id": {id}, "Api-Key": {"key-" + id}}
}

// create sends one create and records its answer; it returns the request
// id when it was accepted.
func (l *faultLoad) create(target faultTarget, acct int, body string, fail bool) string {
	status, answer, err := send(l.hc, http.MethodPost, siteURL(target.port, "/v3/tasks/async/fault/pan"), l.header(acct), body)
	var id string
	l.update(func() {
		l.creates++
		if l.answered("create", status, answer, err) || status != http.StatusAccepted {
			return
		}
		var out struct {
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(answer, &out) != nil || !uuidPattern.MatchString(out.RequestID) {
			l.problem("create: 202 with body %s", answer)
			return
		}
		if _, dup := l.account[out.RequestID]; dup {
			l.problem("create: request id %s answered twice", out.RequestID)
			return
		}
		id = out.RequestID
		l.accepted++
		l.account[id] = acct
		l.fails[id] = fail
		l.ids = append(l.ids, id)
	})
	return id
}

// poll reads a task the account created, which must be there.
func (l *faultLoad) poll(target faultTarget, acct int, id string) {
	status, answer, err := send(l.hc, http.MethodGet, siteURL(target.port, "/v3/tasks?request_id="+url.QueryEscape(id)), l.header(acct), "")
	l.update(func() {
		l.polls++
		if l.answered("poll", status, answer, err) || status != http.StatusOK {
			return
		}
		var tasks []struct {
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(answer, &tasks) != nil || len(tasks) != 1 || tasks[0].RequestID != id {
			l.problem("poll %s: body %s", id, answer)
		}
	})
}

// answered counts an answer, with the load locked, and tells whether it
// was a failure: a request cut off by a kill, a 503 STORAGE_UNAVAILABLE
// while Redis may be down, or anything but the 2xx the call expects (a
// problem).
func (l *faultLoad) answered(call string, status int, body []byte, err error) bool {
	if err != nil {
		if l.down.Load() {
			l.cutOff++
		} else {
			l.problem("%s: %v while the node was up", call, err)
		}
		return true
	}
	l.statuses[status]++
	if status == http.StatusServiceUnavailable && l.outage {
		var e apiError
		if json.Unmarshal(body, &e) == nil && e.Error == "STORAGE_UNAVAILABLE" {
			l.unavailable++
			return true
		}
	}
	if status != http.StatusAccepted && status != http.StatusOK {
		l.problem("%s: status %d: %s", call, status, body)
		return true
	}
	return false
}

// problem records an unexpected answer, with the load locked; the first
// few are kept in full.
func (l *faultLoad) problem(format string, args ...any) {
	l.unexpected++
	if len(l.problems) < 20 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// faultResult is what a fault run counted, for its log line.
type faultResult struct {
	counts                              faultCounts
	statuses                            map[int]int
	lost, completed, failed             int
	expected, delivered, hooksLost, dup int
	unacknowledged                      int
	pending, failedHooks                int
	receiver                            faultReceiverCounts
}

// settle waits for every accepted task to end, then for its webhook to
// arrive, and checks both: the task ended as its source answered, the
// receiver took one webhook-id for it (at least once), on its account's
// URL, carrying its end.
func (l *faultLoad) settle(t *testing.T, recv *faultReceiver, targets []faultTarget) faultResult {
	t.Helper()
	l.mu.Lock()
	ids := slices.Clone(l.ids)
	res := faultResult{counts: l.faultCounts, statuses: maps.Clone(l.statuses)}
	problems := slices.Clone(l.problems)
	l.mu.Unlock()
	for _, p := range problems {
		t.Errorf("load: %s", p)
	}
	if res.counts.unexpected > len(problems) {
		t.Errorf("load: %d more unexpected answers", res.counts.unexpected-len(problems))
	}

	deadline := time.Now().Add(l.plan.settle)
	ends := l.drain(ids, targets, deadline)
	var ended []string
	for _, id := range ids {
		e := ends[id]
		switch {
		case e.err != nil:
			res.lost++
			t.Errorf("task %s: %v", id, e.err)
			continue
		case !e.task.terminal():
			res.lost++
			t.Errorf("task %s still %s %v after the load: lost", id, e.task.Status, l.plan.settle)
			continue
		}
		ended = append(ended, id)
		switch o := e.task; {
		case l.fails[id]:
			res.failed++
			if o.Status != "failed" || o.Error == nil || *o.Error != "SOURCE_DOWN" {
				t.Errorf("task %s, which its source fails with a 503: %s, want failed SOURCE_DOWN", id, o.raw)
			}
		case o.Status == "completed":
			res.completed++
			if !sameJSON(t, o.Result, echoResult(id)) {
				t.Errorf("task %s: result %s, want %s", id, o.Result, echoResult(id))
			}
		default:
			// The circuit breaker may fail a task of a working source
			// fast after a run of failures; SOURCE_DOWN is its end.
			res.failed++
			if o.Error == nil || *o.Error != "SOURCE_DOWN" {
				t.Errorf("task %s: %s, want completed", id, o.raw)
			}
		}
	}

	missing := recv.waitDelivered(ended, time.Now().Add(l.plan.settle))
	// Then the outbox comes to rest: an attempt taken by the receiver but
	// not recorded (the node killed, Redis down) is sent again.
	res.pending, res.failedHooks = l.waitOutboxEmpty(t, targets[0], time.Now().Add(l.plan.settle))
	if res.pending != 0 || res.failedHooks != 0 {
		t.Errorf("deliveries at the end: %d pending %v after the load, %d failed; want all delivered", res.pending, l.plan.settle, res.failedHooks)
	}
	hooks, rc := recv.snapshot()
	res.receiver = rc
	for _, p := range rc.problems {
		t.Errorf("receiver: %s", p)
	}
	res.expected = len(ended)
	res.hooksLost = len(missing)
	for i, id := range missing {
		if i < 10 {
			t.Errorf("task %s (%s, account %s): no webhook arrived %v after the load", id, ends[id].task.Status, l.accounts[l.account[id]], l.plan.settle)
		}
	}
	byRequest := map[string][]*faultHook{}
	for _, h := range hooks {
		byRequest[h.requestID] = append(byRequest[h.requestID], h)
	}
	for _, id := range ended {
		var taken []*faultHook
		for _, h := range byRequest[id] {
			if h.taken > 0 {
				taken = append(taken, h)
			}
		}
		if len(taken) == 0 {
			continue
		}
		res.delivered++
		if len(taken) > 1 {
			t.Errorf("task %s: %d webhook-ids delivered for one end, want one", id, len(taken))
		}
		h := taken[0]
		res.dup += h.taken - 1
		if want := l.accounts[l.account[id]]; h.account != want {
			t.Errorf("task %s of account %s: webhook on the URL of %s", id, want, h.account)
		}
		if h.status != ends[id].task.Status {
			t.Errorf("task %s: webhook says %q, the task %q", id, h.status, ends[id].task.Status)
		}
	}
	for id := range byRequest {
		if _, ok := l.account[id]; !ok {
			res.unacknowledged++
		}
	}
	return res
}

// drain long-polls every task until it has ended or the deadline passes,
// each as its own account, spread over the targets.
func (l *faultLoad) drain(ids []string, targets []faultTarget, deadline time.Time) map[string]taskEnd {
	const pollers = 16
	hc := &http.Client{Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	queue := make(chan string, len(ids))
	for _, id := range ids {
		queue <- id
	}
	close(queue)
	var mu sync.Mutex
	ends := make(map[string]taskEnd, len(ids))
	var wg sync.WaitGroup
	for p := range pollers {
		target := targets[p%len(targets)]
		wg.Go(func() {
			for id := range queue {
				acct := l.accounts[l.account[id]]
				c := taskClient{s: target.s, port: target.port, auth: creds(acct, "key-"+acct)}
				e := pollEnd(hc, c, id, deadline)
				mu.Lock()
				ends[id] = e
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ends
}

// waitOutboxEmpty lists every account's pending deliveries every 100 ms
// until none is left or the deadline passes, and returns how many were
// pending last, and how many deliveries ended failed.
func (l *faultLoad) waitOutboxEmpty(t *testing.T, target faultTarget, deadline time.Time) (pending, failed int) {
	t.Helper()
	count := func(acct int, status string) int {
		code, body, err := send(l.hc, http.MethodGet, siteURL(target.port, "/v3/webhooks/deliveries?status="+status), l.header(acct), "")
		var ds []json.RawMessage
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &ds) != nil {
			t.Fatalf("GET deliveries?status=%s as %s: %d %s %v", status, l.accounts[acct], code, body, err)
		}
		return len(ds)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pending = 0
		for acct := range l.accounts {
			pending += count(acct, "pending")
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	for acct := range l.accounts {
		failed += count(acct, "failed")
	}
	return pending, failed
}

// log writes the counts of the run.
func (r faultResult) log(t *testing.T, what string, src *faultSource) {
	t.Helper()
	var fivexx, other []string
	for _, code := range slices.Sorted(maps.Keys(r.statuses)) {
		s := fmt.Sprintf("%d×%d", r.statuses[code], code)
		if code >= 500 {
			fivexx = append(fivexx, s)
		} else {
			other = append(other, s)
		}
	}
	t.Logf("fault %s", what)
	t.Logf("  requests: %d creates, %d polls; answers %s; 5xx: [%s] (%d of them 503 STORAGE_UNAVAILABLE while Redis was down); %d cut off by a kill; %d unexpected",
		r.counts.creates, r.counts.polls, strings.Join(other, " "), strings.Join(fivexx, " "), r.counts.unavailable, r.counts.cutOff, r.counts.unexpected)
	t.Logf("  tasks: %d accepted, %d lost; %d completed, %d failed SOURCE_DOWN; source called %d times (%d answered 503); %d tasks stored whose 202 never arrived",
		r.counts.accepted, r.lost, r.completed, r.failed, src.calls.Load(), src.failed.Load(), r.unacknowledged)
	t.Logf("  webhooks: %d expected, %d delivered, %d lost, %d duplicates (taken again under the same webhook-id); %d pending and %d failed at the end; receiver got %d requests, refused %d (503)",
		r.expected, r.delivered, r.hooksLost, r.dup, r.pending, r.failedHooks, r.receiver.requests, r.receiver.refused)
	if r.lost != 0 {
		t.Errorf("%d of %d accepted tasks lost", r.lost, r.counts.accepted)
	}
	if r.hooksLost != 0 {
		t.Errorf("%d of %d webhooks lost", r.hooksLost, r.expected)
	}
	if r.counts.accepted == 0 {
		t.Error("no create was accepted")
	}
}

// faultSource is a source that answers at once: 503 to a task whose data
// has "fail": true (the task fails SOURCE_DOWN), its request id to any
// other. It keeps counts only, so that a long run does not grow it.
type faultSource struct {
	url           string
	calls, failed atomic.Int64
}

func newFaultSource(t *testing.T) *faultSource {
	t.Helper()
	f := &faultSource{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var call struct {
			RequestID string `json:"request_id"`
			Data      struct {
				Fail bool `json:"fail"`
			} `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
			answerJSON(w, http.StatusBadRequest, `{"error":"BAD_BODY","message":"not JSON"}`)
			return
		}
		f.calls.Add(1)
		if call.Data.Fail {
			f.failed.Add(1)
			answerJSON(w, http.StatusServiceUnavailable, `{"error":"busy"}`)
			return
		}
		answerJSON(w, http.StatusOK, echoResult(call.RequestID))
	}))
	f.url = srv.URL
	t.Cleanup(srv.Close)
	return f
}

// faultReceiver is a webhook receiver that refuses every other attempt of
// each delivery with 503 (the first, the third, …) and takes the others,
// deduplicating on webhook-id as receivers do. It keeps one record per
// webhook-id, so that a long run grows it only by the deliveries.
type faultReceiver struct {
	url string

	observed
	hooks map[string]*faultHook
	// delivered holds the request ids of which a webhook was taken.
	delivered map[string]bool
	faultReceiverCounts
}

// faultReceiverCounts are the counters of a faultReceiver.
type faultReceiverCounts struct {
	requests, refused int
	problems          []string
}

// faultHook is what the receiver got of one webhook-id.
type faultHook struct {
	// requestID and status are the task's, from the body; account is the
	// last part of the URL's path.
	requestID, status, account string
	// attempts counts the requests, taken those answered 200.
	attempts, taken int
}

func newFaultReceiver(t *testing.T) *faultReceiver {
	t.Helper()
	h := &faultReceiver{hooks: map[string]*faultHook{}, delivered: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	h.url = srv.URL
	t.Cleanup(srv.Close)
	return h
}

func (h *faultReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var task struct {
		RequestID string `json:"request_id"`
		Status    string `json:"status"`
	}
	decodeErr := json.Unmarshal(body, &task)
	id := r.Header.Get("webhook-id")
	account, _ := strings.CutPrefix(r.URL.Path, "/hooks/")
	status := http.StatusOK
	h.update(func() {
		h.requests++
		if decodeErr != nil || id == "" {
			h.problem("request %s without webhook-id or task body: %s", r.URL.Path, body)
			status = http.StatusBadRequest
			return
		}
		d := h.hooks[id]
		if d == nil {
			d = &faultHook{requestID: task.RequestID, status: task.Status, account: account}
			h.hooks[id] = d
		} else if d.requestID != task.RequestID || d.status != task.Status || d.account != account {
			h.problem("webhook-id %s carried task %s %s to %s, earlier %s %s to %s",
				id, task.RequestID, task.Status, account, d.requestID, d.status, d.account)
		}
		d.attempts++
		if d.attempts%2 == 1 {
			h.refused++
			status = http.StatusServiceUnavailable
			return
		}
		d.taken++
		h.delivered[d.requestID] = true
	})
	w.WriteHeader(status)
}

// problem records a request the receiver did not expect, with it locked.
func (h *faultReceiver) problem(format string, args ...any) {
	if len(h.problems) < 20 {
		h.problems = append(h.problems, fmt.Sprintf(format, args...))
	}
}

// waitDelivered waits until a webhook of every request id was taken, or
// the deadline; it returns the request ids still without one.
func (h *faultReceiver) waitDelivered(ids []string, deadline time.Time) []string {
	limit := time.NewTimer(time.Until(deadline))
	defer limit.Stop()
	missing := slices.Clone(ids)
	for {
		h.mu.Lock()
		missing = slices.DeleteFunc(missing, func(id string) bool { return h.delivered[id] })
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		changed := h.changed
		h.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-limit.C:
			return missing
		}
	}
}

// snapshot returns copies of the receiver's records and counters.
func (h *faultReceiver) snapshot() ([]*faultHook, faultReceiverCounts) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hooks := make([]*faultHook, 0, len(h.hooks))
	for _, d := range h.hooks {
		c := *d
		hooks = append(hooks, &c)
	}
	c := h.faultReceiverCounts
	c.problems = slices.Clone(c.problems)
	return hooks, c
}

// rssSample is a process's resident memory, in bytes, from
// /proc/<pid>/status: VmRSS, and its anonymous part (the heap and stacks;
// the rest is files mapped in, such as the bolt database).
type rssSample struct {
	vm, anon uint64
}

func (r rssSample) String() string {
	return fmt.Sprintf("%.1f MiB (anonymous %.1f MiB)", float64(r.vm)/(1<<20), float64(r.anon)/(1<<20))
}

// readRSS reads the resident memory of the server's process.
func readRSS(t *testing.T, s *server) rssSample {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the node's memory: %v", err)
	}
	defer f.Close()
	var r rssSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var field *uint64
		switch name {
		case "VmRSS":
			field = &r.vm
		case "RssAnon":
			field = &r.anon
		default:
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status: %s: %q", s.cmd.Process.Pid, name, value)
		}
		*field = kb << 10
	}
	if err := sc.Err(); err != nil || r.vm == 0 {
		t.Fatalf("/proc/%d/status: no VmRSS (%v)", s.cmd.Process.Pid, err)
	}
	return r
}

// checkRSS logs a node's memory over the cycles and at the end, and checks
// it: VmRSS at the end below the plan's limit and, in the long form, the
// anonymous memory of the last cycle within the plan's growth over the
// first.
func checkRSS(t *testing.T, plan faultPlan, name string, cycles []rssSample, final rssSample) {
	t.Helper()
	var each []string
	for _, r := range cycles {
		each = append(each, fmt.Sprintf("%.1f/%.1f", float64(r.vm)/(1<<20), float64(r.anon)/(1<<20)))
	}
	t.Logf("  memory of %s: RSS/anonymous MiB per cycle [%s]; at the end %s (limit %d MiB)",
		name, strings.Join(each, " "), final, plan.rssLimit>>20)
	if final.vm > plan.rssLimit {
		t.Errorf("%s: VmRSS %s at the end, want below %d MiB", name, final, plan.rssLimit>>20)
	}
	if plan.soak == 0 || len(cycles) < 2 {
		return
	}
	first, last := cycles[0], cycles[len(cycles)-1]
	if bound := first.anon + uint64(float64(first.anon)*plan.rssGrowth) + plan.rssSlack; last.anon > bound {
		t.Errorf("%s: anonymous memory grew from %s in the first cycle to %s in the last, want at most %.1f MiB",
			name, first, last, float64(bound)/(1<<20))
	}
}
