package tasktest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
)

// testClaimTakesTurns checks that the accounts with queued tasks of a type
// take turns, each served its oldest task, in the order they came to
// have queued tasks.
func testClaimTakesTurns(t *testing.T, s task.Store) {
	accountA, accountB, accountC, _ := peers(s)
	lease := base.Add(time.Hour)
	var a, b, c []*task.Task
	for i := range 4 {
		a = append(a, newTask(accountA, typePAN, base.Add(time.Duration(i)*time.Second)))
	}
	for i := range 2 {
		b = append(b, newTask(accountB, typePAN, base.Add(time.Duration(i)*time.Second)))
	}
	c = append(c, newTask(accountC, typePAN, base))
	mustCreate(t, s, a...)
	mustCreate(t, s, b...)
	mustCreate(t, s, c...)
	wantDepth(t, s, typePAN, 7)

	wantIDs(t, "first turn", claim(t, s, typePAN, 1, lease), a[0])
	wantIDs(t, "the next turns", claim(t, s, typePAN, 4, lease), b[0], c[0], a[1], b[1])
	wantIDs(t, "the one account left", claim(t, s, typePAN, 10, lease), a[2], a[3])
	wantDepth(t, s, typePAN, 0)
}

// testClaimLightBehindHeavy checks the promise of fair queues: a task of
// an account that had nothing queued waits for at most one task of each
// account ahead of it, however deep their backlogs.
func testClaimLightBehindHeavy(t *testing.T, s task.Store) {
	accountA, accountB, _, _ := peers(s)
	lease := base.Add(time.Hour)
	for i := range 200 {
		mustCreate(t, s, newTask(accountA, typePAN, base.Add(time.Duration(i)*time.Millisecond)))
	}
	if got := claim(t, s, typePAN, 10, lease); len(got) != 10 {
		t.Fatalf("claimed %d of the backlog, want 10", len(got))
	}
	light := newTask(accountB, typePAN, base.Add(time.Hour))
	mustCreate(t, s, light)
	got := claim(t, s, typePAN, 2, lease)
	if len(got) != 2 || got[0].AccountID != accountA || got[1].RequestID != light.RequestID {
		t.Fatalf("claim behind a backlog of 190 returned %v, want one of the backlog, then %s", ids(got), light.RequestID)
	}
	wantDepth(t, s, typePAN, 189)
}

// testReleaseKeepsTurns checks where released, rescued and finished tasks
// leave the turns: a task given back regains its place in its account's
// queue, and an account that had nothing left queued joins the back.
func testReleaseKeepsTurns(t *testing.T, s task.Store) {
	accountA, accountB, accountC, _ := peers(s)
	ctx := t.Context()
	lease := base.Add(time.Hour)
	a1, a2 := newTask(accountA, typePAN, base), newTask(accountA, typePAN, base.Add(time.Second))
	b1, c1 := newTask(accountB, typePAN, base), newTask(accountC, typePAN, base)
	mustCreate(t, s, a1, a2, b1, c1)

	// a1 is given back while a2 keeps A in the ring: A's turn stays where
	// it is (behind B and C, having just been served) and a1 is again A's
	// oldest.
	got := claim(t, s, typePAN, 1, lease)
	wantIDs(t, "claim", got, a1)
	if err := s.Release(ctx, got); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "after a release", claim(t, s, typePAN, 2, lease), b1, c1)
	// B and C have nothing queued and leave the ring; A is served both.
	wantIDs(t, "A's tasks", claim(t, s, typePAN, 2, base.Add(time.Minute)), a1, a2)

	// Rescued tasks bring back an account that had left the ring, at the
	// back.
	b2 := newTask(accountB, typePAN, base.Add(time.Second))
	mustCreate(t, s, b2)
	if n, err := s.Rescue(ctx, base.Add(2*time.Minute)); err != nil || n != 2 {
		t.Fatalf("Rescue = %d, %v; want 2", n, err)
	}
	wantDepth(t, s, typePAN, 3)
	wantIDs(t, "after a rescue", claim(t, s, typePAN, 3, lease), b2, a1, a2)

	// A queued task that is finished (its worker was presumed dead)
	// leaves its account's queue; the account keeps its turn.
	c2, c3 := newTask(accountC, typePAN, base), newTask(accountC, typePAN, base)
	a3 := newTask(accountA, typePAN, base)
	mustCreate(t, s, c2, a3, c3)
	wantIDs(t, "claim", claim(t, s, typePAN, 1, base.Add(3*time.Minute)), c2)
	if n, err := s.Rescue(ctx, base.Add(4*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v; want 1", n, err)
	}
	end := finished(c2, task.Completed, base.Add(5*time.Minute))
	end.Attempts = 1
	mustFinish(t, s, end)
	wantIDs(t, "after finishing a rescued task", claim(t, s, typePAN, 3, lease), a3, c3)
	wantDepth(t, s, typePAN, 0)
}

