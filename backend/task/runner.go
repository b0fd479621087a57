package task

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/internal/lease"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/source"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/retry"
)

// Caller calls a task's source; *source.Client is the real one.
type Caller interface {
	Call(ctx context.Context, url string, timeout time.Duration, req source.Request) source.Outcome
}

// FastFailer is a Caller that can tell, before a task waits its turn of
// its source's rate limit, that a call would fail at once (its circuit
// open): source.Client is one.
type FastFailer interface {
	FailFast(url string) (source.Outcome, bool)
}

var _ FastFailer = (*source.Client)(nil)

// Runner runs queued tasks against their sources: per type, a producer
// claims tasks from the store while it has free workers, and each claimed
// task is executed and completed by its own goroutine, up to the type's
// concurrency.
type Runner struct {
	store   Store
	hub     *Hub
	caller  Caller
	types   map[string]*Type
	now     clock.Clock
	logger  *zap.Logger
	limiter ratelimit.Store
	// maintenance is RunnerConfig.Maintenance.
	maintenance func(taskType string, at time.Time) (string, bool)
	// orphansDue is, by type absent from the config, when FailOrphans
	// looks at its tasks again: OrphanGrace after it first found the type
	// orphaned, then when the first of those it gave back comes of age
	// (every look claims and gives them back). Only FailOrphans's
	// goroutine uses it.
	orphansDue map[string]time.Time

	// Retention is how long terminal tasks are kept. Zero keeps them.
	Retention time.Duration
	// Lease is how long a claim holds a task. The runner renews the
	// leases of the tasks it runs every Lease/3, so a task outlives its
	// lease only when its node died: another node (or this one, after a
	// restart) takes it over at most Lease after that. Default 15s.
	Lease time.Duration
	// Poll is how often an idle producer looks at the store without being
	// woken (for tasks rescued or queued by another process).
	Poll time.Duration
	// Elsewhere tells which task types another runner runs: another
	// node's, with a store shared by several, or another configuration's
	// of this node, which a reload is handing over from or to (asked once
	// per look at the orphans). The queued tasks of a type this runner
	// does not run are that runner's, not orphans (see FailOrphans). Nil:
	// no other runner.
	Elsewhere func(ctx context.Context) func(typeName string) bool
	// MaxRescues bounds how many times a task's run is cut short by its
	// node (its lease ran out: the node crashed, or paused past it, or
	// could not store the end). A task rescued more often is ended as
	// failed (InternalError) instead of being run again, so that a task
	// that takes its node down cannot take every node down in turn,
	// forever. Claims given back unrun (a reload, a stop, the looks of
	// FailOrphans) do not count. Default DefaultMaxRescues; zero or less
	// leaves it unbounded.
	MaxRescues int
	// OnFinish, when set, is called after each task ends (for metrics).
	OnFinish func(t *Task, took time.Duration)
	// OnPanic, when set, is called after a panic while running a task was
	// recovered (for metrics).
	OnPanic func(t *Task)
	// OnSourceWait, when set, is told each time a task waits for its
	// source's rate limit (for metrics).
	OnSourceWait func(typ *Type)
	// Deliveries, when set, returns the webhook deliveries of a task that
	// just ended; they are stored with its end, in one transaction.
	Deliveries func(t *Task) []*webhook.Delivery
	// Refund, when set, returns the quota counters a task that just ended
	// gives a unit back to (one that failed SOURCE_DOWN: the customer is
	// not billed for the source's outage); they are given back with its
	// end, in the same transaction, so exactly once.
	Refund func(t *Task) []quota.Counter

	wakeups map[string]chan struct{}
}

// RunnerConfig is what a Runner is made of.
type RunnerConfig struct {
	// Store keeps the tasks.
	Store Store
	// Hub wakes the waiters of a task that ends.
	Hub *Hub
	// Caller calls the sources.
	Caller Caller
	// Types are the task types the runner runs.
	Types []*Type
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// Logger receives the runner's logs (none if nil).
	Logger *zap.Logger
	// Limiter decides the calls of task types with a RateLimit, under the
	// key "source:<action/type>"; nil leaves every call free.
	Limiter ratelimit.Store
	// Maintenance, when set, tells whether a task type's source is in a
	// planned downtime at a time, and its message: its tasks then fail
	// SOURCE_DOWN with that message, without a call.
	Maintenance func(taskType string, at time.Time) (message string, down bool)
}

