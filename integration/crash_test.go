package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTaskCrash is the promise of a 202: with bolt storage, clients of
// four accounts (whose tasks take turns in the queue) create tasks while a
// slow source works through them, the process is killed (SIGKILL) in the
// middle of the load, twice, and after the last restart every task that
// was answered 202 is found and reaches its end.
func TestTaskCrash(t *testing.T) {
	t.Parallel()
	const (
		cycles    = 2
		clients   = 32
		perClient = 5 // creates per client and cycle
		// loadFor is how long a cycle's load lasts; the process is killed
		// half way through.
		loadFor  = 2 * time.Second
		drainFor = 30 * time.Second
	)
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		// A slow-ish source: 50 to 150 ms per call.
		work := time.NewTimer(time.Duration(50+rand.IntN(101)) * time.Millisecond)
		defer work.Stop()
		select {
		case <-work.C:
		case <-r.Context().Done():
			return
		}
		answerJSON(w, http.StatusOK, fmt.Sprintf(`{"status":"id_found","echo":%q}`, c.RequestID))
	})
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage bolt %s
	account crash {
		key key-crash
		rate_limit 100000/s
	}
	account crash2 {
		key key-crash2
		rate_limit 100000/s
	}
	account crash3 {
		key key-crash3
		rate_limit 100000/s
	}
	account crash4 {
		key key-crash4
		rate_limit 100000/s
	}
	task_type crash/load {
		source %s/load
		timeout 10s
		concurrency 4
	}
}`, filepath.Join(s.dir, "tg.db"), src.url),
		Sites: taskSite(port),
	})
	var cs []taskClient
	for _, a := range []string{"crash", "crash2", "crash3", "crash4"} {
		cs = append(cs, taskClient{s: s, port: port, auth: creds(a, "key-"+a)})
	}
	owner := map[string]taskClient{}

	var accepted []string
	for cycle := 1; cycle <= cycles; cycle++ {
		got, failed := loadAndKill(t, s, cs, owner, cycle, clients, perClient, loadFor)
		t.Logf("cycle %d: %d creates accepted, %d cut off by the kill; source called %d times so far",
			cycle, len(got), failed, len(src.received()))
		if len(got) == 0 {
			t.Fatalf("cycle %d: no create was accepted", cycle)
		}
		accepted = append(accepted, got...)
		s = s.restart(t)
		// The creations acknowledged and not yet stored in bolt when the
		// kill came were stored from the creation log at the restart.
		for line := range strings.Lines(s.output()) {
			if strings.Contains(line, "creations its log held") {
				t.Logf("cycle %d: restarted: %s", cycle, strings.TrimSpace(line))
			}
		}
		for i := range cs {
			cs[i].s = s
		}
		for id, c := range owner {
			c.s = s
			owner[id] = c
		}
	}

	seen := map[string]bool{}
	for _, id := range accepted {
		if seen[id] {
			t.Fatalf("request id %s was answered twice", id)
		}
		seen[id] = true
	}
	ends := drain(func(id string) taskClient { return owner[id] }, accepted, time.Now().Add(drainFor))

	finished, lost := 0, 0
	for _, id := range accepted {
		e := ends[id]
		switch {
		case e.err != nil:
			lost++
			t.Errorf("task %s: %v", id, e.err)
		case e.task.Status != "completed":
			if e.task.terminal() {
				finished++
			} else {
				lost++
			}
			t.Errorf("task %s: %s, want completed", id, e.task.raw)
		case string(e.task.Result) != fmt.Sprintf(`{"status":"id_found","echo":%q}`, id):
			finished++
			t.Errorf("task %s: result %s, want its own", id, e.task.Result)
		default:
			finished++
		}
	}
	calls := src.received()
	hits := map[string]int{}
	for _, call := range calls {
		hits[call.RequestID]++
	}
	rerun, unacknowledged := 0, 0
	for id, n := range hits {
		if !seen[id] {
			unacknowledged++
		}
		if n > 1 {
			rerun++
		}
	}
	t.Logf("crash: %d kills; accepted %d, finished %d, lost %d; source calls %d for %d tasks, %d tasks run more than once; %d tasks run whose 202 never arrived",
		cycles, len(accepted), finished, lost, len(calls), len(hits), rerun, unacknowledged)
	if lost != 0 {
		t.Errorf("%d accepted tasks lost", lost)
	}
	if !s.alive() {
		t.Fatal("taskgate exited")
	}
}

// loadAndKill has clients create tasks, client g as the account of
// cs[g mod len(cs)] (noted in owner for each task), each up to perClient times within
// loadFor, and kills the server with SIGKILL half way through: then every
// client sends one more create at once, and the kill comes as soon as one
// of those is answered 202, so that the others are in flight, some stored
// in the same commit and some not. It returns the request ids answered
// 202 and the number of creates that got no answer.
func loadAndKill(t *testing.T, s *server, cs []taskClient, owner map[string]taskClient, cycle, clients, perClient int, loadFor time.Duration) ([]string, int) {
	t.Helper()
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true},
	}
	defer hc.CloseIdleConnections()
	var (
		mu       sync.Mutex
		ids      []string
		failed   int
		problems []string
	)
	burst := make(chan struct{})
	burstAccepted := make(chan struct{})
	var burstOnce sync.Once
	killed := make(chan struct{})
	end := time.Now().Add(loadFor)
	var wg sync.WaitGroup
	// Each client creates a task every interval from a random start: the
	// load lasts loadFor, at about twice the rate the source works at, so
	// the kill finds tasks at every stage.
	interval := loadFor / time.Duration(perClient)
	for g := range clients {
		c := cs[g%len(cs)]
		wg.Go(func() {
			pace := time.NewTimer(rand.N(interval))
			defer pace.Stop()
			fire := burst
			// perClient paced creates, and one of the burst.
			for i := 0; i <= perClient && time.Now().Before(end); i++ {
				inBurst := false
				select {
				case <-killed:
					return
				case <-pace.C:
					pace.Reset(interval)
				case <-fire:
					fire, inBurst = nil, true
				}
				body := createBody(fmt.Sprintf("crash-%d-%d-%d", cycle, g, i), fmt.Sprintf("crash-%d", cycle), fmt.Sprintf(`{"client":%d,"i":%d}`, g, i))
				status, answer, err := send(hc, http.MethodPost, c.url("/v3/tasks/async/crash/load"), c.header(nil), body)
				mu.Lock()
				switch {
				case err != nil:
					failed++
				case status != http.StatusAccepted:
					problems = append(problems, fmt.Sprintf("status %d: %s", status, answer))
				default:
					var out struct {
						RequestID string `json:"request_id"`
					}
					if err := json.Unmarshal(answer, &out); err != nil || !uuidPattern.MatchString(out.RequestID) {
						problems = append(problems, fmt.Sprintf("202 with body %s", answer))
						break
					}
					ids = append(ids, out.RequestID)
					owner[out.RequestID] = c
					if inBurst {
						burstOnce.Do(func() { close(burstAccepted) })
					}
				}
				mu.Unlock()
			}
		})
	}
	half := time.NewTimer(loadFor / 2)
	defer half.Stop()
	<-half.C
	close(burst)
	select {
	case <-burstAccepted:
	case <-time.After(taskWait):
		t.Fatalf("cycle %d: no create of the burst accepted after %v", cycle, taskWait)
	}
	s.stop(t, os.Kill)
	close(killed)
	wg.Wait()
	for _, p := range problems {
		t.Errorf("cycle %d: create: %s", cycle, p)
	}
	return ids, failed
}

// taskEnd is what drain found of a task.
type taskEnd struct {
	task taskObject
	err  error
}

// drain long-polls every task, as the account clientOf gives, until it has
// ended or the deadline passes, with a few pollers at once, and returns
// what it found of each.
func drain(clientOf func(id string) taskClient, ids []string, deadline time.Time) map[string]taskEnd {
	const pollers = 8
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
	for range pollers {
		wg.Go(func() {
			for id := range queue {
				e := pollEnd(hc, clientOf(id), id, deadline)
				mu.Lock()
				ends[id] = e
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ends
}

// pollEnd long-polls one task until it has ended or the deadline passes.
func pollEnd(hc *http.Client, c taskClient, id string, deadline time.Time) taskEnd {
	for {
		wait := min(5, max(1, int(time.Until(deadline).Seconds())))
		status, body, err := send(hc, http.MethodGet, c.url(fmt.Sprintf("/v3/tasks?request_id=%s&wait=%d", url.QueryEscape(id), wait)), c.auth, "")
		if err != nil {
			return taskEnd{err: err}
		}
		if status != http.StatusOK {
			return taskEnd{err: fmt.Errorf("GET: status %d: %s", status, body)}
		}
		var tasks []json.RawMessage
		if err := json.Unmarshal(body, &tasks); err != nil || len(tasks) != 1 {
			return taskEnd{err: fmt.Errorf("GET: body %s", body)}
		}
		var o taskObject
		if err := json.Unmarshal(tasks[0], &o); err != nil {
			return taskEnd{err: err}
		}
		o.raw = tasks[0]
		if o.terminal() || !time.Now().Before(deadline) {
			return taskEnd{task: o}
		}
	}
}

// send makes one request and reads the whole answer, without failing a
// test: the callers run in goroutines of their own.
func send(hc *http.Client, method, u string, header http.Header, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = header.Clone()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, errors.Join(errors.New("reading the answer"), err)
	}
	return resp.StatusCode, b, nil
}
