package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The modes of the crash test's receiver.
const (
	receiverFails int32 = iota // answers 503
	receiverHolds              // holds every request, answers nothing
	receiverTakes              // answers 200
)

// TestWebhookCrash is the promise of the outbox: with bolt storage, the
// deliveries of finished tasks are being retried against a receiver that
// fails, some attempts are in flight, and the process is killed (SIGKILL);
// after a restart on the same database every delivery is attempted again
// under its own webhook-id, with its earlier attempts kept, until it is
// delivered.
func TestWebhookCrash(t *testing.T) {
	t.Parallel()
	const tasks = 20
	var mode atomic.Int32
	recv := newHookReceiver(t, func(r *http.Request, _ int) int {
		switch mode.Load() {
		case receiverFails:
			return http.StatusServiceUnavailable
		case receiverHolds:
			return 0
		}
		return http.StatusOK
	})
	src := okSource(t)
	secret := newSecret(t, 32)
	port := freePort(t)
	s := newServer(t)
	s.start(config{
		Global: fmt.Sprintf(`
taskgate {
	storage bolt %s
	%s
	task_type crash/pan {
		source %s/pan
	}
	webhooks {
		allow_private 127.0.0.1/32 ::1/128
		timeout 10s
		retry 100ms 400ms 1m
	}
}`, filepath.Join(s.dir, "tg.db"),
			hookAccount("crash", fmt.Sprintf("webhook %s/hooks {\n\t\tsecret %s\n\t}", recv.url, secret)),
			src.url),
		Sites: taskSite(port),
	})
	c := hookClient(s, port, "crash")

	requestIDs := map[string]bool{}
	for i := range tasks {
		requestIDs[c.createAsync(t, "crash/pan", fmt.Sprintf("crash-%d", i), "crash", `{}`)] = true
	}
	// Every delivery has been tried and is waiting for its next attempt.
	before := c.waitDeliveries(t, "status=pending", fmt.Sprintf("%d deliveries pending with an attempt", tasks), func(ds []deliveryObject) bool {
		n := 0
		for _, d := range ds {
			if requestIDs[d.RequestID] && len(d.Attempts) >= 1 {
				n++
			}
		}
		return n == tasks
	})
	// The kill comes while the receiver holds attempts: as many as run at
	// once to one URL (4).
	mode.Store(receiverHolds)
	recv.waitFor(t, "4 attempts in flight", func() bool { return recv.inFlight >= 4 })
	recv.mu.Lock()
	inFlight := recv.inFlight
	recv.mu.Unlock()
	s.stop(t, os.Kill)
	attemptsBefore := map[string]int{}
	for _, d := range before {
		attemptsBefore[d.ID] = len(d.Attempts)
	}

	mode.Store(receiverTakes)
	restarted := time.Now()
	s = s.restart(t)
	c.s = s
	after := c.waitDeliveries(t, "status=delivered", fmt.Sprintf("%d deliveries delivered", tasks), func(ds []deliveryObject) bool {
		return len(ds) >= tasks
	})
	if ds := c.deliveries(t, "status=pending"); len(ds) != 0 {
		t.Errorf("%d deliveries still pending after all were delivered:\n%s", len(ds), describeDeliveries(ds))
	}

	// What the receiver took, deduplicated on webhook-id as receivers do.
	took := map[string]hookRequest{}
	requests := recv.requests()
	for _, r := range requests {
		if r.Status == http.StatusOK {
			if _, dup := took[r.ID]; !dup {
				took[r.ID] = r
			}
		}
	}
	delivered, lost, again := 0, 0, 0
	for _, d := range after {
		if !requestIDs[d.RequestID] {
			t.Errorf("delivery %s of an unknown task", d.raw)
			continue
		}
		delete(requestIDs, d.RequestID)
		n, ok := attemptsBefore[d.ID]
		if !ok {
			t.Errorf("delivery %s was not pending before the kill (webhook-id changed?)", d.ID)
		}
		if len(d.Attempts) <= n || d.Attempts[0].code() != http.StatusServiceUnavailable {
			t.Errorf("delivery %s: %d attempts, the first %d; want the %d from before the kill (503) kept, and more", d.ID, len(d.Attempts), d.Attempts[0].code(), n)
		}
		r, ok := took[d.ID]
		if !ok {
			lost++
			t.Errorf("delivery %s of %s is delivered but the receiver never took it", d.ID, d.RequestID)
			continue
		}
		delivered++
		checkHookHeaders(t, r, secret)
		var body struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.RequestID != d.RequestID {
			t.Errorf("webhook-id %s carried %s, want the task %s", d.ID, r.Body, d.RequestID)
		}
		sent := 0
		for _, r := range recv.withID(d.ID) {
			if r.At.After(restarted) {
				sent++
			}
		}
		if sent > 1 {
			again++
		}
	}
	lost += len(requestIDs)
	for id := range requestIDs {
		t.Errorf("task %s: no delivery delivered", id)
	}
	t.Logf("webhook crash: %d deliveries pending at the kill (%d attempts in flight), %d delivered after the restart, %d lost; receiver: %d requests, %d webhook-ids taken, %d deliveries sent more than once after the restart",
		len(before), inFlight, delivered, lost, len(requests), len(took), again)
	if lost != 0 {
		t.Errorf("%d deliveries lost", lost)
	}
	if len(took) != tasks {
		t.Errorf("receiver took %d distinct webhook-ids, want %d", len(took), tasks)
	}
}