// Sharded is a store that spreads accounts over shards, each with turns
// of its own: the accounts of a shard take turns as task.Store.Claim says,
// and the shards take turns at each claim. The suite checks the turns of
// accounts that share a shard, and that every shard is served in turn.
type Sharded interface {
	Shards() int
	ShardOf(accountID string) int
}

// peers returns four accounts that take turns in one ring of s:
// accountA, accountB, accountC and "acme.us", or, on a store of shards,
// accountA and accounts of its shard.
func peers(s task.Store) (a, b, c, d string) {
	sh, ok := s.(Sharded)
	if !ok || sh.Shards() < 2 {
		return accountA, accountB, accountC, "acme.us"
	}
	out := []string{accountA}
	for i := 0; len(out) < 4; i++ {
		if id := fmt.Sprintf("%s.%d", accountA, i); sh.ShardOf(id) == sh.ShardOf(accountA) {
			out = append(out, id)
		}
	}
	return out[0], out[1], out[2], out[3]
}

// testShardsTakeTurns checks, on a store of shards, that a claim serves
// the shards in turn: behind one account's backlog, the task of an
// account of each other shard is claimed within as many claims of one
// task as there are shards.
func testShardsTakeTurns(t *testing.T, s task.Store) {
	sh, ok := s.(Sharded)
	if !ok || sh.Shards() < 2 {
		t.Skip("a store of one ring")
	}
	lease := base.Add(time.Hour)
	for i := range 50 {
		mustCreate(t, s, newTask(accountA, typePAN, base.Add(time.Duration(i)*time.Millisecond)))
	}
	light := map[string]bool{}
	seen := map[int]bool{sh.ShardOf(accountA): true}
	for i := 0; len(seen) < sh.Shards(); i++ {
		id := fmt.Sprintf("light.%d", i)
		if !seen[sh.ShardOf(id)] {
			seen[sh.ShardOf(id)] = true
			tk := newTask(id, typePAN, base.Add(time.Hour))
			mustCreate(t, s, tk)
			light[tk.RequestID] = true
		}
	}
	for range sh.Shards() {
		for _, tk := range claim(t, s, typePAN, 1, lease) {
			delete(light, tk.RequestID)
		}
	}
	if len(light) > 0 {
		t.Fatalf("after %d claims of one task, the tasks of other shards %v are still queued", sh.Shards(), light)
	}
	wantDepth(t, s, typePAN, 50-1)
}

// testClaimModel runs random creations, claims, releases, rescues and
// finishes over a few accounts and two types against a model of the turns
// written from the contract, and checks every claim against it.
func testClaimModel(t *testing.T, s task.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(13, 1))
	a, b, c, d := peers(s)
	accounts := []string{a, b, c, d}
	types := []string{typePAN, typeGST}
	m := newTurnModel()
	leased := map[string]*task.Task{} // by request id, with its lease end
	leaseOf := map[string]time.Time{}
	now := base
	for step := range 600 {
		now = now.Add(time.Second)
		typ := types[rng.IntN(len(types))]
		switch op := rng.IntN(10); {
		case op < 4:
			tk := newTask(accounts[rng.IntN(len(accounts))], typ, now)
			mustCreate(t, s, tk)
			m.push(typ, tk)
		case op < 7:
			n := 1 + rng.IntN(3)
			until := now.Add(time.Duration(1+rng.IntN(30)) * time.Second)
			got := claim(t, s, typ, n, until)
			want := m.pop(typ, n)
			if !slices.Equal(ids(got), ids(want)) {
				t.Fatalf("step %d: Claim(%s, %d) = %v, want %v", step, typ, n, ids(got), ids(want))
			}
			for _, tk := range got {
				leased[tk.RequestID], leaseOf[tk.RequestID] = tk, until
			}
		case op < 8:
			back := pick(rng, leased, 2)
			if err := s.Release(ctx, back); err != nil {
				t.Fatalf("step %d: Release: %v", step, err)
			}
			for _, tk := range back {
				delete(leased, tk.RequestID)
				m.push(tk.TypeName(), tk)
			}
		case op < 9:
			var expired []*task.Task
			for id, tk := range leased {
				if leaseOf[id].Before(now) {
					expired = append(expired, tk)
				}
			}
			// The contract queues them again in lease order.
			slices.SortFunc(expired, func(x, y *task.Task) int {
				if c := leaseOf[x.RequestID].Compare(leaseOf[y.RequestID]); c != 0 {
					return c
				}
				return strings.Compare(x.RequestID, y.RequestID)
			})
			n, err := s.Rescue(ctx, now)
			if err != nil || n != len(expired) {
				t.Fatalf("step %d: Rescue = %d, %v; want %d", step, n, err, len(expired))
			}
			for _, tk := range expired {
				delete(leased, tk.RequestID)
				m.push(tk.TypeName(), tk)
			}
		default:
			for _, tk := range pick(rng, leased, 1) {
				delete(leased, tk.RequestID)
				end := finished(tk, task.Completed, now)
				mustFinish(t, s, end)
			}
		}
		for _, typ := range types {
			wantDepth(t, s, typ, m.depth(typ))
		}
	}
}

