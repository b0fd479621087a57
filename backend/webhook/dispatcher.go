package webhook

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	mathrand "math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/internal/lease"
	"github.com/taskgate/taskgate/internal/retry"
)

// Resolver looks up, in the current config, how to send a delivery: the
// target of its webhook and the URL of its account's failure webhook (empty
// when the account has none). ok is false when the delivery's webhook is no
// longer configured (the delivery then fails without being sent); the
// failure URL is used even then. For a failure notification (Event
// EventFailed) the webhook is the account's failure webhook.
type Resolver func(d *Delivery) (target Target, failureURL string, ok bool)

// DispatcherConfig is what a Dispatcher is made of: its store, sender,
// resolver and policy, and the settings that tune it (zero: the
// defaults).
type DispatcherConfig struct {
	// Store keeps the deliveries.
	Store Store
	// Sender makes the attempts; its timeout bounds each.
	Sender *Sender
	// Resolve tells how to send a delivery under the configuration.
	Resolve Resolver
	// Policy is the retry policy; its zero fields take DefaultPolicy's.
	Policy Policy
	// Concurrency is how many attempts may be in flight. Default 64.
	Concurrency int
	// PerURL is how many attempts may be in flight to one URL, so that a
	// slow receiver cannot take every worker. Default 4.
	PerURL int
	// PerAccount is an account's share of the attempts in flight, so that
	// one account (many URLs that hang, a large backlog) cannot take every
	// worker from the others. An account goes past it only with the
	// workers no other account's due deliveries want, and gives each back
	// once it has held it for ShareHold. Default a quarter of
	// Concurrency, and never less than PerURL.
	PerAccount int
	// ShareHold is how long a worker of an account past its share goes on
	// with its URL's next deliveries before it gives its slot back to
	// the claims: long enough for a quick receiver's run of deliveries,
	// short next to a receiver that does not answer. Default 1 s.
	ShareHold time.Duration
	// Poll is how often an idle dispatcher looks at the store without
	// being woken (for deliveries coming due, or queued by another
	// process). Default 500 ms.
	Poll time.Duration
	// Lease is how long a claim holds a delivery; the dispatcher renews
	// the leases of its attempts in flight every Lease/3, so a delivery
	// outlives its lease only when its node died. Default 15 s.
	Lease time.Duration
	// RescueEvery is how often leases that ended unrecorded (their process
	// died) are rescued. Default 5 s.
	RescueEvery time.Duration
	// Clock tells the time. Default time.Now.
	Clock clock.Clock
	// Logger logs store errors and deliveries that fail for good. Default
	// none.
	Logger *zap.Logger
	// Rand is the jitter of retry delays, a uniform draw in [0, 1); it is
	// called from many goroutines at once. Default math/rand/v2.Float64.
	Rand func() float64
	// OnAttempt, when set, is called after each attempt has been handed to
	// the store, with the delivery in its new state (for metrics). It is
	// not called for attempts cut short by the dispatcher stopping.
	OnAttempt func(d *Delivery, a Attempt)
	// OnPanic, when set, is called after a panic during an attempt was
	// recovered (for metrics).
	OnPanic func(d *Delivery)
	// Health, when set, is told of each attempt at a task's delivery
	// before it is recorded, and answers what it did to the endpoint: a
	// non-nil Disabled when this attempt disabled it, which the account's
	// failure webhook is then told of (EventDisabled).
	Health func(d *Delivery, a Attempt, now time.Time) *Disabled
}

// Disabled is what an attempt that disabled its endpoint tells the
// account: which endpoint, why ("gone": it answered 410; "failing": every
// attempt failed for too long) and since when it failed.
type Disabled struct {
	EndpointID   string
	Reason       string
	FailingSince time.Time
	// Undo, when set, takes the disabling back. The dispatcher calls it
	// when the attempt's record, which carries the account's notice,
	// could not be stored: the endpoint stays enabled, and an attempt to
	// come disables it again and tells the account, instead of the
	// account never hearing of it.
	Undo func()
}

