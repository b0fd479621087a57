package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/node"
	"github.com/taskgate/taskgate/backend/storage"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/internal/retry"
)

// Core is what outlives a configuration: the open store, the waiters of
// long polls and sync calls, the dynamic accounts as requests see them, the
// usage meter and, when other nodes share the store, the notices between
// nodes. A config reload builds a new Engine on the same Core, so that the
// bolt file stays open (it has one opener) and waiters keep waiting.
type Core struct {
	// Store keeps tasks, deliveries, dynamic accounts and usage.
	Store storage.Store
	// Hub wakes the waiters of a task when it ends.
	Hub *task.Hub
	// Dynamic is the set of dynamic accounts that requests read.
	Dynamic *account.Dynamic
	// Meter counts usage and writes it every second.
	Meter *usage.Meter
	// Maintenance is the sources' planned downtime.
	Maintenance *maintenance.Schedule
	// Presence is this node's state and, with a shared store, the other
	// nodes'.
	Presence *node.Presence

	opened *storage.Opened
	logger *zap.Logger
	ctx    context.Context
	stop   context.CancelFunc
	done   sync.WaitGroup
}

// The Core's timings.
const (
	// accountsReconcile is how often, with a shared store, every account
	// is read again, in case a change notice was lost.
	accountsReconcile = time.Minute
	// usageFlushInterval is how often usage counts are written: what the
	// usage API reports is about this much behind.
	usageFlushInterval = time.Second
	// usageRetention is how long usage counts are kept: a year and a
	// month, for a year-on-year comparison.
	usageRetention = 400 * 24 * time.Hour
	// maintenanceRefresh is how often the maintenance windows are read
	// again: how long a window set on another node takes to hold here.
	maintenanceRefresh = 2 * time.Second
)

// OpenCore opens the store of cfg (which must have passed Validate) and
// loads the dynamic accounts. With a store of its own (memory, bolt),
// tasks and deliveries leased when it was last closed belonged to a
// process that is gone: they are queued again. A shared store (redis)
// leaves that to the leases: other nodes may hold them.
func OpenCore(ctx context.Context, cfg storage.Config, logger *zap.Logger) (*Core, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	opened, err := storage.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	store := opened.Store
	if r, ok := store.(interface{ Replayed() int }); ok && r.Replayed() > 0 {
		logger.Info("storage: applied the creations its log held, which the last process had acknowledged and not yet stored",
			zap.Int("creations", r.Replayed()))
	}
	if !opened.Shared() {
		everything := time.Now().Add(100 * 365 * 24 * time.Hour)
		if _, err := store.Rescue(ctx, everything); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("queueing interrupted tasks again: %w", err)
		}
		if _, err := store.RescueDeliveries(ctx, everything); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("queueing interrupted deliveries again: %w", err)
		}
	}
	c := &Core{
		Store:   store,
		Hub:     task.NewHub(),
		Dynamic: account.NewDynamic(),
		Meter:   usage.NewMeter(usage.MeterConfig{Store: store}),
		opened:  opened,
		logger:  logger,
	}
	c.Maintenance = maintenance.NewSchedule(maintenance.ScheduleConfig{Store: store})
	if err := c.Maintenance.Load(ctx); err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("loading maintenance windows: %w", err)
	}
	accounts := &account.Sync{Store: store, Dynamic: c.Dynamic, Reconcile: accountsReconcile, Logger: logger}
	if err := accounts.LoadAll(ctx); err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("loading accounts: %w", err)
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	if n := opened.Notices; n != nil {
		c.done.Go(func() {
			err := n.SubscribeTaskEnds(c.ctx, c.Hub.Notify, c.Hub.NotifyAll)
			if err != nil && c.ctx.Err() == nil {
				logger.Error("task end notices stopped", zap.Error(err))
			}
		})
		accounts.Subscribe = n.SubscribeAccountChanges
		c.done.Go(func() { accounts.Run(c.ctx) })
	}
	// Windows set on other nodes arrive within a refresh; the old ones
	// are deleted by whichever node gets there first.
	c.done.Go(func() { c.Maintenance.Run(c.ctx, maintenanceRefresh, logger) })
	presence := node.Config{Totals: c.Meter.Totals, OnError: func(err error) {
		logger.Warn("node presence", zap.Error(err))
	}}
	if n := opened.Notices; n != nil {
		presence.Beats = n
	}
	c.Presence = node.New(presence)
	c.done.Go(func() { c.Presence.Run(c.ctx) })
	c.Meter.Retention = usageRetention
	c.done.Go(func() {
		c.Meter.Run(c.ctx, usageFlushInterval, 5*time.Second, func(err error) {
			logger.Error("writing usage counts", zap.Error(err))
		})
	})
	return c, nil
}

// Shared tells whether other nodes use the store.
func (c *Core) Shared() bool { return c.opened.Shared() }

// AccountChanged tells the other nodes that an account changed, so that
// they reload it. The change is stored already: telling them does not
// depend on the caller staying to the end, and a notice lost is made up
// for by the reload every minute.
func (c *Core) AccountChanged(_ context.Context, id string) {
	n := c.opened.Notices
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	err := retry.Default.Do(ctx, func() error { return n.PublishAccountChange(ctx, id) }, func(error) bool { return false })
	if err != nil {
		c.logger.Error("telling other nodes of an account change; they reload every account within a minute", zap.String("account_id", id), zap.Error(err))
	}
}

// taskEnded tells the other nodes' waiters that a task ended.
func (c *Core) taskEnded(requestID string) {
	n := c.opened.Notices
	if n == nil {
		return
	}
	if err := n.PublishTaskEnd(c.ctx, requestID); err != nil && c.ctx.Err() == nil {
		c.logger.Warn("telling other nodes of a task end; their waiters find it on their next look", zap.String("request_id", requestID), zap.Error(err))
	}
}

// Close stops the Core's goroutines, writing the last usage counts, takes
// the node's beat out of a shared store, and closes the store.
func (c *Core) Close() error {
	c.stop()
	c.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	leaveErr := c.Presence.Leave(ctx)
	cancel()
	if leaveErr != nil {
		c.logger.Warn("taking the node's beat out of the store; the other nodes count it for 10 minutes more", zap.Error(leaveErr))
	}
	return c.Store.Close()
}

// leaveTimeout bounds taking the node's beat out of the store as it stops.
const leaveTimeout = 2 * time.Second
