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