// Defaults of DispatcherConfig.
const (
	DefaultConcurrency = 64
	DefaultPerURL      = 4
	DefaultShareHold   = time.Second
	DefaultPoll        = 500 * time.Millisecond
	DefaultLease       = 15 * time.Second
	DefaultRescueEvery = 5 * time.Second
)

// ErrorNotConfigured is the error of the attempt that ends a delivery whose
// webhook was removed from the config.
const ErrorNotConfigured = "webhook no longer configured"

// ErrorDisabled is the error of the attempt that ends a delivery whose
// endpoint is disabled; the delivery can be retried once it is enabled.
const ErrorDisabled = "endpoint disabled"

// ErrorInternal is the error of an attempt cut short by a panic while
// resolving or sending it. It tells the account nothing of the cause; the
// node's log has it.
const ErrorInternal = "internal error"

// maxFollowed is how many deliveries of its URL a worker attempts one
// after the other (see AttemptClaimer) before it leaves its slot to the
// producer's claims, which serve the URLs earliest due first.
const maxFollowed = 16

// storeTimeout bounds recording an attempt, which goes on after Run's
// context ends.
const storeTimeout = 10 * time.Second

// Dispatcher delivers the pending deliveries of a Store: a producer claims
// due deliveries while it has free workers (and their URL is under its
// PerURL cap), each claimed delivery is attempted by its own goroutine, and
// the outcome is recorded with the state Policy gives it. Delivery is at
// least once: an attempt cut short by Run's end, or whose outcome could
// not be stored, is made again once its lease ends (receivers dedupe on
// webhook-id).
type Dispatcher struct {
	store   Store
	sender  *Sender
	resolve Resolver
	policy  Policy
	opts    DispatcherConfig
	wakeup  chan struct{}
	// scheduled carries the NextAt of each retry this dispatcher recorded,
	// so that the producer wakes when it is due instead of at the next poll.
	scheduled chan time.Time
}

