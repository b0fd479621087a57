package redis

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestOpenMovesQueues checks that tasks queued by a node of the layout
// before queues by account (one sorted set per type) are taken over: at
// Open, and by Rescue for those queued after it, while such nodes still
// run.
func TestOpenMovesQueues(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("migrate"))
	const typeName = "verify_with_source/ind_pan"
	at := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	create := func(id, accountID string) {
		t.Helper()
		tk := &task.Task{RequestID: id, AccountID: accountID, Action: "verify_with_source", Type: "ind_pan",
			Status: task.InProgress, CreatedAt: at}
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// legacy moves every queued task into the old layout, as a node of it
	// would have queued them, and drops the format marker, which such
	// nodes did not write.
	legacy := func() {
		t.Helper()
		for _, acct := range []string{"acme", "globex"} {
			zs, err := s.rdb.ZRangeWithScores(ctx, s.shards[0].accountQueueKey(typeName, acct), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				if err := s.rdb.ZAdd(ctx, s.shards[0].legacyQueueKey(typeName), goredis.Z{Score: z.Score, Member: z.Member}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.rdb.Del(ctx, s.shards[0].accountQueueKey(typeName, acct)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.rdb.Del(ctx, s.shards[0].ringKey(typeName), s.shards[0].depthKey(), s.formatKey()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	claimIDs := func(n int) []string {
		t.Helper()
		got, err := s.Claim(ctx, typeName, n, at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tk := range got {
			ids = append(ids, tk.RequestID)
		}
		return ids
	}

	for _, id := range []string{"a1", "a2", "a3"} {
		create(id, "acme")
	}
	create("b1", "globex")
	legacy()
	openTest(t, srv.URL(), WithPrefix("migrate")).Close()
	if n, err := s.QueueDepth(ctx, typeName); err != nil || n != 4 {
		t.Errorf("QueueDepth after Open = %d, %v; want 4", n, err)
	}
	if got, want := claimIDs(2), []string{"a1", "b1"}; !slices.Equal(got, want) {
		t.Errorf("claimed %v after Open, want %v", got, want)
	}

	create("b2", "globex")
	legacy()
	// Queued by the old layout and not moved yet, the type is still one
	// with queued tasks.
	if types, err := s.QueuedTypes(ctx); err != nil || !slices.Contains(types, typeName) {
		t.Errorf("QueuedTypes = %v, %v; want %s among them", types, err, typeName)
	}
	if _, err := s.Rescue(ctx, at); err != nil {
		t.Fatal(err)
	}
	if got, want := claimIDs(10), []string{"a2", "b2", "a3"}; !slices.Equal(got, want) {
		t.Errorf("claimed %v after Rescue, want %v", got, want)
	}
	if n, err := s.rdb.Exists(ctx, s.shards[0].legacyQueueKey(typeName)).Result(); err != nil || n != 0 {
		t.Errorf("the old queue is still there: %d, %v", n, err)
	}
}

// TestOpenChecksFormat checks the layout marker: a first Open records it,
// a later one accepts it, and a Redis whose keys record another layout is
// refused with ErrFormat rather than misread.
func TestOpenChecksFormat(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("format"))
	if got, err := s.rdb.Get(ctx, s.formatKey()).Result(); err != nil || got != formatVersion {
		t.Fatalf("format after the first Open = %q, %v; want %q", got, err, formatVersion)
	}
	openTest(t, srv.URL(), WithPrefix("format")).Close()

	if err := s.rdb.Set(ctx, s.formatKey(), "taskgate-redis-9", 0).Err(); err != nil {
		t.Fatal(err)
	}
	refused, err := Open(ctx, srv.URL(), WithPrefix("format"))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "taskgate-redis-9") {
		if refused != nil {
			refused.Close()
		}
		t.Fatalf("Open of another layout: %v, want ErrFormat naming it", err)
	}
}

// TestEndedTaskLeftQueued checks what becomes of a task ended while it was
// queued or leased without the store's knowing: as a node of the release
// before queues by account could leave one, its Finish ending a task that
// a rescue had queued again in an account's queue. The task is not run
// again: a claim drops it from its queue (and from the depth), and a
// rescue of its lease does not queue it.
func TestEndedTaskLeftQueued(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("ended"))
	sh := s.shards[0]
	const typeName = "verify_with_source/ind_pan"
	at := time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
	// end stores an end as that node's Finish did, leaving the task
	// where it is.
	end := func(id string) {
		t.Helper()
		if err := s.rdb.HSet(ctx, sh.taskKey(id), "end", `{"status":"completed","completed_at":"2030-03-04T05:06:08Z","result":{},"error":null,"message":null}`).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"req-queued", "req-leased", "req-next"} {
		tk := &task.Task{RequestID: id, AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
			Status: task.InProgress, CreatedAt: at}
		if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}

	// Queued, then ended: the claim passes over it to the next.
	end("req-queued")
	got, err := s.Claim(ctx, typeName, 1, time.Now().Add(time.Hour))
	if err != nil || len(got) != 1 || got[0].RequestID != "req-leased" {
		t.Fatalf("Claim = %v, %v; want req-leased alone", got, err)
	}
	// Leased, then ended: its lease runs out, and a rescue does not queue
	// it again.
	end("req-leased")
	if err := s.ExtendLeases(ctx, []task.Claim{{RequestID: "req-leased", Attempts: 1}}, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Rescue(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Rescue = %d, %v; want 0: the task whose lease ran out had ended", n, err)
	}
	got, err = s.Claim(ctx, typeName, 10, time.Now().Add(time.Hour))
	if err != nil || len(got) != 1 || got[0].RequestID != "req-next" {
		t.Fatalf("Claim = %v, %v; want req-next alone", got, err)
	}
	if depth, err := s.rdb.HGet(ctx, sh.depthKey(), typeName).Result(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("the type's depth with nothing queued = %q, %v; want none", depth, err)
	}
	if n, err := s.rdb.ZCard(ctx, sh.taskLeasesKey()).Result(); err != nil || n != 1 {
		t.Fatalf("leases = %d, %v; want 1 (req-next's)", n, err)
	}
	for _, id := range []string{"req-queued", "req-leased"} {
		tk, err := s.Get(ctx, "acme", id)
		if err != nil || tk.Status != task.Completed {
			t.Fatalf("Get(%s) = %+v, %v; want it completed", id, tk, err)
		}
	}
}
