package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/internal/batch"
)

// Shards.
//
// A Lua script may touch the keys of one Cluster slot only, and a store
// whose keys share one hash tag lives on one master whatever the size of
// the cluster. So the keys of accounts' data (tasks, deliveries,
// idempotency records, usage, quotas and rate limits) are spread over
// shards: each shard is a hash tag of its own, with every index, queue and
// ring of the layout (keys.go) for the accounts it holds, and an account
// lives in one shard, chosen by a hash of its id. What a script changes is
// one account's (a creation, a finish and its outbox, a record), or one
// shard's indexes (a claim, a rescue), so every script still touches one
// slot. What belongs to the deployment (the format, the accounts, the
// maintenance windows, the notices) stays under the base tag.
//
// With one shard (the default), the shard is the base tag itself,
// "{tg}:", the layout of single-instance deployments. With n > 1, shard i
// is "{tg.<i>.<j>}:" for the least j whose tag falls in the i-th of n equal
// ranges of the 16,384 slots: redis-cli --cluster create gives each master
// an equal range, so n shards over m masters, n a multiple of m, put the
// same number of shards on each master.
//
// The number of shards is fixed for a deployment (an account's data never
// moves): the first node to open a Redis records it, and a node given
// another refuses to start.
//
// The calls that are not one account's walk the shards: a claim reads how
// many tasks of the type each shard has queued (one pipeline) and shares
// its n among the shards that have some, taking turns from a start that
// moves at each call, then claims from each in one pipeline. Within a
// shard the accounts take turns as ever; across shards, the shards do.

// MaxShards bounds the number of shards of a store.
const MaxShards = 256

// clusterSlots is the number of hash slots of Redis Cluster.
const clusterSlots = 16384

// shard is one hash tag of the store and what it sends together.
type shard struct {
	// prefix starts each of its keys: "{<tag>}:".
	prefix string
	// creates sends the creations of concurrent calls together.
	creates *batch.Queue[*creation]
}

// key joins the shard's prefix and the parts of a key with ':'.
func (sh *shard) key(parts ...string) string {
	return sh.prefix + strings.Join(parts, ":")
}

// shardTags returns the hash tags of n shards of the store named name.
func shardTags(name string, n int) []string {
	if n == 1 {
		return []string{name}
	}
	tags := make([]string, n)
	for i := range n {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		for j := 0; ; j++ {
			tag := name + "." + strconv.Itoa(i) + "." + strconv.Itoa(j)
			if s := slotOf(tag); s >= lo && s < hi {
				tags[i] = tag
				break
			}
		}
	}
	return tags
}

// slotOf is the Cluster slot of a hash tag: CRC16 (XMODEM) mod 16384.
func slotOf(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// shardOf returns the shard of an account's data (or of a rate-limit key).
func (s *Store) shardOf(accountID string) *shard { return s.shards[s.ShardOf(accountID)] }

// ShardOf returns the number of the shard that holds an account's data:
// FNV-1a of its id, modulo the number of shards.
func (s *Store) ShardOf(accountID string) int {
	if len(s.shards) == 1 {
		return 0
	}
	// FNV-1a, inline: hash/fnv allocates, and this runs on every call.
	h := uint32(2166136261)
	for i := 0; i < len(accountID); i++ {
		h ^= uint32(accountID[i])
		h *= 16777619
	}
	return int(h % uint32(len(s.shards)))
}

// ShardPrefix returns the start of the keys of the shard that holds key,
// an account id or another rate-limit key: the rate limiter keeps a key's
// state there, so that an account's decisions go to its shard's master.
func (s *Store) ShardPrefix(key string) string { return s.shardOf(key).prefix }

// ShardPrefixOf returns the start of the keys of shard i (0 ≤ i < Shards).
func (s *Store) ShardPrefixOf(i int) string { return s.shards[i].prefix }

// Shards returns the number of shards of the store.
func (s *Store) Shards() int { return len(s.shards) }

// walk returns the shards, starting from one that moves at each call, so
// that calls which take what the first shards have do not always favour
// the same.
func (s *Store) walk() []*shard {
	if len(s.shards) == 1 {
		return s.shards
	}
	start := int(s.turn.Add(1) % uint64(len(s.shards)))
	return append(s.shards[start:len(s.shards):len(s.shards)], s.shards[:start]...)
}

// shardsKey holds the number of shards of the deployment, under the base
// tag; a store of one shard may have none.
func (s *Store) shardsKey() string { return s.key("shards") }

// formatKey holds the layout's name, under the base tag.
func (s *Store) formatKey() string { return s.key("format") }

// checkShards records the store's number of shards, or checks it against
// the one recorded; formatted tells whether the keys have a format,
// without which an absent record means one shard.
func (s *Store) checkShards(ctx context.Context, formatted bool) error {
	n := len(s.shards)
	got, err := s.rdb.Get(ctx, s.shardsKey()).Int()
	switch {
	case errors.Is(err, goredis.Nil) && formatted:
		got = 1
	case errors.Is(err, goredis.Nil):
		// Keys of a release before the format marker are one shard's.
		if n > 1 {
			old, err := s.rdb.Exists(ctx, s.key("task_seq")).Result()
			if err != nil {
				return err
			}
			if old > 0 {
				got = 1
				break
			}
		}
		if err := s.rdb.SetNX(ctx, s.shardsKey(), n, 0).Err(); err != nil {
			return err
		}
		// Another node may have recorded first.
		if got, err = s.rdb.Get(ctx, s.shardsKey()).Int(); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if got != n {
		return fmt.Errorf("the keys under %s are spread over %d shards, this node was given %d (a deployment's number of shards is fixed at its first start): %w",
			s.prefix, got, n, ErrFormat)
	}
	return nil
}

// prefixOf returns the prefix of a key of the store: up to the end of its
// hash tag and the ':' after it.
func prefixOf(key string) string {
	return key[:strings.Index(key, "}:")+2]
}