// NewDispatcher returns a dispatcher of the store's deliveries. Attempts
// are bounded by the sender's timeout; leases last Lease and are renewed
// while attempts run.
func NewDispatcher(opts DispatcherConfig) *Dispatcher {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.PerURL <= 0 {
		opts.PerURL = DefaultPerURL
	}
	if opts.PerAccount <= 0 {
		opts.PerAccount = max(opts.Concurrency/4, opts.PerURL)
	}
	if opts.ShareHold <= 0 {
		opts.ShareHold = DefaultShareHold
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.RescueEvery <= 0 {
		opts.RescueEvery = DefaultRescueEvery
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Rand == nil {
		opts.Rand = mathrand.Float64
	}
	return &Dispatcher{
		store:     opts.Store,
		sender:    opts.Sender,
		resolve:   opts.Resolve,
		policy:    opts.Policy.WithDefaults(),
		opts:      opts,
		wakeup:    make(chan struct{}, 1),
		scheduled: make(chan time.Time, 1024),
	}
}

// Wake tells the dispatcher that deliveries were stored or made due. It
// never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wakeup <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then returns once every goroutine it started
// has ended. Attempts in flight are cut short and left unrecorded: their
// deliveries stay leased and are attempted again after their lease ends.
func (d *Dispatcher) Run(ctx context.Context) {
	leases := &lease.Keeper[Claim]{
		Extend: d.store.ExtendDeliveryLeases,
		Lease:  d.opts.Lease,
		Clock:  d.opts.Clock,
		OnError: func(err error) {
			d.opts.Logger.Error("renewing webhook delivery leases; another node may attempt them too", zap.Error(err))
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.produce(ctx, leases) })
	wg.Go(func() { leases.Run(ctx) })
	wg.Go(func() { d.maintain(ctx) })
	wg.Wait()
}

// produce claims due deliveries while there are free workers.
func (d *Dispatcher) produce(ctx context.Context, leases *lease.Keeper[Claim]) {
	var workers sync.WaitGroup
	defer workers.Wait()
	// sent carries the delivery of each attempt whose exchange with the
	// receiver ended: its URL's slot is free, while the worker records
	// the outcome; done tells that a worker ended.
	sent := make(chan *Delivery, d.opts.Concurrency)
	done := make(chan struct{}, d.opts.Concurrency)
	busy := 0
	perURL := make(map[string]int)
	accounts := newAccountSlots()
	poll := time.NewTicker(d.opts.Poll)
	defer poll.Stop()
	// due holds the times at which retries recorded here fall due; the
	// timer fires at the earliest. The poll still finds what it misses
	// (deliveries retried through the API, rescued, or left by a crash).
	var due dueTimes
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var armed time.Time
	rearm := func() {
		now := d.opts.Clock()
		for len(due) > 0 && !due[0].After(now) {
			heap.Pop(&due)
		}
		if len(due) == 0 || (!armed.IsZero() && !due[0].Before(armed)) {
			return
		}
		armed = due[0]
		timer.Reset(armed.Sub(now))
	}
	// With a store that claims while it records, a worker goes on with the
	// next due delivery of its URL, claimed in the write of its record:
	// its slot stays with the URL, and the producer's claims (a write
	// each) are only for the slots left free.
	_, follows := d.store.(AttemptClaimer)
	nextOfURL := func() NextOfURL { return NextOfURL{Now: d.opts.Clock(), LeaseUntil: leases.Until()} }
	// shared tells, once an attempt's exchange is over, whether the worker
	// that took its slot at took may go on with the URL's next delivery:
	// an account past its share keeps a slot for ShareHold at most.
	shared := func(del *Delivery, took time.Time) bool {
		return time.Since(took) < d.opts.ShareHold || !accounts.over(del.AccountID, d.opts.PerAccount)
	}
	for {
		if free := d.opts.Concurrency - busy; free > 0 {
			for _, del := range d.claim(ctx, free, perURL, accounts, leases.Until()) {
				busy++
				perURL[del.URL]++
				accounts.take(del)
				leases.Hold(ClaimOf(del))
				workers.Go(func() {
					first, took := del, time.Now()
					freed := false
					free := func() {
						if !freed {
							freed = true
							sent <- first
						}
					}
					defer func() {
						free()
						done <- struct{}{}
					}()
					for n := 1; del != nil; n++ {
						if follows && n < maxFollowed && ctx.Err() == nil {
							// The slot stays with the URL through the
							// record, which may hand the worker the next
							// (unless its account is past its share).
							next := d.attempt(ctx, del, func() {}, func() (NextOfURL, bool) {
								return nextOfURL(), shared(del, took)
							})
							leases.Release(ClaimOf(del))
							if next != nil {
								leases.Hold(ClaimOf(next))
							}
							del = next
							continue
						}
						d.attempt(ctx, del, free, nil)
						leases.Release(ClaimOf(del))
						del = nil
					}
				})
			}
		}
		// Either nothing is due or every worker is busy: wait for an
		// attempt to end or a delivery to be stored.
		select {
		case <-ctx.Done():
			return
		case del := <-sent:
			exchanged(perURL, accounts, del)
			d.drain(sent, done, perURL, accounts, &busy)
		case <-done:
			busy--
			d.drain(sent, done, perURL, accounts, &busy)
		case <-d.wakeup:
		case <-poll.C:
		case t := <-d.scheduled:
			heap.Push(&due, t)
			rearm()
		case <-timer.C:
			armed = time.Time{}
			rearm()
		}
	}
}

// dueTimes is a min-heap of times.
type dueTimes []time.Time

func (h dueTimes) Len() int           { return len(h) }
func (h dueTimes) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h dueTimes) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueTimes) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *dueTimes) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// drain takes every other ended exchange and attempt too, so that one
// claim refills all the free slots.
func (d *Dispatcher) drain(sent <-chan *Delivery, done <-chan struct{}, perURL map[string]int, accounts *accountSlots, busy *int) {
	for {
		select {
		case del := <-sent:
			exchanged(perURL, accounts, del)
		case <-done:
			*busy--
		default:
			return
		}
	}
}

