package integration

import (
	"fmt"
	"slices"
	"testing"
)

// heavyBacklog is how many tasks the heavy account queues in the fair
// queue tests: with one queue for all accounts, the light account's task
// would be called after all of them.
const heavyBacklog = 40

// TestFairQueues checks, on the embedded stores, that one account's
// backlog does not hold up another account's task: with one worker held
// on a heavy account's task, a light account's task created behind 40
// more of them is the second call after the held one, not the 41st.
func TestFairQueues(t *testing.T) {
	t.Parallel()
	forEachStorage(t, func(t *testing.T, storage string) {
		src := holdingSource(t)
		port := freePort(t)
		s := newServer(t)
		s.start(config{
			Global: fmt.Sprintf(`
taskgate {
	storage %s
	account heavy {
		key key-heavy
		rate_limit 100000/s
	}
	account light {
		key key-light
	}
	task_type verify_with_source/ind_pan {
		source %s/pan
		concurrency 1
	}
}`, s.storageOption(storage), src.url),
			Sites: taskSite(port),
		})
		heavy := taskClient{s: s, port: port, auth: creds("heavy", "key-heavy")}
		light := taskClient{s: s, port: port, auth: creds("light", "key-light")}
		checkLightAhead(t, src, []taskClient{heavy}, light, 1)
	})
}

// TestFairQueuesAcrossNodes checks the same on two nodes sharing Redis,
// one worker each: the light account's task is called within the two
// held calls and one turn of the heavy account after them.
func TestFairQueuesAcrossNodes(t *testing.T) {
	t.Parallel()
	src := holdingSource(t)
	rs := startRedis(t)
	nodes := startNodes(t, 2, redisGlobal(rs, fmt.Sprintf(`
account heavy {
	key key-heavy
	rate_limit 100000/s
}
account light {
	key key-light
}
task_type verify_with_source/ind_pan {
	source %s/pan
	concurrency 1
}`, src.url)))
	heavy := []taskClient{nodes[0].client("heavy", "key-heavy"), nodes[1].client("heavy", "key-heavy")}
	checkLightAhead(t, src, heavy, nodes[1].client("light", "key-light"), 2)
}

// checkLightAhead queues the heavy backlog through the heavy clients in
// turn, waits for the workers (held, one call each) to take the first
// tasks, creates the light task, then lets the calls through one at a
// time and checks that the light task is among the first held+1 calls
// after the held ones, and that every task completes.
func checkLightAhead(t *testing.T, src *fakeSource, heavy []taskClient, light taskClient, held int) {
	t.Helper()
	const typ = "verify_with_source/ind_pan"
	var ids []string
	for i := range heavyBacklog + held {
		ids = append(ids, heavy[i%len(heavy)].createAsync(t, typ, fmt.Sprintf("heavy-%d", i), "g", `{}`))
	}
	src.waitCalls(t, held)
	lightID := light.createAsync(t, typ, "light", "g", `{}`)

	// Each call let through frees its worker for the next turn.
	for range held + 1 {
		src.passOne(t)
	}
	src.waitCalls(t, 2*held+1)
	var order []string
	for _, c := range src.received() {
		order = append(order, c.RequestID)
	}
	at := slices.Index(order, lightID)
	t.Logf("the light task was call %d of %d with %d heavy tasks queued before it", at+1, len(order), heavyBacklog)
	if at < 0 || at > 2*held {
		t.Fatalf("the light task was not among the first %d calls after the %d held ones: %d calls so far, light at %d", held+1, held, len(order), at)
	}
	src.open()
	for _, id := range append(ids, lightID) {
		c := light
		if id != lightID {
			c = heavy[0]
		}
		if o := c.waitTerminal(t, id); o.Status != "completed" {
			t.Errorf("task %s: %s, want completed", id, o.Status)
		}
	}
	for _, id := range append(ids, lightID) {
		if n := src.hits(id); n != 1 {
			t.Errorf("task %s was called %d times, want once", id, n)
		}
	}
}
