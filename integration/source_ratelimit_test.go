package integration

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestSourceRateLimitAcrossNodes checks `task_type … { rate_limit }` on two
// nodes sharing Redis: the source is called no faster than its rate, over
// both nodes together; the tasks over it wait for their turn and complete
// rather than fail; the waits show in the metric.
func TestSourceRateLimitAcrossNodes(t *testing.T) {
	t.Parallel()
	const (
		tasks    = 12
		interval = 50 * time.Millisecond // rate_limit 20/s, burst 1
	)
	var mu sync.Mutex
	var arrivals []time.Time
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		answerJSON(w, http.StatusOK, `{"status":"id_found"}`)
	})
	rs := startRedisInMemory(t)
	nodes := startNodes(t, 2, redisGlobal(rs, fmt.Sprintf(`
account acme {
	key key-acme
	rate_limit 100000/s
}
task_type limited/pan {
	source %s/pan
	rate_limit 20/s burst 1
}`, src.url)))
	var ids []string
	for i := range tasks {
		c := nodes[i%2].client("acme", "key-acme")
		ids = append(ids, c.createAsync(t, "limited/pan", fmt.Sprintf("t-%d", i), "g", `{}`))
	}
	c := nodes[0].client("acme", "key-acme")
	for _, id := range ids {
		if tk := c.waitTerminal(t, id); tk.Status != "completed" {
			t.Fatalf("task %s: %s, want completed after waiting for its turn", id, tk.Status)
		}
	}
	mu.Lock()
	span := arrivals[len(arrivals)-1].Sub(arrivals[0])
	calls := len(arrivals)
	mu.Unlock()
	t.Logf("%d calls over 2 nodes in %v at rate_limit 20/s burst 1", calls, span.Round(time.Millisecond))
	if want := time.Duration(calls-1) * interval; span < want-10*time.Millisecond {
		t.Errorf("%d calls in %v: faster than 20/s across the nodes (want at least %v)", calls, span, want)
	}
	waits := 0.0
	for _, n := range nodes {
		m, _ := n.metrics(t, "taskgate_sources_rate_limit_waits_total")
		waits += m[`taskgate_sources_rate_limit_waits_total{task_type="limited/pan"}`]
	}
	if waits == 0 {
		t.Error("taskgate_sources_rate_limit_waits_total stayed 0")
	}
}