// turnModel is the contract's queue, written plainly: per type, the
// accounts in the order of their turns and each account's tasks oldest
// first (by the order they were first created).
type turnModel struct {
	ring  map[string][]string                // type → accounts
	queue map[string]map[string][]*task.Task // type → account → tasks
	order map[string]int                     // request id → creation order
}

func newTurnModel() *turnModel {
	return &turnModel{ring: map[string][]string{}, queue: map[string]map[string][]*task.Task{}, order: map[string]int{}}
}

func (m *turnModel) push(typ string, tk *task.Task) {
	if _, ok := m.order[tk.RequestID]; !ok {
		m.order[tk.RequestID] = len(m.order)
	}
	if m.queue[typ] == nil {
		m.queue[typ] = map[string][]*task.Task{}
	}
	q := m.queue[typ][tk.AccountID]
	if len(q) == 0 {
		m.ring[typ] = append(m.ring[typ], tk.AccountID)
	}
	i, _ := slices.BinarySearchFunc(q, tk, func(x, y *task.Task) int { return m.order[x.RequestID] - m.order[y.RequestID] })
	m.queue[typ][tk.AccountID] = slices.Insert(q, i, tk)
}

func (m *turnModel) pop(typ string, n int) []*task.Task {
	var out []*task.Task
	for len(out) < n && len(m.ring[typ]) > 0 {
		acct := m.ring[typ][0]
		m.ring[typ] = m.ring[typ][1:]
		q := m.queue[typ][acct]
		out = append(out, q[0])
		m.queue[typ][acct] = q[1:]
		if len(q) > 1 {
			m.ring[typ] = append(m.ring[typ], acct)
		}
	}
	return out
}

func (m *turnModel) depth(typ string) int {
	n := 0
	for _, q := range m.queue[typ] {
		n += len(q)
	}
	return n
}

// pick takes up to n tasks out of set, in request id order so that a run
// is reproducible.
func pick(rng *rand.Rand, set map[string]*task.Task, n int) []*task.Task {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*task.Task
	for len(out) < n && len(keys) > 0 {
		i := rng.IntN(len(keys))
		out = append(out, set[keys[i]])
		keys = slices.Delete(keys, i, i+1)
	}
	return out
}

func ids(tasks []*task.Task) []string {
	out := make([]string, len(tasks))
	for i, tk := range tasks {
		out[i] = tk.RequestID
	}
	return out
}

// testRescuesCounted checks that Rescue counts the rescues of a task, and
// Release does not: a run cut short by its node, not one given back.
func testRescuesCounted(t *testing.T, s task.Store) {
	ctx := t.Context()
	tk := newTask(accountA, typePAN, base)
	mustCreate(t, s, tk)
	for i := range 2 {
		got := claim(t, s, typePAN, 1, base.Add(time.Minute))
		if len(got) != 1 || got[0].Rescues != 0 {
			t.Fatalf("claim %d: %v, want the task with no rescue", i, got)
		}
		if err := s.Release(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	for want := 1; want <= 2; want++ {
		claim(t, s, typePAN, 1, base.Add(time.Minute))
		if n, err := s.Rescue(ctx, base.Add(2*time.Minute)); err != nil || n != 1 {
			t.Fatalf("Rescue = %d, %v; want 1", n, err)
		}
		if got := mustGet(t, s, tk); got.Rescues != want || got.Attempts != 2+want {
			t.Fatalf("after %d rescues: Rescues %d, Attempts %d; want %d, %d", want, got.Rescues, got.Attempts, want, 2+want)
		}
	}
	got := claim(t, s, typePAN, 1, base.Add(time.Minute))
	if len(got) != 1 || got[0].Rescues != 2 {
		t.Fatalf("claim after 2 rescues: %v, want Rescues 2", got)
	}
}
