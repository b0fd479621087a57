package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskgate/taskgate/backend/webhook"
)

// attempted is what OnAttempt saw.
type attempted struct {
	d *webhook.Delivery
	a webhook.Attempt
}

// setup configures a harness; zero fields take the harness's defaults.
type setup struct {
	// claiming gives the dispatcher the store as an AttemptClaimer: its
	// workers go on with the next due delivery of their URL.
	claiming bool
	policy   webhook.Policy
	opts     webhook.DispatcherConfig
	sender   webhook.SenderConfig
	resolve  webhook.Resolver
	// wrap, when set, is the store the dispatcher is given, over the
	// harness's.
	wrap func(*fakeStore) webhook.Store
}

// harness runs a dispatcher over a fake store on a fake clock, with a
// fixed jitter draw of 0.5 (delays exactly First·2^n below the cap).
type harness struct {
	store    *fakeStore
	clock    *fakeClock
	attempts chan attempted
	// early are attempts told before the one nextOf waited for, which
	// next returns first.
	early []attempted
	disp  *webhook.Dispatcher
	stop  func()
}

// resolveAll resolves every delivery to a target signed with the vector's
// secret, with the failure webhook failureURL.
func resolveAll(t testing.TB, failureURL string) webhook.Resolver {
	key := mustKey(t, vectorSecret)
	return func(*webhook.Delivery) (webhook.Target, string, bool) {
		return webhook.Target{Secret: key, Authorization: "Bearer s3cret"}, failureURL, true
	}
}

