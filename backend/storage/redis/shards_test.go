package redis

import (
	"errors"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/taskgate/taskgate/internal/redistest"
)

// TestSlotOf checks slotOf against slots Redis gives (CLUSTER KEYSLOT):
// CRC16 of "123456789" is 0x31C3, the check value of the XMODEM variant.
func TestSlotOf(t *testing.T) {
	for tag, want := range map[string]int{"123456789": 12739, "foo": 12182, "bar": 5061, "tg": 6364} {
		if got := slotOf(tag); got != want {
			t.Errorf("slotOf(%q) = %d, Redis says %d", tag, got, want)
		}
	}
}

// TestShardTags checks that shard i's tag falls in the i-th of n equal
// ranges of slots, and that one shard is the base tag itself.
func TestShardTags(t *testing.T) {
	if got := shardTags("tg", 1); len(got) != 1 || got[0] != "tg" {
		t.Fatalf("shardTags(tg, 1) = %v, want [tg]", got)
	}
	for _, n := range []int{2, 3, 6, 64, MaxShards} {
		tags := shardTags("tg", n)
		seen := map[string]bool{}
		for i, tag := range tags {
			lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
			if s := slotOf(tag); s < lo || s >= hi || seen[tag] {
				t.Fatalf("%d shards: shard %d is %q in slot %d, want a new tag in [%d, %d)", n, i, tag, s, lo, hi)
			}
			seen[tag] = true
		}
	}
}

// TestOpenChecksShards checks that a deployment's number of shards is
// fixed at its first open, and that a store of the layout before shards
// counts as one shard.
func TestOpenChecksShards(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("sharded"), WithShards(3))
	if got, err := s.rdb.Get(ctx, s.shardsKey()).Result(); err != nil || got != "3" {
		t.Fatalf("shards after the first Open = %q, %v; want 3", got, err)
	}
	openTest(t, srv.URL(), WithPrefix("sharded"), WithShards(3)).Close()
	for _, n := range []int{1, 6} {
		refused, err := Open(ctx, srv.URL(), WithPrefix("sharded"), WithShards(n))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "spread over 3 shards") {
			if refused != nil {
				refused.Close()
			}
			t.Fatalf("Open with %d shards of a store of 3: %v, want ErrFormat naming 3", n, err)
		}
	}

	// A store of one shard from before the record: formatted, no count.
	one := openTest(t, srv.URL(), WithPrefix("single"))
	if err := one.rdb.Del(ctx, one.shardsKey()).Err(); err != nil {
		t.Fatal(err)
	}
	openTest(t, srv.URL(), WithPrefix("single")).Close()
	if refused, err := Open(ctx, srv.URL(), WithPrefix("single"), WithShards(3)); !errors.Is(err, ErrFormat) {
		if refused != nil {
			refused.Close()
		}
		t.Fatalf("Open with 3 shards of a store of one: %v, want ErrFormat", err)
	}
	if _, err := Open(ctx, srv.URL(), WithShards(MaxShards+1)); err == nil || !strings.Contains(err.Error(), "want 1 to") {
		t.Fatalf("Open with %d shards: %v, want it refused", MaxShards+1, err)
	}
}

// TestShardOfIsFNV1a checks that an account's shard is FNV-1a of its id
// modulo the shards, as documented.
func TestShardOfIsFNV1a(t *testing.T) {
	s := &Store{shards: make([]*shard, 7)}
	for _, id := range []string{"", "acme", "acme.eu", "tenant-123", "ünïcode"} {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id))
		if got, want := s.ShardOf(id), int(h.Sum32()%7); got != want {
			t.Errorf("ShardOf(%q) = %d, want %d", id, got, want)
		}
	}
}
