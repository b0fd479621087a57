package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/internal/redistest"
)

// noticeWait bounds every wait of the notice tests.
const noticeWait = 15 * time.Second

// subscriber is a node in SubscribeAccountChanges, run by a test.
type subscriber struct {
	changes    chan string
	reconnects chan struct{}
	cancel     context.CancelFunc
	done       chan error
	// returned is set once SubscribeAccountChanges returned, to what it
	// returned.
	returned *error
}

// subscribe runs s.SubscribeAccountChanges until the test ends or stop.
func subscribe(t *testing.T, s *redis.Store) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sub := &subscriber{
		changes:    make(chan string, 100),
		reconnects: make(chan struct{}, 100),
		cancel:     cancel,
		done:       make(chan error, 1),
	}
	go func() {
		sub.done <- s.SubscribeAccountChanges(ctx,
			func(id string) { sub.changes <- id },
			func() { sub.reconnects <- struct{}{} })
	}()
	t.Cleanup(func() { sub.stop(t) })
	return sub
}

// stop ends the subscription and checks that it returned nil: its
// goroutine is gone. Once it has returned, stop does nothing.
func (sub *subscriber) stop(t *testing.T) {
	t.Helper()
	if sub.returned != nil {
		return
	}
	sub.cancel()
	if err := sub.wait(t); err != nil {
		t.Errorf("SubscribeAccountChanges = %v, want nil once ctx ends", err)
	}
}

// wait waits for SubscribeAccountChanges to return and returns what it
// returned.
func (sub *subscriber) wait(t *testing.T) error {
	t.Helper()
	if sub.returned != nil {
		return *sub.returned
	}
	select {
	case err := <-sub.done:
		sub.returned = &err
		return err
	case <-time.After(noticeWait):
		t.Fatalf("SubscribeAccountChanges did not return within %s", noticeWait)
		return nil
	}
}

// waitSubscribed publishes probes from pub until sub receives one: then
// sub is subscribed, and notices published from now on reach it.
func waitSubscribed(t *testing.T, pub *redis.Store, sub *subscriber) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(noticeWait)
	for {
		if err := pub.PublishAccountChange(t.Context(), "probe"); err != nil {
			t.Fatalf("PublishAccountChange: %v", err)
		}
		select {
		case <-sub.changes:
			return
		case <-deadline:
			t.Fatalf("no notice received within %s of subscribing", noticeWait)
		case <-tick.C:
		}
	}
}

// wantChange waits for the notice of id, skipping probes.
func wantChange(t *testing.T, sub *subscriber, id string) {
	t.Helper()
	deadline := time.After(noticeWait)
	for {
		select {
		case got := <-sub.changes:
			if got == id {
				return
			}
			if got != "probe" {
				t.Fatalf("notice of %q, want %q", got, id)
			}
		case <-deadline:
			t.Fatalf("no notice of %q within %s", id, noticeWait)
		}
	}
}

// wantSubscribed waits for one call of onSubscribed.
func wantSubscribed(t *testing.T, sub *subscriber) {
	t.Helper()
	select {
	case <-sub.reconnects:
	case <-time.After(noticeWait):
		t.Fatalf("onSubscribed not called within %s", noticeWait)
	}
}

// TestNoticesAcrossNodes publishes on one node and receives on another;
// after Redis restarts, the subscriber is told to reload, and notices
// reach it again.
func TestNoticesAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	nodeA := openStore(t, srv.URL(), "tg")
	nodeB := openStore(t, srv.URL(), "tg")
	sub := subscribe(t, nodeB)
	waitSubscribed(t, nodeA, sub)
	wantSubscribed(t, sub)
	for _, id := range []string{"acme", "acme.eu"} {
		if err := nodeA.PublishAccountChange(t.Context(), id); err != nil {
			t.Fatalf("PublishAccountChange: %v", err)
		}
		wantChange(t, sub, id)
	}

	// A store with another prefix is another deployment.
	other := openStore(t, srv.URL(), "other")
	if err := other.PublishAccountChange(t.Context(), "elsewhere"); err != nil {
		t.Fatalf("PublishAccountChange: %v", err)
	}
	if err := nodeA.PublishAccountChange(t.Context(), "acm"); err != nil {
		t.Fatalf("PublishAccountChange: %v", err)
	}
	wantChange(t, sub, "acm")

	srv.Restart()
	wantSubscribed(t, sub)
	// Subscribed again: the notice of the reconnection came with the
	// confirmation.
	if err := nodeA.PublishAccountChange(t.Context(), "acme"); err != nil {
		t.Fatalf("PublishAccountChange after the restart: %v", err)
	}
	wantChange(t, sub, "acme")
	sub.stop(t)
}