func start(t testing.TB, store *fakeStore, clock *fakeClock, cfg setup) *harness {
	t.Helper()
	if cfg.policy == (webhook.Policy{}) {
		cfg.policy = webhook.DefaultPolicy()
	}
	if cfg.sender.Timeout == 0 {
		cfg.sender.Timeout = patience
	}
	if cfg.sender.Clock == nil {
		cfg.sender.Clock = clock.Now
	}
	if cfg.sender.Egress == nil {
		cfg.sender.Egress = loopback
	}
	sender := webhook.NewSender(cfg.sender)
	t.Cleanup(sender.CloseIdleConnections)
	if cfg.resolve == nil {
		cfg.resolve = resolveAll(t, "")
	}
	h := &harness{store: store, clock: clock, attempts: make(chan attempted, 1024)}
	opts := cfg.opts
	opts.Clock = clock.Now
	opts.Rand = fixed(0.5)
	// Long enough never to fire: the tests wake the dispatcher.
	if opts.Poll == 0 {
		opts.Poll = time.Hour
	}
	if opts.RescueEvery == 0 {
		opts.RescueEvery = time.Hour
	}
	opts.OnAttempt = func(d *webhook.Delivery, a webhook.Attempt) { h.attempts <- attempted{clone(d), a} }
	opts.Store, opts.Sender, opts.Resolve, opts.Policy = store, sender, cfg.resolve, cfg.policy
	if cfg.claiming {
		opts.Store = claimingStore{store}
	}
	if cfg.wrap != nil {
		opts.Store = cfg.wrap(store)
	}
	h.disp = webhook.NewDispatcher(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.disp.Run(ctx)
		close(done)
	}()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(patience):
				t.Error("the dispatcher did not stop")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// deliver stores a task delivery to url, due now, and wakes the dispatcher.
func (h *harness) deliver(url string) *webhook.Delivery {
	d := webhook.NewTaskDelivery("acme", "req-"+webhook.NewID(), url, json.RawMessage(`{"status":"completed"}`), h.clock.Now())
	h.store.add(d)
	h.disp.Wake()
	return d
}

// next returns the next attempt the dispatcher made.
func (h *harness) next(t testing.TB) attempted {
	t.Helper()
	if len(h.early) > 0 {
		a := h.early[0]
		h.early = h.early[1:]
		return a
	}
	return receive(t, h.attempts)
}

// nextOf returns the next attempt of the delivery with the id. Attempts
// of others told before it are kept for next: a failure notification,
// stored with the record of the attempt that failed its delivery, may be
// sent and told before that attempt is.
func (h *harness) nextOf(t testing.TB, id string) attempted {
	t.Helper()
	for i, a := range h.early {
		if a.d.ID == id {
			h.early = append(h.early[:i], h.early[i+1:]...)
			return a
		}
	}
	for {
		a := receive(t, h.attempts)
		if a.d.ID == id {
			return a
		}
		h.early = append(h.early, a)
	}
}

// retryAt moves the clock to when d is due and wakes the dispatcher.
func (h *harness) retryAt(d *webhook.Delivery) {
	h.clock.Set(d.NextAt)
	h.disp.Wake()
}

// idle checks that once woken the dispatcher finds nothing to do: nothing
// it claims, no attempt made.
func (h *harness) idle(t testing.TB) {
	t.Helper()
	h.clock.Advance(time.Nanosecond)
	at := h.clock.Now()
	h.disp.Wake()
	for _, a := range h.early {
		t.Errorf("unexpected attempt at %s: %+v", a.d.URL, a.a)
	}
	h.early = nil
	h.store.waitClaimAt(t, at)
	for _, d := range h.store.all() {
		if h.store.isLeased(d.ID) {
			t.Errorf("delivery %s to %s was claimed", d.ID, d.URL)
		}
	}
	select {
	case a := <-h.attempts:
		t.Errorf("unexpected attempt at %s: %+v", a.d.URL, a.a)
	default:
	}
}

func TestDispatcherDeliversSignedRequest(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	h := start(t, newFakeStore(), newFakeClock(), setup{sender: webhook.SenderConfig{UserAgent: "taskgate/test"}})
	d := h.deliver(rc.URL + "/hooks")
	got := receive(t, rc.Got)
	hd := got.Header
	if hd.Get("webhook-id") != d.ID || hd.Get("webhook-timestamp") != fmt.Sprint(h.clock.Now().Unix()) ||
		hd.Get("Authorization") != "Bearer s3cret" || hd.Get("Content-Type") != "application/json" ||
		hd.Get("User-Agent") != "taskgate/test" || string(got.Body) != string(d.Body) {
		t.Errorf("received %v %s", hd, got.Body)
	}
	if !verify(vectorSecret, hd.Get("webhook-id"), hd.Get("webhook-timestamp"), got.Body, hd.Get("webhook-signature")) {
		t.Errorf("signature %q does not verify", hd.Get("webhook-signature"))
	}
	a := h.next(t)
	if a.d.ID != d.ID || a.d.Status != webhook.Delivered || a.a.StatusCode != http.StatusOK || a.a.Error != "" {
		t.Errorf("attempt %+v of %+v", a.a, a.d)
	}
	stored := h.store.get(d.ID)
	if stored.Status != webhook.Delivered || len(stored.Attempts) != 1 || stored.Attempts[0].StatusCode != http.StatusOK ||
		!stored.Attempts[0].At.Equal(h.clock.Now()) {
		t.Errorf("stored %+v", stored)
	}
	h.idle(t)
}

func TestDispatcherRetriesWithGrowingDelays(t *testing.T) {
	failing := newReceiver(t, answering(http.StatusServiceUnavailable))
	for _, tc := range []struct {
		name, url, error string
	}{
		{"503", failing.URL, "503 Service Unavailable"},
		{"closed port", closedURL(t), "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, newFakeStore(), newFakeClock(), setup{})
			d := h.deliver(tc.url)
			for i, want := range []time.Duration{2, 4, 8, 16, 32} {
				a := h.next(t)
				if a.d.Status != webhook.Pending || a.a.Error != tc.error || len(a.d.Attempts) != i+1 {
					t.Fatalf("attempt %d: %+v, delivery %s with %d attempts", i+1, a.a, a.d.Status, len(a.d.Attempts))
				}
				if got := a.d.NextAt.Sub(h.clock.Now()); got != want*time.Second {
					t.Fatalf("attempt %d: next in %v, want %v", i+1, got, want*time.Second)
				}
				if stored := h.store.get(d.ID); !stored.NextAt.Equal(a.d.NextAt) || len(stored.Attempts) != i+1 {
					t.Fatalf("attempt %d: stored %+v", i+1, stored)
				}
				// Not due yet: nothing happens until the clock gets there.
				if i == 0 {
					h.idle(t)
				}
				h.retryAt(a.d)
			}
		})
	}
}