// NewRunner returns a runner of the given types.
func NewRunner(c RunnerConfig) *Runner {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	r := &Runner{
		store: c.Store, hub: c.Hub, caller: c.Caller, now: c.Clock, logger: c.Logger, limiter: c.Limiter,
		maintenance: c.Maintenance,
		types:       make(map[string]*Type, len(c.Types)),
		wakeups:     make(map[string]chan struct{}, len(c.Types)),
		orphansDue:  make(map[string]time.Time),
		Lease:       DefaultLease,
		Poll:        time.Second,
		MaxRescues:  DefaultMaxRescues,
	}
	for _, t := range c.Types {
		r.types[t.Name()] = t
		r.wakeups[t.Name()] = make(chan struct{}, 1)
	}
	return r
}

// storeTimeout bounds each store call that records what became of a task.
const storeTimeout = 10 * time.Second

// DefaultLease is the lease of a claimed task.
const DefaultLease = 15 * time.Second

// DefaultMaxRescues is the default MaxRescues: a task may take its node
// down five times.
const DefaultMaxRescues = 5

// Wake tells the producer of a type that a task was queued.
func (r *Runner) Wake(taskType string) {
	if ch, ok := r.wakeups[taskType]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run runs tasks until ctx ends, then waits for its workers: a worker whose
// source call is cut short puts its task back in the queue.
func (r *Runner) Run(ctx context.Context) {
	leases := &lease.Keeper[Claim]{
		Extend: r.store.ExtendLeases,
		Lease:  r.Lease,
		Clock:  r.now,
		OnError: func(err error) {
			r.logger.Error("renewing task leases; another node may run them too", zap.Error(err))
		},
	}
	var wg sync.WaitGroup
	for _, t := range r.types {
		wg.Go(func() { r.produce(ctx, t, leases) })
	}
	wg.Go(func() { leases.Run(ctx) })
	wg.Go(func() { r.maintain(ctx) })
	wg.Wait()
}

// produce claims tasks of one type while there are free workers.
func (r *Runner) produce(ctx context.Context, typ *Type, leases *lease.Keeper[Claim]) {
	var workers sync.WaitGroup
	defer workers.Wait()
	done := make(chan struct{}, typ.Concurrency)
	busy := 0
	poll := time.NewTicker(r.Poll)
	defer poll.Stop()
	for {
		if free := typ.Concurrency - busy; free > 0 {
			tasks, err := r.store.Claim(ctx, typ.Name(), free, leases.Until())
			if err != nil && ctx.Err() == nil {
				r.logger.Error("claiming tasks", zap.String("task_type", typ.Name()), zap.Error(err))
			}
			for _, t := range tasks {
				busy++
				leases.Hold(ClaimOf(t))
				workers.Go(func() {
					defer func() { done <- struct{}{} }()
					defer leases.Release(ClaimOf(t))
					r.execute(ctx, typ, t)
				})
			}
		}
		// Either the queue is drained or every worker is busy: wait for a
		// worker to end or a task to be queued.
		select {
		case <-ctx.Done():
			return
		case <-done:
			busy--
			// Take every other ended worker too, so that one claim
			// refills all the free slots.
			for drained := false; !drained; {
				select {
				case <-done:
					busy--
				default:
					drained = true
				}
			}
		case <-r.wakeups[typ.Name()]:
		case <-poll.C:
		}
	}
}

// execute calls the task's source and stores the outcome.
//
// A panic on the way does not take the node down: in the source call or
// the Deliveries hook, it is recovered, logged with its stack, and the
// task ends as failed with InternalError and a message that tells nothing
// of the cause; in the Refund hook, it is logged and the task ends giving
// nothing back; in OnFinish, after the end is stored, it is only logged.
// A panic while storing the end leaves the task leased, to be run again
// once its lease ends, as a store error does; MaxRescues bounds that. In
// every case the worker goes on with the next task.
func (r *Runner) execute(ctx context.Context, typ *Type, t *Task) {
	defer func() {
		if v := recover(); v != nil {
			r.panicked(t, "storing its end; it runs again when its lease ends", v)
		}
	}()
	start := r.now()
	// The outcome is stored even when the runner is stopping: the source
	// has answered, and running the task again would call it twice. Each
	// store call gets its own time from when it is made, however long the
	// source or the wait for its turn took.
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	storeCtx := func() context.Context {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		cancels = append(cancels, cancel)
		return c
	}
	if r.MaxRescues > 0 && t.Rescues > r.MaxRescues {
		r.logger.Error("a task's runs were cut short by their node more often than max rescues, and it never ended; it fails as "+InternalError,
			zap.String("request_id", t.RequestID),
			zap.String("task_type", t.TypeName()),
			zap.Int("rescues", t.Rescues),
			zap.Int("attempts", t.Attempts))
		failInternal(t, r.now().UTC())
		r.complete(storeCtx(), t, start)
		return
	}
	if r.inMaintenance(storeCtx(), typ, t, start) {
		return
	}
	// A source whose circuit is open fails the task at once, before it
	// waits for a turn of the rate limit, which it would spend (on every
	// node's share) on a call never made.
	if ff, ok := r.caller.(FastFailer); ok && r.limiter != nil && typ.RateLimit != (ratelimit.Limit{}) {
		if out, down := ff.FailFast(typ.Source); down {
			r.finish(storeCtx(), typ, t, out, start)
			return
		}
	}
	if !r.awaitSourceTurn(ctx, typ) {
		// Stopping while it waited for its source: back to its queue.
		if err := r.store.Release(storeCtx(), []*Task{t}); err != nil {
			r.logger.Warn("releasing task; it runs again when its lease ends", zap.String("request_id", t.RequestID), zap.Error(err))
		}
		return
	}
	// A window may have begun while the task waited for its turn.
	if r.inMaintenance(storeCtx(), typ, t, start) {
		return
	}
	var out source.Outcome
	if r.guard(t, "calling the source; it fails as "+InternalError, func() {
		out = r.caller.Call(ctx, typ.Source, typ.Timeout, source.Request{
			RequestID: t.RequestID,
			TaskID:    t.TaskID,
			GroupID:   t.GroupID,
			Action:    t.Action,
			Type:      t.Type,
			Data:      t.Data,
		})
	}) {
		failInternal(t, r.now().UTC())
		r.complete(storeCtx(), t, start)
		return
	}
	if out.Kind == source.Canceled {
		if err := r.store.Release(storeCtx(), []*Task{t}); err != nil {
			r.logger.Warn("releasing task; it runs again when its lease ends", zap.String("request_id", t.RequestID), zap.Error(err))
		}
		return
	}
	r.finish(storeCtx(), typ, t, out, start)
}

// guard runs f, recovering a panic in it: the panic is logged with the
// task and the stack, and counted. It tells whether f panicked.
func (r *Runner) guard(t *Task, during string, f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			r.panicked(t, during, v)
		}
	}()
	f()
	return false
}

