// Package node tells which taskgate nodes are up and how busy each is.
// Every node keeps a State of itself, its live rates worked out from its
// usage meter every Interval; when nodes share a store, each writes its
// State there (a beat), and any node lists them all.
package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/internal/buildinfo"
)

// Timings of the beats.
const (
	// Interval is how often a node works out its rates and beats.
	Interval = 2 * time.Second
	// UpWithin: a node whose last beat is older than this is not up.
	UpWithin = 3 * Interval
	// ForgetAfter: a node silent this long is no longer listed.
	ForgetAfter = 10 * time.Minute
)

// State is a node as the others see it.
type State struct {
	// ID names the node for as long as its process runs: its host name,
	// its process id and a random part.
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	PID      int    `json:"pid"`
	Version  string `json:"version"`
	// TaskTypes are the task types the node runs, by name; nil from a
	// node of a release before, or one that has not loaded its config
	// yet, which may run any.
	TaskTypes []string  `json:"task_types"`
	Started   time.Time `json:"started_at"`
	Seen      time.Time `json:"seen_at"`
	// Up tells whether the node beat within UpWithin; set when listed.
	Up bool `json:"up"`
	// Self marks the node that answers; set when listed.
	Self bool `json:"self"`
	// The rates are per second over the last Interval.
	Requests float64 `json:"requests_per_second"`
	Created  float64 `json:"tasks_created_per_second"`
	Ended    float64 `json:"tasks_ended_per_second"`
	// Totals are what the node counted since it started.
	Totals usage.Totals `json:"totals"`
}

// Beats keeps the nodes' states where every node reads them (a shared
// store). The store keeps each node's last state, as given, by id, and
// when it got it by its own clock: whether a node is up is decided on
// one clock, whatever the nodes' clocks say.
type Beats interface {
	// NodeBeat stores the node's state, stamped with the store's time.
	NodeBeat(ctx context.Context, id string, state []byte) error
	// NodeStates returns every node's last beat, by id, and the store's
	// time now.
	NodeStates(ctx context.Context) (beats map[string]Beat, now time.Time, err error)
	// NodeForget deletes the nodes' beats.
	NodeForget(ctx context.Context, ids ...string) error
}

// Beat is a node's last state as a store keeps it.
type Beat struct {
	State []byte
	// At is when the store got it, by the store's clock.
	At time.Time
}

// Config is what New needs.
type Config struct {
	// Totals reads what the node counted so far (the usage meter's).
	Totals func() usage.Totals
	// Beats, when set, is where the nodes beat: a shared store. Nil: this
	// node is alone.
	Beats Beats
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
	// OnError is told when beats start failing (once, until one works
	// again) and of a listing's trouble forgetting silent nodes; nil
	// ignores them.
	OnError func(error)
}

// Presence is this node's state, kept current by Run.
type Presence struct {
	cfg Config

	mu   sync.Mutex
	self State
	last usage.Totals
	// at is when last was read, with the clock's monotonic reading when
	// it gives one (time.Now does), so that a step of the wall clock does
	// not skew the rates.
	at      time.Time
	failing bool // the last beat failed
}

// New returns the presence of this node.
func New(cfg Config) *Presence {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	at := cfg.Clock()
	now := at.UTC()
	host, _ := os.Hostname()
	p := &Presence{cfg: cfg, at: at}
	p.self = State{
		ID:       fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:8]),
		Hostname: host,
		PID:      os.Getpid(),
		Version:  buildinfo.Version(),
		Started:  now,
		Seen:     now,
	}
	if cfg.Totals != nil {
		p.last = cfg.Totals()
	}
	return p
}

// Run updates the node's state and beats every Interval until ctx ends.
func (p *Presence) Run(ctx context.Context) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	p.Beat(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Beat(ctx)
		}
	}
}