func TestDispatcherDoesNotRetryFinalAnswers(t *testing.T) {
	elsewhere := newReceiver(t, answering(http.StatusOK))
	for _, tc := range []struct {
		status int
		error  string
	}{
		{http.StatusBadRequest, "400 Bad Request"},
		{http.StatusGone, "410 Gone"},
		{http.StatusFound, "302 Found (redirects are not followed)"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ func()) int {
				w.Header().Set("Location", elsewhere.URL)
				return tc.status
			})
			// No failure webhook: nothing else is sent either.
			h := start(t, newFakeStore(), newFakeClock(), setup{})
			d := h.deliver(rc.URL)
			a := h.next(t)
			if a.d.Status != webhook.Failed || !a.d.NextAt.IsZero() || a.a.StatusCode != tc.status || a.a.Error != tc.error {
				t.Fatalf("attempt %+v, delivery %s next %v", a.a, a.d.Status, a.d.NextAt)
			}
			h.clock.Advance(48 * time.Hour)
			h.idle(t)
			if all := h.store.all(); len(all) != 1 || all[0].ID != d.ID || all[0].Status != webhook.Failed {
				t.Fatalf("store holds %d deliveries", len(all))
			}
			select {
			case r := <-elsewhere.Got:
				t.Fatalf("the redirect was followed: %s %s", r.Method, r.Path)
			default:
			}
		})
	}
}

func TestDispatcherGivesUpAndNotifies(t *testing.T) {
	failing := newReceiver(t, answering(http.StatusInternalServerError))
	failures := newReceiver(t, answering(http.StatusNoContent))
	policy := webhook.Policy{First: time.Second, Max: 4 * time.Second, GiveUp: 10 * time.Second, Timeout: patience}
	h := start(t, newFakeStore(), newFakeClock(), setup{policy: policy, resolve: resolveAll(t, failures.URL+"/failures")})
	created := h.clock.Now()
	d := h.deliver(failing.URL + "/hooks")
	var last attempted
	for {
		last = h.nextOf(t, d.ID)
		if last.d.Status != webhook.Pending {
			break
		}
		if !last.d.NextAt.After(h.clock.Now()) || last.d.NextAt.After(created.Add(policy.GiveUp)) {
			t.Fatalf("retry at %v after an attempt at %v", last.d.NextAt, h.clock.Now())
		}
		h.retryAt(last.d)
	}
	// Attempts at 0, 1, 3 and 6.6 s; the next would come at 10.2 s.
	if last.d.ID != d.ID || last.d.Status != webhook.Failed || len(last.d.Attempts) != 4 {
		t.Fatalf("final attempt %+v of %s, %s after %d attempts", last.a, last.d.ID, last.d.Status, len(last.d.Attempts))
	}

	got := receive(t, failures.Got)
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("failure notification %s: %v", got.Body, err)
	}
	want := map[string]any{
		"event":            "webhook.failed",
		"delivery_id":      d.ID,
		"request_id":       d.RequestID,
		"webhook_url":      failing.URL + "/hooks",
		"attempts":         4.0,
		"last_status_code": 500.0,
		"last_error":       "500 Internal Server Error",
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("failure notification %s, want %v", got.Body, want)
	}
	hd := got.Header
	if !strings.HasPrefix(hd.Get("webhook-id"), "msg_") || hd.Get("webhook-id") == d.ID ||
		!verify(vectorSecret, hd.Get("webhook-id"), hd.Get("webhook-timestamp"), got.Body, hd.Get("webhook-signature")) {
		t.Errorf("failure notification headers %v", hd)
	}
	n := h.next(t)
	if n.d.Event != webhook.EventFailed || n.d.Status != webhook.Delivered || n.d.URL != failures.URL+"/failures" ||
		n.d.AccountID != d.AccountID || n.d.RequestID != d.RequestID || n.d.ID != hd.Get("webhook-id") {
		t.Errorf("failure notification %+v", n.d)
	}
	h.idle(t)
}

func TestDispatcherNeverNotifiesAboutANotification(t *testing.T) {
	rejecting := newReceiver(t, answering(http.StatusBadRequest))
	failures := newReceiver(t, answering(http.StatusBadGateway))
	policy := webhook.Policy{First: time.Second, Max: time.Second, GiveUp: 5 * time.Second, Timeout: patience}
	h := start(t, newFakeStore(), newFakeClock(), setup{policy: policy, resolve: resolveAll(t, failures.URL)})
	d := h.deliver(rejecting.URL)
	if a := h.nextOf(t, d.ID); a.d.Status != webhook.Failed {
		t.Fatalf("attempt %+v, delivery %s", a.a, a.d.Status)
	}
	var notice attempted
	for {
		notice = h.next(t)
		if notice.d.Event != webhook.EventFailed || notice.a.Error != "502 Bad Gateway" {
			t.Fatalf("attempt %+v at %s", notice.a, notice.d.URL)
		}
		if notice.d.Status != webhook.Pending {
			break
		}
		h.retryAt(notice.d)
	}
	if notice.d.Status != webhook.Failed || len(notice.d.Attempts) < 2 {
		t.Fatalf("notification %s after %d attempts, want failed after retries", notice.d.Status, len(notice.d.Attempts))
	}
	h.idle(t)
	if all := h.store.all(); len(all) != 2 {
		t.Fatalf("store holds %d deliveries, want the delivery and one notification", len(all))
	}
}