// panicked reports a recovered panic: called from the deferred function
// that recovered it, so that the stack logged is the panic's.
func (r *Runner) panicked(t *Task, what string, v any) {
	r.logger.Error("panic while running a task: "+what,
		zap.String("request_id", t.RequestID),
		zap.String("task_type", t.TypeName()),
		zap.Int("attempts", t.Attempts),
		zap.Any("panic", v),
		zap.Stack("stack"))
	if r.OnPanic != nil {
		r.OnPanic(t)
	}
}

// finish ends a claimed task with the outcome and stores it, with its
// webhook deliveries.
func (r *Runner) finish(ctx context.Context, typ *Type, t *Task, out source.Outcome, start time.Time) {
	if out.Kind == source.Down {
		// The operator's concern, not the account's: a source that stays
		// down shows here task after task (and in the SOURCE_DOWN metric).
		r.logger.Info("source down: the task fails "+SourceDown,
			zap.String("request_id", t.RequestID), zap.String("task_type", typ.Name()),
			zap.Int("status_code", out.StatusCode), zap.String("reason", out.Message), zap.NamedError("cause", out.Err))
	}
	applyOutcome(t, typ, out, r.now().UTC())
	r.complete(ctx, t, start)
}

// complete stores the end of t, a claimed task made terminal, with its
// webhook deliveries, and tells waiters and OnFinish.
func (r *Runner) complete(ctx context.Context, t *Task, start time.Time) {
	var deliveries []*webhook.Delivery
	if r.Deliveries != nil {
		if r.guard(t, "listing its webhook deliveries; it fails as "+InternalError, func() { deliveries = r.Deliveries(t) }) {
			// The webhooks are told of the failure, unless listing them
			// fails again.
			failInternal(t, r.now().UTC())
			deliveries = nil
			if r.guard(t, "listing the webhook deliveries of its failure; it has none", func() { deliveries = r.Deliveries(t) }) {
				deliveries = nil
			}
		}
	}
	var refund []quota.Counter
	if r.Refund != nil && r.guard(t, "listing the quota units it gives back; it gives none back", func() { refund = r.Refund(t) }) {
		refund = nil
	}
	// A store out of reach for a moment should not cost the source a
	// second call: try again within ctx (the caller bounds it).
	failed := false
	err := retry.Default.Do(ctx, func() error {
		err := r.store.Finish(ctx, t, deliveries, refund)
		if err != nil && !errors.Is(err, ErrNotFound) {
			failed = true
		}
		return err
	}, func(err error) bool { return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) })
	if errors.Is(err, ErrNotFound) && failed {
		// A try whose answer was lost may have stored the end: this one
		// then finds the task ended, by this claim (the same attempts:
		// only the claim the task was last given may end it), so the end
		// is told as ours (waiters, notices, counts). One ended
		// under a later claim is another worker's (the lease ran out
		// during the tries, and the task ran again), as is one still in
		// progress.
		if stored, gerr := r.store.Get(ctx, t.AccountID, t.RequestID); gerr == nil && stored.Status.Terminal() && stored.Attempts == t.Attempts {
			err = nil
		}
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			// Its lease ran out (this node paused, or was cut off) and
			// another worker ended it, or holds it now: that worker's
			// outcome counts, nothing is lost.
			r.logger.Info("task ended or claimed again by another worker since its lease ran out; this outcome is dropped",
				zap.String("request_id", t.RequestID), zap.Int("attempts", t.Attempts))
			return
		}
		r.logger.Error("storing task outcome; it runs again when its lease ends", zap.String("request_id", t.RequestID), zap.Error(err))
		return
	}
	r.hub.Notify(t.RequestID)
	if r.OnFinish != nil {
		// The end is stored: a panic here changes nothing of it.
		r.guard(t, "in OnFinish, after its end was stored", func() { r.OnFinish(t, r.now().Sub(start)) })
	}
}

