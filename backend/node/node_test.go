package node

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/usage"
)

// beats keeps the states in memory, as a shared store would, stamped by
// the store's clock.
type beats struct {
	clock  func() time.Time
	mu     sync.Mutex
	states map[string]Beat
}

func (b *beats) NodeBeat(_ context.Context, id string, state []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.states == nil {
		b.states = map[string]Beat{}
	}
	b.states[id] = Beat{State: state, At: b.clock()}
	return nil
}

func (b *beats) NodeStates(context.Context) (map[string]Beat, time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.states), b.clock(), nil
}

func (b *beats) NodeForget(_ context.Context, ids ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		delete(b.states, id)
	}
	return nil
}

func TestPresenceListsNodesAndTheirRates(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	shared := &beats{clock: clock}
	var totals usage.Totals
	a := New(Config{Beats: shared, Clock: clock, Totals: func() usage.Totals { return totals }})
	b := New(Config{Beats: shared, Clock: clock})
	a.Beat(ctx)
	b.Beat(ctx)

	totals = usage.Totals{Requests: 400, Created: 100, Ended: 50}
	now = now.Add(Interval)
	a.Beat(ctx)
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !list[0].Self || list[0].ID != b.Self().ID || list[1].ID != a.Self().ID {
		t.Fatalf("b lists %+v, want itself then a", list)
	}
	if got := list[1]; !got.Up || got.Self || got.Requests != 200 || got.Created != 50 || got.Ended != 25 || got.Totals != totals {
		t.Errorf("a as b sees it: %+v, want up at 200 requests/s, 50 created/s, 25 ended/s", got)
	}

	// a stops beating: first it is down, then it is forgotten.
	now = now.Add(UpWithin + time.Second)
	if list, _ = b.List(ctx); len(list) != 2 || list[1].Up {
		t.Errorf("after %v of silence: %+v, want a listed, not up", UpWithin, list)
	}
	now = now.Add(ForgetAfter)
	if list, _ = b.List(ctx); len(list) != 1 {
		t.Errorf("after %v of silence: %+v, want b alone", ForgetAfter, list)
	}
	if _, ok := shared.states[a.Self().ID]; ok {
		t.Error("a's state is still stored")
	}
}

func TestPresenceAloneListsItself(t *testing.T) {
	p := New(Config{})
	list, err := p.List(context.Background())
	if err != nil || len(list) != 1 || !list[0].Self || !list[0].Up || list[0].PID == 0 {
		t.Fatalf("List() = %+v, %v; want this node alone", list, err)
	}
}

// pair returns two nodes beating to one shared store, on a clock the test
// moves by now.
func pair() (a, b *Presence, now *time.Time) {
	now = new(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	clock := func() time.Time { return *now }
	shared := &beats{clock: clock}
	return New(Config{Beats: shared, Clock: clock}), New(Config{Beats: shared, Clock: clock}), now
}

// TestRunElsewhere: a node learns from the others' beats which task types
// they run. One that has not said (a release before, or before its config
// loads) may run any; one that runs none says so; one silent for less than
// ForgetAfter still counts, and one silent for longer does not.
func TestRunElsewhere(t *testing.T) {
	ctx := context.Background()
	self, other, now := pair()
	self.SetTaskTypes([]string{"a/mine"})
	self.Beat(ctx)

	other.Beat(ctx)
	if !self.RunElsewhere(ctx)("x/any") {
		t.Error("a node that has not said which types it runs does not count as running any")
	}
	other.SetTaskTypes([]string{"b/kept"})
	other.Beat(ctx)
	runs := self.RunElsewhere(ctx)
	if !runs("b/kept") || runs("a/mine") || runs("c/gone") {
		t.Errorf("runs b/kept %v, a/mine %v, c/gone %v; want true, false, false", runs("b/kept"), runs("a/mine"), runs("c/gone"))
	}
	other.SetTaskTypes(nil)
	other.Beat(ctx)
	if self.RunElsewhere(ctx)("b/kept") {
		t.Error("a node that runs no type counts as running one")
	}
	other.SetTaskTypes([]string{"b/kept"})
	other.Beat(ctx)
	*now = now.Add(ForgetAfter)
	if !self.RunElsewhere(ctx)("b/kept") {
		t.Error("a node silent for ForgetAfter no longer counts")
	}
	*now = now.Add(time.Second)
	if self.RunElsewhere(ctx)("b/kept") {
		t.Error("a node silent for longer than ForgetAfter still counts")
	}
}

// TestLeave: a node that stops takes its beat out of the store, and the
// others no longer count it, nor the types it ran.
func TestLeave(t *testing.T) {
	ctx := context.Background()
	staying, leaving, now := pair()
	staying.SetTaskTypes(nil)
	leaving.SetTaskTypes([]string{"b/gone"})
	staying.Beat(ctx)
	leaving.Beat(ctx)
	if !staying.RunElsewhere(ctx)("b/gone") {
		t.Fatal("a node's type is not counted while it beats")
	}
	if err := leaving.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := staying.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List after the other left = %+v, %v; want this node alone", list, err)
	}
	if staying.RunElsewhere(ctx)("b/gone") {
		t.Error("the type of a node that left is still counted")
	}
	if err := New(Config{Clock: func() time.Time { return *now }}).Leave(ctx); err != nil {
		t.Errorf("Leave of a node alone: %v", err)
	}
}