func TestDispatcherFailsUnconfiguredWebhook(t *testing.T) {
	removed := newReceiver(t, answering(http.StatusOK))
	failures := newReceiver(t, answering(http.StatusOK))
	resolve := func(d *webhook.Delivery) (webhook.Target, string, bool) {
		return webhook.Target{}, failures.URL, d.URL != removed.URL
	}
	h := start(t, newFakeStore(), newFakeClock(), setup{resolve: resolve})
	d := h.deliver(removed.URL)
	a := h.nextOf(t, d.ID)
	if a.d.Status != webhook.Failed || a.a.Error != webhook.ErrorNotConfigured || a.a.StatusCode != 0 {
		t.Fatalf("attempt %+v, delivery %s", a.a, a.d.Status)
	}
	if n := h.next(t); n.d.Event != webhook.EventFailed || n.d.Status != webhook.Delivered || n.d.URL != failures.URL {
		t.Fatalf("notification attempt %+v, delivery %+v", n.a, n.d)
	}
	var body map[string]any
	if err := json.Unmarshal(receive(t, failures.Got).Body, &body); err != nil || body["last_error"] != webhook.ErrorNotConfigured || body["last_status_code"] != nil {
		t.Fatalf("failure notification %v, %v", body, err)
	}
	h.idle(t)
	select {
	case r := <-removed.Got:
		t.Fatalf("the removed webhook got %s %s", r.Method, r.Path)
	default:
	}
}

// TestDispatcherRecordsAPanicAsAFailedAttempt makes the resolver, then the
// sender, panic on one delivery's first attempt: the attempt is recorded
// as a failure without an answer and retried as such, the panic is logged
// with the delivery and its stack, and another delivery goes through
// meanwhile.
func TestDispatcherRecordsAPanicAsAFailedAttempt(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	for _, where := range []string{"resolver", "sender"} {
		t.Run(where, func(t *testing.T) {
			clock := newFakeClock()
			var poisonID atomic.Value
			poisonID.Store("")
			var armed atomic.Bool
			armed.Store(true)
			// trip panics on the poison delivery's first attempt.
			trip := func(id string) {
				if id == poisonID.Load() && armed.CompareAndSwap(true, false) {
					panic("boom")
				}
			}
			cfg := setup{}
			key := mustKey(t, vectorSecret)
			var sending atomic.Value
			sending.Store("")
			cfg.resolve = func(d *webhook.Delivery) (webhook.Target, string, bool) {
				if where == "resolver" {
					trip(d.ID)
				}
				sending.Store(d.ID)
				return webhook.Target{Secret: key}, "", true
			}
			if where == "sender" {
				// The sender reads its clock first thing in an attempt;
				// one attempt at a time is in flight below.
				cfg.sender.Clock = func() time.Time {
					trip(sending.Load().(string))
					return clock.Now()
				}
			}
			core, logs := observer.New(zap.ErrorLevel)
			cfg.opts.Logger = zap.New(core)
			cfg.opts.Concurrency = 1
			panics := make(chan string, 10)
			cfg.opts.OnPanic = func(d *webhook.Delivery) { panics <- d.ID }
			h := start(t, newFakeStore(), clock, cfg)

			// Due one after the other: the poison one first.
			poison := webhook.NewTaskDelivery("acme", "req-poison", rc.URL+"/poison", json.RawMessage(`{}`), clock.Now().Add(-time.Nanosecond))
			poisonID.Store(poison.ID)
			other := webhook.NewTaskDelivery("acme", "req-other", rc.URL+"/other", json.RawMessage(`{}`), clock.Now())
			h.store.add(poison, other)
			h.disp.Wake()

			a := h.next(t)
			if a.d.ID != poison.ID || a.d.Status != webhook.Pending || a.a.Error != webhook.ErrorInternal || a.a.StatusCode != 0 {
				t.Fatalf("first attempt %+v of %s (%s), want the poison one, pending, failed with %q", a.a, a.d.ID, a.d.Status, webhook.ErrorInternal)
			}
			if got := a.d.NextAt.Sub(clock.Now()); got != 2*time.Second {
				t.Errorf("retried in %v, want 2s as after a transport failure", got)
			}
			if stored := h.store.get(poison.ID); len(stored.Attempts) != 1 || stored.Attempts[0].Error != webhook.ErrorInternal {
				t.Errorf("stored %+v", stored)
			}
			if got := receive(t, panics); got != poison.ID {
				t.Errorf("OnPanic told of %s, want %s", got, poison.ID)
			}
			// The worker went on.
			if a := h.next(t); a.d.ID != other.ID || a.d.Status != webhook.Delivered {
				t.Fatalf("second attempt %+v of %s (%s), want the other one delivered", a.a, a.d.ID, a.d.Status)
			}
			h.retryAt(h.store.get(poison.ID))
			if a := h.next(t); a.d.ID != poison.ID || a.d.Status != webhook.Delivered || len(a.d.Attempts) != 2 {
				t.Fatalf("retry %+v of %s (%s), want the poison one delivered", a.a, a.d.ID, a.d.Status)
			}
			entries := logs.FilterMessageSnippet("panic").All()
			if len(entries) != 1 {
				t.Fatalf("%d error logs of a panic, want 1: %v", len(entries), logs.All())
			}
			fields := entries[0].ContextMap()
			if fields["delivery_id"] != poison.ID || fields["request_id"] != "req-poison" || fields["event"] != webhook.EventTask ||
				fields["panic"] != "boom" || !strings.Contains(fmt.Sprint(fields["stack"]), "dispatcher_test.go") {
				t.Errorf("log of the panic: %s %v", entries[0].Message, fields)
			}
		})
	}
}