// inMaintenance ends the task SOURCE_DOWN with the message of its type's
// maintenance window, and tells whether it did.
func (r *Runner) inMaintenance(ctx context.Context, typ *Type, t *Task, start time.Time) bool {
	if r.maintenance == nil {
		return false
	}
	msg, down := r.maintenance(typ.Name(), r.now())
	if down {
		r.finish(ctx, typ, t, source.Outcome{Kind: source.Down, Message: msg}, start)
	}
	return down
}

// awaitSourceTurn waits until the rate limit of the type's source lets one
// more call through, and tells whether it did; false when ctx ended first.
// A rate-limit store in trouble is the limiter's on_store_error to decide
// (local limits here, allow lets calls go, deny holds them a second at a
// time); an error from it lets the call go.
func (r *Runner) awaitSourceTurn(ctx context.Context, typ *Type) bool {
	if r.limiter == nil || typ.RateLimit == (ratelimit.Limit{}) {
		return true
	}
	key := "source:" + typ.Name()
	for {
		res, err := r.limiter.Take(ctx, key, typ.RateLimit)
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil || res.Allowed:
			return true
		}
		if r.OnSourceWait != nil {
			r.OnSourceWait(typ)
		}
		wait := time.NewTimer(max(res.RetryAfter, time.Millisecond))
		select {
		case <-ctx.Done():
			wait.Stop()
			return false
		case <-wait.C:
		}
	}
}

// OrphanGrace is how long the tasks of a type the config no longer
// defines wait before they fail, from when the runner finds the type gone
// (and each at least that long after its creation): long enough for a
// reload that brings the type back.
const OrphanGrace = time.Minute