// exchanged counts the exchange of an attempt of del as ended: its URL's
// slot and its account's are free.
func exchanged(perURL map[string]int, accounts *accountSlots, del *Delivery) {
	release(perURL, del.URL)
	accounts.release(del.AccountID)
}

// release counts one of key's attempts in flight as ended.
func release(inFlight map[string]int, key string) {
	if inFlight[key] <= 1 {
		delete(inFlight, key)
		return
	}
	inFlight[key]--
}

// claim leases up to n due deliveries whose URL is under its cap, given
// the attempts in flight per URL, and whose account is under its share
// (PerAccount); then, for the slots left, deliveries past their account's
// share, which no other account's due deliveries wanted.
//
// The store's claim asks about URLs, not accounts: an account is known by
// the URLs this dispatcher has attempted (accountSlots), and a URL first
// seen is let through, to be counted against its account from then on.
func (d *Dispatcher) claim(ctx context.Context, n int, inFlight map[string]int, accounts *accountSlots, lease time.Time) []*Delivery {
	now := d.opts.Clock()
	// The store asks about each candidate before taking it; counting the
	// ones taken keeps one claim from filling a URL past its cap, or an
	// account past its share.
	taken := make(map[string]int)
	takenOf := make(map[string]int)
	pastShare := false
	skip := func(shared bool) func(u string) bool {
		return func(u string) bool {
			if inFlight[u]+taken[u] >= d.opts.PerURL {
				return true
			}
			acct, known := accounts.of(u)
			if shared && known && accounts.held(acct)+takenOf[acct] >= d.opts.PerAccount {
				pastShare = true
				return true
			}
			taken[u]++
			if known {
				takenOf[acct]++
			}
			return false
		}
	}
	dels, err := d.store.ClaimDeliveries(ctx, now, n, lease, skip(true))
	if err == nil && pastShare && len(dels) < n {
		var more []*Delivery
		more, err = d.store.ClaimDeliveries(ctx, now, n-len(dels), lease, skip(false))
		dels = append(dels, more...)
	}
	if err != nil && ctx.Err() == nil {
		d.opts.Logger.Error("claiming webhook deliveries", zap.Error(err))
	}
	return dels
}

// accountSlots counts the attempts in flight of each account, and knows
// the account of each URL attempted lately.
type accountSlots struct {
	mu      sync.Mutex
	inUse   map[string]int    // account → attempts in flight
	account map[string]string // URL → account
}

// maxKnownURLs bounds the URLs whose account is remembered once none of
// their attempts is in flight.
const maxKnownURLs = 4096

func newAccountSlots() *accountSlots {
	return &accountSlots{inUse: make(map[string]int), account: make(map[string]string)}
}

// take counts an attempt of del in flight.
func (a *accountSlots) take(del *Delivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inUse[del.AccountID]++
	if _, ok := a.account[del.URL]; !ok && len(a.account) >= maxKnownURLs {
		// Forget one at random: a URL forgotten is let through once
		// more, then known again.
		for u := range a.account {
			delete(a.account, u)
			break
		}
	}
	a.account[del.URL] = del.AccountID
}

// release counts an attempt of the account as ended.
func (a *accountSlots) release(account string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	release(a.inUse, account)
}

// of returns the account of the URL's last attempt, if known.
func (a *accountSlots) of(url string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acct, ok := a.account[url]
	return acct, ok
}

// held returns the account's attempts in flight.
func (a *accountSlots) held(account string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inUse[account]
}

// over tells whether the account has more attempts in flight than share.
func (a *accountSlots) over(account string, share int) bool {
	return a.held(account) > share
}