// TestDispatcherSlowReceiverDoesNotHoldFastOnes stores deliveries to a
// receiver that never answers ahead of deliveries to a fast one: with the
// per-URL cap, the fast ones all arrive while the slow ones are still being
// attempted, and the slow URL never has more than its cap in flight.
func TestDispatcherSlowReceiverDoesNotHoldFastOnes(t *testing.T) {
	for _, claiming := range []bool{false, true} {
		t.Run(fmt.Sprintf("claiming=%v", claiming), func(t *testing.T) { testSlowReceiverDoesNotHoldFastOnes(t, claiming) })
	}
}

func testSlowReceiverDoesNotHoldFastOnes(t *testing.T, claiming bool) {
	followed := follows.Load()
	if claiming {
		// Workers went on with their URL's next delivery.
		t.Cleanup(func() {
			if follows.Load() == followed && !t.Failed() {
				t.Error("no record handed its worker the next delivery of its URL")
			}
		})
	}
	const slowCount, fastCount, perURL = 60, 20, 2
	var slowEnded atomic.Int32
	// The requests each receiver has in flight, and the most it had.
	var slowNow, slowMost, fastNow, fastMost atomic.Int32
	enter := func(now, most *atomic.Int32) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
	}
	slowFull := make(chan struct{})
	var slowFullOnce sync.Once
	slow := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, hold func()) int {
		enter(&slowNow, &slowMost)
		if slowMost.Load() >= perURL {
			slowFullOnce.Do(func() { close(slowFull) })
		}
		defer slowNow.Add(-1)
		hold()
		slowEnded.Add(1)
		return http.StatusOK
	})
	var fastSeen atomic.Int32
	slowEndedAtLastFast := make(chan int32, 1)
	fast := newReceiver(t, func(http.ResponseWriter, *http.Request, func()) int {
		enter(&fastNow, &fastMost)
		defer fastNow.Add(-1)
		if fastSeen.Add(1) == fastCount {
			slowEndedAtLastFast <- slowEnded.Load()
		}
		return http.StatusOK
	})
	store := newFakeStore()
	clock := newFakeClock()
	var ds []*webhook.Delivery
	for range slowCount {
		ds = append(ds, webhook.NewTaskDelivery("acme", "slow", slow.URL, []byte(`{}`), clock.Now().Add(-time.Second)))
	}
	for range fastCount {
		ds = append(ds, webhook.NewTaskDelivery("acme", "fast", fast.URL, []byte(`{}`), clock.Now()))
	}
	store.add(ds...)
	start(t, store, clock, setup{
		claiming: claiming,
		sender:   webhook.SenderConfig{Timeout: 100 * time.Millisecond},
		opts:     webhook.DispatcherConfig{Concurrency: 8, PerURL: perURL},
	})
	// Each slow attempt takes 100 ms, two at a time: the slow ones need
	// 3 s, the fast ones a few milliseconds. The cap bounds the requests
	// a receiver has in flight (a slot frees once the receiver answered,
	// while the outcome is recorded).
	if ended := receive(t, slowEndedAtLastFast); ended >= slowCount/2 {
		t.Errorf("%d of %d slow attempts had ended when the last fast delivery arrived", ended, slowCount)
	}
	// The slow receiver fills its slots (its requests may arrive after the
	// last fast one), and never has more.
	receive(t, slowFull)
	if got := slowMost.Load(); got != perURL {
		t.Errorf("the slow receiver had at most %d requests in flight, want %d", got, perURL)
	}
	if got := fastMost.Load(); got > perURL {
		t.Errorf("the fast receiver had at most %d requests in flight, want at most %d", got, perURL)
	}
}