// FailOrphans ends the queued tasks of types this runner does not run,
// nor (with Elsewhere) any other node (calls must not overlap: the runner
// makes them from one goroutine): their type left the config, so no
// worker will ever take them. They fail as SOURCE_DOWN, like tasks whose
// source is gone, and their webhooks fire.
func (r *Runner) FailOrphans(ctx context.Context) {
	names, err := r.store.QueuedTypes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Error("listing queued task types", zap.Error(err))
		}
		return
	}
	var elsewhere func(string) bool
	orphans := make(map[string]bool)
	defer func() {
		// A type configured again, or run again elsewhere, or whose tasks
		// are all gone, starts a new grace if it is ever orphaned again.
		for name := range r.orphansDue {
			if !orphans[name] {
				delete(r.orphansDue, name)
			}
		}
	}()
	for _, name := range names {
		if _, ok := r.types[name]; ok {
			continue
		}
		if r.Elsewhere != nil {
			if elsewhere == nil {
				elsewhere = r.Elsewhere(ctx)
			}
			if elsewhere(name) {
				continue
			}
		}
		orphans[name] = true
		due, ok := r.orphansDue[name]
		if !ok {
			// The grace runs from when the type is found orphaned, not
			// only from its tasks' creation: a reload that brings the
			// type back within it loses none of them.
			r.orphansDue[name] = r.now().Add(OrphanGrace)
			continue
		}
		if r.now().Before(due) {
			continue
		}
		action, typeName, _ := strings.Cut(name, "/")
		typ := &Type{Action: action, Type: typeName, OutputKey: DefaultOutputKey}
		tasks, err := r.store.Claim(ctx, name, 100, r.now().Add(time.Minute))
		if err != nil {
			continue
		}
		var young []*Task
		for _, t := range tasks {
			if r.now().Sub(t.CreatedAt) < OrphanGrace {
				young = append(young, t)
				continue
			}
			r.finish(ctx, typ, t, source.Outcome{Kind: source.Down, Message: "task type " + name + " is no longer configured"}, r.now())
		}
		if len(young) > 0 {
			_ = r.store.Release(ctx, young)
			// Not looked at again until the oldest of them comes of age
			// (a claim holds at most 100: the others may be older).
			due := young[0].CreatedAt.Add(OrphanGrace)
			for _, t := range young[1:] {
				if d := t.CreatedAt.Add(OrphanGrace); d.Before(due) {
					due = d
				}
			}
			r.orphansDue[name] = due
		}
	}
}

// SourceDown is the error of a task whose source failed.
const SourceDown = "SOURCE_DOWN"

// InternalError is the error of a task that taskgate itself could not run:
// a panic while running it, or more than MaxRescues rescues. Its message
// is InternalMessage, which tells the client nothing of the cause; the
// node's log has it.
const InternalError = "INTERNAL_ERROR"

// InternalMessage is the message of a task that failed with InternalError.
const InternalMessage = "the task could not be run"

// failInternal makes t terminal as failed with InternalError. The source's
// answer, if any, is dropped: it may be what could not be handled.
func failInternal(t *Task, now time.Time) {
	t.CompletedAt = &now
	t.Status = Failed
	t.Result = nil
	t.Error, t.Message = ptr(InternalError), ptr(InternalMessage)
}

// applyOutcome makes t terminal according to its source's answer.
func applyOutcome(t *Task, typ *Type, out source.Outcome, now time.Time) {
	t.CompletedAt = &now
	switch out.Kind {
	case source.Completed:
		t.Status = Completed
		t.Result = out.Result
		t.Error, t.Message = nil, nil
	case source.Rejected:
		t.Status = Failed
		t.Result = nil
		code := out.Error
		if code == SourceDown || code == InternalError {
			// taskgate's own codes: a source's answer does not pass for
			// them (a refund, the counts of a source down).
			code = source.DefaultRejectedError
		}
		t.Error, t.Message = ptr(code), ptr(out.Message)
	default:
		t.Status = Failed
		t.Result, _ = json.Marshal(map[string]any{typ.OutputKey: map[string]string{"status": "source_down"}})
		t.Error, t.Message = ptr(SourceDown), ptr(out.Message)
	}
}

func ptr(s string) *string { return &s }

// maintain rescues tasks whose lease ended (their worker died) and purges
// tasks past retention.
func (r *Runner) maintain(ctx context.Context) {
	rescue := time.NewTicker(5 * time.Second)
	defer rescue.Stop()
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			r.FailOrphans(ctx)
			n, err := r.store.Rescue(ctx, r.now())
			if err != nil && ctx.Err() == nil {
				r.logger.Error("rescuing tasks", zap.Error(err))
			}
			if n > 0 {
				r.logger.Warn("rescued tasks whose lease ended", zap.Int("tasks", n))
				for name := range r.types {
					r.Wake(name)
				}
			}
		case <-purge.C:
			r.PurgeOnce(ctx)
		}
	}
}

// PurgeOnce deletes terminal tasks older than the retention, in batches.
func (r *Runner) PurgeOnce(ctx context.Context) {
	if r.Retention <= 0 {
		return
	}
	now := r.now()
	for ctx.Err() == nil {
		n, err := r.store.Purge(ctx, now.Add(-r.Retention), now.Add(-IdempotencyTTL), 1000)
		if err != nil {
			r.logger.Error("purging tasks", zap.Error(err))
			return
		}
		if n < 1000 {
			return
		}
	}
}