// attempt sends a claimed delivery once and records the outcome.
//
// A panic does not take the node down. One while resolving or sending is
// recovered and logged with its stack, and the attempt is recorded as a
// failure without an answer (ErrorInternal), which the policy retries as
// it does a transport failure: the fault may pass (a config reload, a
// fixed release), and if it does not the policy's give-up ends the
// delivery as failed, with its failure notification. One while recording
// is logged too, and leaves the delivery leased, to be attempted again
// once its lease ends, as a store error does. One in OnAttempt, after the
// attempt is recorded, is only logged.
//
// sent is called once the exchange with the receiver is over, before the
// outcome is recorded: the URL's slot serves another attempt meanwhile,
// so that the per-URL cap bounds the requests a receiver has in flight,
// not the records of their outcomes.
//
// With next set (and a store that is an AttemptClaimer), the record also
// claims the next due delivery of the URL, which attempt returns: nil when
// none was due, or next was not set or, asked once the exchange is over,
// said no.
func (d *Dispatcher) attempt(ctx context.Context, del *Delivery, sent func(), next func() (NextOfURL, bool)) (following *Delivery) {
	defer func() {
		if v := recover(); v != nil {
			d.panicked(del, "recording the attempt; the delivery is attempted again when its lease ends", v)
		}
	}()
	var (
		target     Target
		failureURL string
		ok         bool
		a          Attempt
	)
	if d.guard(del, "resolving or sending; the attempt fails as "+ErrorInternal, func() {
		target, failureURL, ok = d.resolve(del)
		if ok {
			a = d.sender.Send(ctx, del, target)
		}
	}) {
		sent()
		ok = true
		a = Attempt{At: d.opts.Clock(), Error: ErrorInternal}
	} else if sent(); ok {
		// Without an answer the attempt says nothing about the receiver:
		// leave the delivery leased, to be attempted again.
		if a.StatusCode == 0 && ctx.Err() != nil {
			return nil
		}
	} else if target.Disabled {
		a = Attempt{At: d.opts.Clock(), Error: ErrorDisabled}
	} else {
		a = Attempt{At: d.opts.Clock(), Error: ErrorNotConfigured}
	}
	now := d.opts.Clock()
	del.Attempts = append(del.Attempts, a)
	if ok {
		del.Status, del.NextAt = d.policy.Next(del, now, d.opts.Rand)
	} else {
		del.Status, del.NextAt = Failed, time.Time{}
	}
	var also []*Delivery
	// A failure notification that fails is not notified about: the
	// account would be told about its failure webhook on that same webhook.
	if del.Status == Failed && !Notice(del.Event) && failureURL != "" {
		also = append(also, newFailureDelivery(del, failureURL, now))
	}
	// The endpoint's health: an attempt may disable it, and the account
	// hears of it in the same transaction as the attempt.
	var disabled *Disabled
	if ok && del.Event == EventTask && d.opts.Health != nil && a.Error != ErrorInternal {
		d.guard(del, "in Health; the endpoint's health is not updated", func() { disabled = d.opts.Health(del, a, now) })
		if disabled != nil && failureURL != "" {
			also = append(also, newDisabledDelivery(del, failureURL, disabled, now))
		}
	}
	// The outcome is stored even when Run is stopping: the receiver has
	// answered, and attempting again would deliver twice.
	storeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	// A store out of reach for a moment should not cost the receiver a
	// second delivery: try again within storeTimeout.
	record := func() error { return d.store.RecordAttempt(storeCtx, del, also) }
	if claimer, ok := d.store.(AttemptClaimer); ok && next != nil && ctx.Err() == nil {
		if at, ok := next(); ok {
			record = func() error {
				var err error
				following, err = claimer.RecordAttemptClaiming(storeCtx, del, also, at)
				return err
			}
		}
	}
	err := retry.Default.Do(storeCtx, record, func(err error) bool { return errors.Is(err, ErrNotFound) })
	if err != nil && disabled != nil && disabled.Undo != nil {
		d.guard(del, "taking back the disabling of its endpoint, whose notice was not stored", disabled.Undo)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		// Its lease ran out (this node paused, or was cut off) and
		// another worker holds the delivery now, or ended it.
		d.opts.Logger.Info("webhook delivery ended or claimed again by another worker since its lease ran out; this attempt's record is dropped",
			zap.String("delivery_id", del.ID), zap.Int("claim", del.Claim))
	case err != nil:
		d.opts.Logger.Error("recording a webhook attempt; the delivery is attempted again when its lease ends",
			zap.String("delivery_id", del.ID), zap.Error(err))
	case del.Status == Failed:
		// The receiver's trouble, not the operator's: not a warning.
		d.opts.Logger.Info("webhook delivery failed for good",
			zap.String("delivery_id", del.ID),
			zap.String("account_id", del.AccountID),
			zap.String("request_id", del.RequestID),
			zap.String("webhook_host", urlHost(del.URL)),
			zap.Int("attempts", len(del.Attempts)),
			zap.String("last_error", a.Error))
	}
	if d.opts.OnAttempt != nil {
		d.guard(del, "in OnAttempt, after the attempt was recorded", func() { d.opts.OnAttempt(del, a) })
	}
	// Woken only after reporting, so that unless something else wakes the
	// producer meanwhile, the attempt that failed a delivery is reported
	// before the first attempt at the notification of its failure.
	if err == nil && len(also) > 0 {
		d.Wake()
	}
	if err == nil && del.Status == Pending {
		if c := d.opts.Logger.Check(zap.DebugLevel, "webhook attempt failed; retry scheduled"); c != nil {
			c.Write(zap.String("delivery_id", del.ID), zap.String("account_id", del.AccountID),
				zap.String("webhook_host", urlHost(del.URL)), zap.Int("attempts", len(del.Attempts)),
				zap.String("last_error", a.Error), zap.Time("next_at", del.NextAt))
		}
		select {
		case d.scheduled <- del.NextAt:
		default: // the poll finds it
		}
	}
	return following
}