func TestDispatcherOneAccountDoesNotHoldOthers(t *testing.T) {
	for _, claiming := range []bool{false, true} {
		t.Run(fmt.Sprintf("claiming=%v", claiming), func(t *testing.T) { testOneAccountDoesNotHoldOthers(t, claiming) })
	}
}

// testOneAccountDoesNotHoldOthers checks an account's share of the
// workers: one account whose many URLs (on one receiver) never answer,
// with the older backlog, takes every worker at first, then no more than
// its share while another account has deliveries due, which arrive
// without waiting for that backlog.
func testOneAccountDoesNotHoldOthers(t *testing.T, claiming bool) {
	const heavyURLs, perHeavyURL, lightCount = 10, 20, 5
	var heavyEnded atomic.Int32
	heavy := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, hold func()) int {
		hold()
		heavyEnded.Add(1)
		return http.StatusOK
	})
	var lightSeen atomic.Int32
	heavyEndedAtLastLight := make(chan int32, 1)
	light := newReceiver(t, func(http.ResponseWriter, *http.Request, func()) int {
		if lightSeen.Add(1) == lightCount {
			heavyEndedAtLastLight <- heavyEnded.Load()
		}
		return http.StatusOK
	})
	store := newFakeStore()
	clock := newFakeClock()
	var ds []*webhook.Delivery
	for i := range heavyURLs {
		for range perHeavyURL {
			ds = append(ds, webhook.NewTaskDelivery("heavy", "h", fmt.Sprintf("%s/hook/%d", heavy.URL, i), []byte(`{}`), clock.Now().Add(-time.Second)))
		}
	}
	for range lightCount {
		ds = append(ds, webhook.NewTaskDelivery("light", "l", light.URL, []byte(`{}`), clock.Now()))
	}
	store.add(ds...)
	// A share of 2 workers of 8 an account, past which a worker gives its
	// slot back once its attempt ends (ShareHold of 1 ms); every heavy
	// attempt times out after 100 ms, and is retried an hour later.
	start(t, store, clock, setup{
		claiming: claiming,
		policy:   webhook.Policy{First: time.Hour, Max: time.Hour, GiveUp: 24 * time.Hour},
		sender:   webhook.SenderConfig{Timeout: 100 * time.Millisecond},
		opts:     webhook.DispatcherConfig{Concurrency: 8, PerURL: 2, PerAccount: 2, ShareHold: time.Millisecond},
	})
	// Taking turns by due time alone, the light deliveries would wait for
	// the 200 heavy attempts, 25 rounds of 100 ms. With the share, they
	// wait for the first round or two, while the heavy account's URLs
	// become known.
	if ended := receive(t, heavyEndedAtLastLight); ended >= heavyURLs*perHeavyURL/2 {
		t.Errorf("%d of %d heavy attempts had ended when the last light delivery arrived", ended, heavyURLs*perHeavyURL)
	}
}

