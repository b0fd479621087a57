// Package maintenance holds the planned downtime of sources: windows the
// operator schedules (through the admin API or the CLI), during which a
// task type's tasks fail at once as SOURCE_DOWN with the window's message,
// as a source that is down would fail them, and /v3/status says
// "maintenance".
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/clock"
)

// Window is one planned downtime of a task type's source.
type Window struct {
	// ID names the window in the admin API.
	ID string `json:"id"`
	// TaskType is the "action/type" whose source is down.
	TaskType string `json:"task_type"`
	// From and Until bound the window: from included, until excluded.
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
	// Message is the tasks' message during the window (and /v3/status's).
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

// MaxMessage bounds a window's message, in bytes.
const MaxMessage = 500

// ErrNotFound: no window has the id.
var ErrNotFound = errors.New("maintenance window not found")

// Validate checks the window's own fields: an order of times, a message.
func (w *Window) Validate() error {
	switch {
	case w.ID == "" || w.TaskType == "":
		return errors.New("a window needs an id and a task type")
	case !w.Until.After(w.From):
		return errors.New("until must be after from")
	case w.From.UTC().Year() < 1 || w.Until.UTC().Year() > 9999:
		// JSON (RFC 3339) cannot write a time outside these years.
		return errors.New("from and until must fall within the years 0001 to 9999, in UTC")
	case w.Message == "" || len(w.Message) > MaxMessage || !utf8.ValidString(w.Message) ||
		strings.ContainsFunc(w.Message, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("message: 1 to %d bytes of text, no control characters", MaxMessage)
	}
	return nil
}

// Active tells whether the window is in force at now.
func (w *Window) Active(now time.Time) bool { return !now.Before(w.From) && now.Before(w.Until) }

// Store keeps the windows durably, shared by the nodes that share it.
// Every implementation passes the suite of package maintenancetest.
type Store interface {
	// MaintenanceCreate stores a new window.
	MaintenanceCreate(ctx context.Context, w *Window) error
	// MaintenanceDelete removes the window with the id, or ErrNotFound.
	MaintenanceDelete(ctx context.Context, id string) error
	// MaintenanceList returns every window, by id; empty, not nil, when
	// none.
	MaintenanceList(ctx context.Context) ([]*Window, error)
}

// Schedule is the windows as the runner and /v3/status read them: a
// snapshot of the store, taken at Load, after each change made through it,
// and every Refresh while Run runs (so changes made on other nodes arrive
// within that). Reads take no lock.
type Schedule struct {
	store   Store
	clock   clock.Clock
	windows atomic.Pointer[[]*Window]
	mu      sync.Mutex // orders the loads
}

// ScheduleConfig is what a Schedule is made of.
type ScheduleConfig struct {
	Store Store
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
}

// NewSchedule returns an empty schedule of the store; Load fills it.
func NewSchedule(c ScheduleConfig) *Schedule {
	s := &Schedule{store: c.Store, clock: c.Clock}
	s.windows.Store(&[]*Window{})
	return s
}

// Retention is how long a window is kept after it ended.
const Retention = 7 * 24 * time.Hour

// Load reads the windows again from the store.
func (s *Schedule) Load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, err := s.store.MaintenanceList(ctx)
	if err != nil {
		return err
	}
	s.windows.Store(&ws)
	return nil
}

// Run reloads the schedule every refresh, and deletes the windows that
// ended more than Retention ago, until ctx ends.
func (s *Schedule) Run(ctx context.Context, refresh time.Duration, logger *zap.Logger) {
	if logger == nil {
		logger = zap.NewNop()
	}
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Load(ctx); err != nil {
			if ctx.Err() == nil {
				logger.Warn("reading maintenance windows; the last ones read stay in force", zap.Error(err))
			}
			continue
		}
		for _, w := range s.List() {
			if s.clock.Now().Sub(w.Until) > Retention {
				if err := s.store.MaintenanceDelete(ctx, w.ID); err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
					logger.Warn("deleting an old maintenance window", zap.String("id", w.ID), zap.Error(err))
				}
			}
		}
	}
}

// Create stores a new window and puts it in force here at once.
func (s *Schedule) Create(ctx context.Context, w *Window) error {
	if err := w.Validate(); err != nil {
		return err
	}
	if err := s.store.MaintenanceCreate(ctx, w); err != nil {
		return err
	}
	// Stored is done: a failed read here is made up for by the next
	// refresh, and must not make a caller retry (and store it twice).
	_ = s.Load(ctx)
	return nil
}

// Delete removes a window, here at once.
func (s *Schedule) Delete(ctx context.Context, id string) error {
	if err := s.store.MaintenanceDelete(ctx, id); err != nil {
		return err
	}
	_ = s.Load(ctx) // as in Create
	return nil
}

// List returns the windows read last, by start.
func (s *Schedule) List() []*Window {
	ws := slices.Clone(*s.windows.Load())
	slices.SortFunc(ws, func(a, b *Window) int {
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ws
}

// Active returns the window in force for the task type at now, if any (the
// one ending last, when several are).
func (s *Schedule) Active(taskType string, now time.Time) (*Window, bool) {
	var found *Window
	for _, w := range *s.windows.Load() {
		if w.TaskType == taskType && w.Active(now) && (found == nil || w.Until.After(found.Until)) {
			found = w
		}
	}
	return found, found != nil
}