// guard runs f, recovering a panic in it: the panic is logged with the
// delivery and the stack, and counted. It tells whether f panicked.
func (d *Dispatcher) guard(del *Delivery, during string, f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			d.panicked(del, during, v)
		}
	}()
	f()
	return false
}

// panicked reports a recovered panic: called from the deferred function
// that recovered it, so that the stack logged is the panic's.
func (d *Dispatcher) panicked(del *Delivery, what string, v any) {
	d.opts.Logger.Error("panic during a webhook delivery attempt: "+what,
		zap.String("delivery_id", del.ID),
		zap.String("request_id", del.RequestID),
		zap.String("event", del.Event),
		zap.String("webhook_host", urlHost(del.URL)),
		zap.Any("panic", v),
		zap.Stack("stack"))
	if d.opts.OnPanic != nil {
		d.opts.OnPanic(del)
	}
}

// urlHost returns the host of a webhook URL for logs: the rest of it may
// carry a token.
func urlHost(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Host
}

// maintain rescues deliveries whose lease ended unrecorded (their process
// died, or Run ended mid-attempt), once at start and then periodically.
func (d *Dispatcher) maintain(ctx context.Context) {
	rescue := time.NewTicker(d.opts.RescueEvery)
	defer rescue.Stop()
	for {
		n, err := d.store.RescueDeliveries(ctx, d.opts.Clock())
		if err != nil && ctx.Err() == nil {
			d.opts.Logger.Error("rescuing webhook deliveries", zap.Error(err))
		}
		if n > 0 {
			d.opts.Logger.Warn("rescued webhook deliveries whose lease ended", zap.Int("deliveries", n))
			d.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
		}
	}
}

// NewID returns a new delivery id: "msg_" and a version 7 UUID (48 bits of
// time, 74 random) in base62. Ids grow with time, so a store keyed by them
// appends instead of writing to random pages.
func NewID() string {
	b, err := uuid.NewV7()
	if err != nil {
		_, _ = rand.Read(b[:])
	}
	s := new(big.Int).SetBytes(b[:]).Text(62)
	// 22 base62 digits hold 128 bits; pad so every id has the same length.
	return "msg_" + strings.Repeat("0", 22-len(s)) + s
}