func TestDispatcherThroughProxy(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	proxy := newForwardProxy(t)
	h := start(t, newFakeStore(), newFakeClock(), setup{sender: webhook.SenderConfig{Proxy: mustParseURL(t, proxy.URL)}})
	want := make(map[string]bool)
	for range 5 {
		want[h.deliver(rc.URL+"/hooks").ID] = true
	}
	for range 5 {
		if id := receive(t, proxy.Seen); !want[id] {
			t.Errorf("the proxy saw delivery %q", id)
		}
		got := receive(t, rc.Got)
		hd := got.Header
		if !want[hd.Get("webhook-id")] || !verify(vectorSecret, hd.Get("webhook-id"), hd.Get("webhook-timestamp"), got.Body, hd.Get("webhook-signature")) {
			t.Errorf("received %v", hd)
		}
		if a := h.next(t); a.d.Status != webhook.Delivered {
			t.Errorf("attempt %+v", a.a)
		}
	}
}

// TestDispatcherStopsAndRescues stops a dispatcher mid-attempt: Run returns
// with none of its goroutines left, the delivery stays leased and
// unrecorded, and the next dispatcher rescues it once its lease ends.
func TestDispatcherStopsAndRescues(t *testing.T) {
	var status atomic.Int32
	started := make(chan struct{}, 1)
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, hold func()) int {
		if s := status.Load(); s != 0 {
			return int(s)
		}
		started <- struct{}{}
		hold()
		return http.StatusOK
	})
	store := newFakeStore()
	clock := newFakeClock()
	h := start(t, store, clock, setup{})
	d := h.deliver(rc.URL)
	receive(t, started)
	h.stop()

	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "webhook.(*Dispatcher)") || strings.Contains(stacks, "webhook.(*Sender)") {
		t.Fatalf("goroutines left after Run returned:\n%s", stacks)
	}
	if stored := store.get(d.ID); !store.isLeased(d.ID) || len(stored.Attempts) != 0 || stored.Status != webhook.Pending {
		t.Fatalf("after stop: leased %v, %+v", store.isLeased(d.ID), stored)
	}
	select {
	case a := <-h.attempts:
		t.Fatalf("the cut attempt was reported: %+v", a.a)
	default:
	}

	status.Store(http.StatusOK)
	clock.Advance(time.Minute)
	h2 := start(t, store, clock, setup{})
	if a := h2.next(t); a.d.ID != d.ID || a.d.Status != webhook.Delivered || len(a.d.Attempts) != 1 {
		t.Fatalf("after rescue: attempt %+v of %s, %s", a.a, a.d.ID, a.d.Status)
	}
}

func TestDispatcherRescuesPeriodically(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	store := newFakeStore()
	clock := newFakeClock()
	d := webhook.NewTaskDelivery("acme", "r", rc.URL, []byte(`{}`), clock.Now())
	store.add(d)
	// Another process claimed it and died.
	if got, _ := store.ClaimDeliveries(t.Context(), clock.Now(), 1, clock.Now().Add(time.Minute), nil); len(got) != 1 {
		t.Fatal("claim failed")
	}
	h := start(t, store, clock, setup{opts: webhook.DispatcherConfig{RescueEvery: time.Millisecond}})
	clock.Advance(2 * time.Minute)
	if a := h.next(t); a.d.ID != d.ID || a.d.Status != webhook.Delivered {
		t.Fatalf("attempt %+v of %s", a.a, a.d.ID)
	}
}

func TestNewID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := webhook.NewID()
		if len(id) != len("msg_")+22 || !strings.HasPrefix(id, "msg_") || strings.ContainsAny(id[4:], "._-+/=") || seen[id] {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
	}
}

func TestFailureBody(t *testing.T) {
	d := testDelivery("https://example.com/hooks")
	if got := string(webhook.FailureBody(d)); got != `{"event":"webhook.failed","delivery_id":"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W","request_id":"8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11","webhook_url":"https://example.com/hooks","attempts":0,"last_status_code":null,"last_error":""}` {
		t.Errorf("without attempts: %s", got)
	}
	d.Attempts = []webhook.Attempt{{Error: "connection refused"}, {StatusCode: 503, Error: "503 Service Unavailable"}}
	if got := string(webhook.FailureBody(d)); !strings.HasSuffix(got, `"attempts":2,"last_status_code":503,"last_error":"503 Service Unavailable"}`) {
		t.Errorf("with attempts: %s", got)
	}
}