// Beat works out the node's rates since the last beat and, with a shared
// store, writes its state there.
func (p *Presence) Beat(ctx context.Context) {
	st := p.update()
	if p.cfg.Beats == nil {
		return
	}
	b, err := json.Marshal(st)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, Interval)
		err = p.cfg.Beats.NodeBeat(ctx, st.ID, b)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	first := err != nil && !p.failing
	p.failing = err != nil
	p.mu.Unlock()
	// Once per outage: a store that is down says so elsewhere too.
	if first && p.cfg.OnError != nil {
		p.cfg.OnError(fmt.Errorf("node beat (the other nodes see this one as silent until a beat works): %w", err))
	}
}

func (p *Presence) update() State {
	at := p.cfg.Clock()
	now := at.UTC()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Totals != nil {
		cur := p.cfg.Totals()
		if secs := at.Sub(p.at).Seconds(); secs > 0 {
			p.self.Requests = float64(cur.Requests-p.last.Requests) / secs
			p.self.Created = float64(cur.Created-p.last.Created) / secs
			p.self.Ended = float64(cur.Ended-p.last.Ended) / secs
		}
		p.self.Totals, p.last = cur, cur
	}
	p.at, p.self.Seen = at, now
	return p.self
}

// SetTaskTypes sets the task types the node runs (its config's), told in
// its next beats; none is an empty list, not nil.
func (p *Presence) SetTaskTypes(names []string) {
	names = append(make([]string, 0, len(names)), names...)
	slices.Sort(names)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.self.TaskTypes = names
}

// RunElsewhere tells which task types another node runs, from the nodes'
// last beats: a node silent for less than ForgetAfter counts (it may be
// restarting), a node that does not say (of a release before) may run
// any, and so may any node when the beats cannot be read.
func (p *Presence) RunElsewhere(ctx context.Context) func(typeName string) bool {
	list, err := p.List(ctx)
	if err != nil {
		return func(string) bool { return true }
	}
	return func(typeName string) bool {
		for _, st := range list[1:] {
			if st.TaskTypes == nil || slices.Contains(st.TaskTypes, typeName) {
				return true
			}
		}
		return false
	}
}

// Leave deletes this node's beat from the shared store, as it stops: the
// others no longer count it (RunElsewhere) for the 10 minutes its beat
// would have stayed.
func (p *Presence) Leave(ctx context.Context) error {
	if p.cfg.Beats == nil {
		return nil
	}
	return p.cfg.Beats.NodeForget(ctx, p.Self().ID)
}

// Self returns this node's state as of its last beat.
func (p *Presence) Self() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.self
	st.Up, st.Self = true, true
	return st
}

// List returns the nodes, this one first, then by id: with a shared
// store, every node that beat within ForgetAfter (and it forgets the
// older ones); otherwise this node alone.
func (p *Presence) List(ctx context.Context) ([]State, error) {
	self := p.Self()
	if p.cfg.Beats == nil {
		return []State{self}, nil
	}
	beats, now, err := p.cfg.Beats.NodeStates(ctx)
	if err != nil {
		return nil, err
	}
	list := []State{self}
	var gone []string
	for id, b := range beats {
		if id == self.ID {
			continue
		}
		var st State
		if json.Unmarshal(b.State, &st) != nil || now.Sub(b.At) > ForgetAfter {
			gone = append(gone, id)
			continue
		}
		// Seen is the store's time of the beat: it and now are of one
		// clock.
		st.ID, st.Seen, st.Up = id, b.At.UTC(), now.Sub(b.At) <= UpWithin
		list = append(list, st)
	}
	slices.SortFunc(list[1:], func(a, b State) int { return strings.Compare(a.ID, b.ID) })
	if len(gone) > 0 {
		if err := p.cfg.Beats.NodeForget(ctx, gone...); err != nil && p.cfg.OnError != nil {
			p.cfg.OnError(fmt.Errorf("forgetting silent nodes: %w", err))
		}
	}
	return list, nil
}