// TestNoticesStopWhileRedisDown checks that SubscribeAccountChanges
// returns when ctx ends while it waits for Redis to come back.
func TestNoticesStopWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	node := openStore(t, srv.URL(), "tg")
	sub := subscribe(t, node)
	waitSubscribed(t, node, sub)
	wantSubscribed(t, sub)
	srv.Kill()
	sub.stop(t)
	select {
	case <-sub.reconnects:
		t.Errorf("onSubscribed called while Redis was down")
	default:
	}
}

// TestNoticesStoreClosed checks that SubscribeAccountChanges returns
// ErrClosed when the store closes under it, and that publishing on a
// closed store fails.
func TestNoticesStoreClosed(t *testing.T) {
	srv := redistest.Start(t)
	node := openStore(t, srv.URL(), "tg")
	sub := subscribe(t, node)
	waitSubscribed(t, node, sub)
	if err := node.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := sub.wait(t); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("SubscribeAccountChanges on a closed store = %v, want ErrClosed", err)
	}
	if err := node.PublishAccountChange(t.Context(), "acme"); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("PublishAccountChange on a closed store = %v, want ErrClosed", err)
	}
}

// TestTaskEndNotices: a task end published by one node reaches another,
// on a channel of its own.
func TestTaskEndNotices(t *testing.T) {
	srv := redistest.Start(t)
	nodeA := openStore(t, srv.URL(), "tg")
	nodeB := openStore(t, srv.URL(), "tg")
	ctx, cancel := context.WithCancel(t.Context())
	ended := make(chan string, 100)
	subscribed := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- nodeB.SubscribeTaskEnds(ctx, func(id string) { ended <- id }, func() { subscribed <- struct{}{} })
	}()
	select {
	case <-subscribed:
	case <-time.After(noticeWait):
		t.Fatalf("not subscribed within %s", noticeWait)
	}
	// An account change is not a task end.
	if err := nodeA.PublishAccountChange(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	if err := nodeA.PublishTaskEnd(t.Context(), "rid-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ended:
		if id != "rid-1" {
			t.Fatalf("task end notice %q, want rid-1", id)
		}
	case <-time.After(noticeWait):
		t.Fatalf("no task end notice within %s", noticeWait)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("SubscribeTaskEnds = %v, want nil once ctx ends", err)
	}
}

// TestNodeBeats: a node's beat replaces its last one, every node of the
// deployment reads them all, another deployment's are apart, and a node
// forgotten is gone.
func TestNodeBeats(t *testing.T) {
	srv := redistest.Start(t)
	nodeA := openStore(t, srv.URL(), "tg")
	nodeB := openStore(t, srv.URL(), "tg")
	other := openStore(t, srv.URL(), "other")
	ctx := t.Context()
	for _, beat := range []struct {
		store     *redis.Store
		id, state string
	}{{nodeA, "a", `{"n":1}`}, {nodeB, "b", `{"n":1}`}, {nodeA, "a", `{"n":2}`}, {other, "x", `{}`}} {
		if err := beat.store.NodeBeat(ctx, beat.id, []byte(beat.state)); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	states, now, err := nodeB.NodeStates(ctx)
	if err != nil || len(states) != 2 || string(states["a"].State) != `{"n":2}` || string(states["b"].State) != `{"n":1}` {
		t.Fatalf("NodeStates() = %v, %v; want a's last beat and b's", states, err)
	}
	// Redis's clock, which the test's runs alongside.
	if d := now.Sub(before); d < -time.Minute || d > time.Minute || states["a"].At.After(now) || now.Sub(states["a"].At) > time.Minute {
		t.Errorf("now %v, a beat at %v: want Redis's time", now, states["a"].At)
	}
	if err := nodeB.NodeForget(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if states, _, err = nodeA.NodeStates(ctx); err != nil || len(states) != 1 || states["b"].State == nil {
		t.Fatalf("after forgetting a: %v, %v", states, err)
	}

	// Nodes killed without leaving: a beat silent for longer than
	// node.ForgetAfter, and one of no layout read, go with the next beat
	// of any node, listed or not.
	for _, cmd := range []string{"HSET {tg}:nodes killed 1|{}", "HSET {tg}:nodes strange x"} {
		if reply, err := srv.Command(cmd); err != nil || strings.TrimSpace(reply) != ":1" {
			t.Fatalf("%s: %q, %v", cmd, reply, err)
		}
	}
	if err := nodeA.NodeBeat(ctx, "a", []byte(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	if states, _, err = nodeB.NodeStates(ctx); err != nil || len(states) != 2 || states["a"].State == nil || states["b"].State == nil {
		t.Fatalf("after a beat: %v, %v; want a and b alone", states, err)
	}
}