// BenchmarkDispatcher measures deliveries per second through the
// dispatcher, the fake store and loopback HTTP to a receiver that answers
// 204 at once: to one URL under the default per-URL cap, to one URL with
// the cap at the concurrency, and spread over 64 URLs.
func BenchmarkDispatcher(b *testing.B) {
	for _, bc := range []struct {
		name         string
		urls, perURL int
	}{
		{"1url-perurl4", 1, 4},
		{"1url-perurl64", 1, 64},
		{"64urls-perurl4", 64, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			sender := webhook.NewSender(webhook.SenderConfig{Egress: loopback})
			defer sender.CloseIdleConnections()
			store := newFakeStore()
			body := json.RawMessage(`{"action":"verify_with_source","type":"ind_pan","status":"completed","request_id":"8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11","result":{"source_output":{"status":"id_found"}}}`)
			now := time.Now()
			ds := make([]*webhook.Delivery, b.N)
			for i := range ds {
				ds[i] = webhook.NewTaskDelivery("acme", "r", fmt.Sprintf("%s/hooks/%d", srv.URL, i%bc.urls), body, now)
			}
			store.add(ds...)
			var n atomic.Int64
			all := make(chan struct{})
			disp := webhook.NewDispatcher(webhook.DispatcherConfig{
				Store:   store,
				Sender:  sender,
				Resolve: resolveAll(b, ""),
				Policy:  webhook.DefaultPolicy(),
				PerURL:  bc.perURL,
				OnAttempt: func(d *webhook.Delivery, a webhook.Attempt) {
					if d.Status != webhook.Delivered {
						b.Errorf("attempt %+v", a)
					}
					if n.Add(1) == int64(b.N) {
						close(all)
					}
				},
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.ResetTimer()
			go func() {
				disp.Run(ctx)
				close(done)
			}()
			<-all
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// losingRecords is a store whose records of task deliveries are lost
// while lose is set: as if the lease had run out (ErrNotFound).
type losingRecords struct {
	*fakeStore
	lose *atomic.Bool
}

func (s losingRecords) RecordAttempt(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery) error {
	if s.lose.Load() && d.Event == webhook.EventTask {
		return webhook.ErrNotFound
	}
	return s.fakeStore.RecordAttempt(ctx, d, also)
}

// TestDispatcherTakesBackADisablingNotStored: an attempt that disabled its
// endpoint, and whose record (which carries the account's notice) could
// not be stored, takes the disabling back, so that a later attempt
// disables it again and the account hears of it; a stored one does not.
func TestDispatcherTakesBackADisablingNotStored(t *testing.T) {
	gone := newReceiver(t, answering(http.StatusGone))
	failures := newReceiver(t, answering(http.StatusOK))
	undone := make(chan string, 4)
	health := func(d *webhook.Delivery, a webhook.Attempt, now time.Time) *webhook.Disabled {
		return &webhook.Disabled{EndpointID: "ep_1", Reason: "gone", FailingSince: now, Undo: func() { undone <- d.ID }}
	}
	lose := new(atomic.Bool)
	lose.Store(true)
	h := start(t, newFakeStore(), newFakeClock(), setup{
		resolve: resolveAll(t, failures.URL),
		opts:    webhook.DispatcherConfig{Health: health},
		wrap:    func(s *fakeStore) webhook.Store { return losingRecords{s, lose} },
	})
	lost := h.deliver(gone.URL)
	h.nextOf(t, lost.ID)
	select {
	case id := <-undone:
		if id != lost.ID {
			t.Fatalf("the disabling by %s was taken back, want %s's", id, lost.ID)
		}
	case <-time.After(patience):
		t.Fatal("the disabling of an attempt whose record was lost was not taken back")
	}

	lose.Store(false)
	stored := h.deliver(gone.URL)
	if a := h.nextOf(t, stored.ID); a.d.Status != webhook.Failed || a.a.StatusCode != http.StatusGone {
		t.Fatalf("attempt %+v, delivery %s; want failed 410", a.a, a.d.Status)
	}
	events := map[string]bool{}
	for range 2 {
		events[h.next(t).d.Event] = true
	}
	if !events[webhook.EventDisabled] || !events[webhook.EventFailed] {
		t.Fatalf("notices sent %v, want %s and %s", events, webhook.EventDisabled, webhook.EventFailed)
	}
	select {
	case id := <-undone:
		t.Fatalf("the disabling by %s, whose record was stored, was taken back", id)
	default:
	}
}
