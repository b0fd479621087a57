package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPausedNodeLosesItsClaim pauses a node (SIGSTOP) while its source
// call runs, past its lease: the other node takes the task over. The
// paused node, resumed with its source's answer, may no longer record the
// task's end, although the other node has not ended it yet; the task ends
// with the answer of the node that holds it, once.
func TestPausedNodeLosesItsClaim(t *testing.T) {
	t.Parallel()
	held := func(answer string) *fakeSource {
		return newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
			if f.hold(r) {
				answerJSON(w, http.StatusOK, answer)
			}
		})
	}
	first, second := held(`{"status":"id_found","node":"paused"}`), held(`{"status":"id_found","node":"holder"}`)
	rs := startRedis(t)
	global := func(src *fakeSource) string {
		return redisGlobal(rs, fmt.Sprintf(`
account acme {
	key key-acme
}
task_type fence/pan {
	source %s/pan
	timeout 2m
}`, src.url))
	}
	paused := startNode(t, "node 1", global(first))
	c := paused.client("acme", "key-acme")
	// Only node 1 runs until it has the task.
	id := c.createAsync(t, "fence/pan", "t", "g", `{}`)
	first.waitCalls(t, 1)
	holder := startNode(t, "node 2", global(second))

	// Node 1 stops with the call in flight; node 2 takes the task over
	// once the lease (15 s) has run out.
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = paused.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	second.observed.waitFor(t, "node 2 to take the task over", 40*time.Second, func() bool { return len(second.calls) >= 1 })

	// Node 1 comes back with its answer: its end is refused.
	resume()
	first.passOne(t)
	waitUntil(t, "node 1 to drop its outcome", 20*time.Second, func() bool {
		return strings.Contains(paused.output(), "this outcome is dropped")
	})
	if o := c.task(t, id, 0); o.Status != "in_progress" {
		t.Fatalf("after node 1's late answer the task is %s: %s, want in_progress (held by node 2)", o.Status, o.raw)
	}

	// Node 2 ends it.
	second.passOne(t)
	o := holder.client("acme", "key-acme").waitTerminal(t, id)
	var result struct {
		Node string `json:"node"`
	}
	if err := json.Unmarshal(o.Result, &result); err != nil || o.Status != "completed" || result.Node != "holder" {
		t.Fatalf("task %s: %s %s, want completed with node 2's answer", id, o.Status, o.Result)
	}
}