// NewTaskDelivery returns the delivery of a finished task to one webhook,
// due at once; body is the task object.
func NewTaskDelivery(accountID, requestID, webhookURL string, body json.RawMessage, now time.Time) *Delivery {
	return &Delivery{
		ID:        NewID(),
		AccountID: accountID,
		RequestID: requestID,
		URL:       webhookURL,
		Event:     EventTask,
		Body:      body,
		Status:    Pending,
		CreatedAt: now,
		NextAt:    now,
	}
}

// failureBody is the body of a failure notification.
type failureBody struct {
	Event      string `json:"event"`
	DeliveryID string `json:"delivery_id"`
	RequestID  string `json:"request_id"`
	WebhookURL string `json:"webhook_url"`
	Attempts   int    `json:"attempts"`
	// LastStatusCode is null when the last attempt got no answer.
	LastStatusCode *int   `json:"last_status_code"`
	LastError      string `json:"last_error"`
}

// FailureBody returns the body that tells an account's failure webhook
// that d failed for good:
//
//	{"event":"webhook.failed","delivery_id","request_id","webhook_url",
//	 "attempts":<count>,"last_status_code":<int or null>,"last_error"}
func FailureBody(d *Delivery) json.RawMessage {
	b := failureBody{
		Event:      EventFailed,
		DeliveryID: d.ID,
		RequestID:  d.RequestID,
		WebhookURL: d.URL,
		Attempts:   len(d.Attempts),
	}
	b.LastStatusCode, b.LastError = lastOutcome(d)
	body, _ := json.Marshal(b)
	return body
}

// lastOutcome returns the status code (nil for none) and the error of d's
// last attempt.
func lastOutcome(d *Delivery) (*int, string) {
	n := len(d.Attempts)
	if n == 0 {
		return nil, ""
	}
	last := d.Attempts[n-1]
	if last.StatusCode == 0 {
		return nil, last.Error
	}
	return &last.StatusCode, last.Error
}

// disabledBody is the body of a notice that an endpoint was disabled.
type disabledBody struct {
	Event        string    `json:"event"`
	EndpointID   string    `json:"endpoint_id"`
	WebhookURL   string    `json:"webhook_url"`
	Reason       string    `json:"reason"`
	FailingSince time.Time `json:"failing_since"`
	// LastStatusCode is null when the last attempt got no answer.
	LastStatusCode *int      `json:"last_status_code"`
	LastError      string    `json:"last_error"`
	DisabledAt     time.Time `json:"disabled_at"`
}

// newDisabledDelivery returns the notice to the account's failure webhook
// that the endpoint of d was disabled by d's last attempt, due at once:
//
//	{"event":"webhook.disabled","endpoint_id","webhook_url","reason",
//	 "failing_since","last_status_code","last_error","disabled_at"}
func newDisabledDelivery(d *Delivery, failureURL string, why *Disabled, now time.Time) *Delivery {
	b := disabledBody{Event: EventDisabled, EndpointID: why.EndpointID, WebhookURL: d.URL, Reason: why.Reason,
		FailingSince: why.FailingSince, DisabledAt: now}
	b.LastStatusCode, b.LastError = lastOutcome(d)
	body, _ := json.Marshal(b)
	return &Delivery{ID: NewID(), AccountID: d.AccountID, RequestID: d.RequestID, URL: failureURL, Event: EventDisabled,
		Body: body, Status: Pending, CreatedAt: now, NextAt: now}
}

// newFailureDelivery returns the notification of d's failure to the
// account's failure webhook, due at once.
func newFailureDelivery(d *Delivery, failureURL string, now time.Time) *Delivery {
	return &Delivery{
		ID:        NewID(),
		AccountID: d.AccountID,
		RequestID: d.RequestID,
		URL:       failureURL,
		Event:     EventFailed,
		Body:      FailureBody(d),
		Status:    Pending,
		CreatedAt: now,
		NextAt:    now,
	}
}
