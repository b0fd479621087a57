// Package storage opens the store taskgate keeps its state in: memory (for
// tests), bolt (an embedded file, for one node) or redis (shared by any
// number of nodes). It is the one place that knows the three; the engine
// sees a Store, and, when other nodes share it, the notices and the exact
// rate limit that come with sharing.
package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/maintenance"
	"github.com/taskgate/taskgate/backend/node"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/ratelimit"
	"github.com/taskgate/taskgate/backend/storage/bolt"
	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/webhook"
)

// Config says which store to open.
type Config struct {
	// Type is "memory", "bolt" or "redis".
	Type string
	// Path is the database file of "bolt".
	Path string
	// URL is the server of "redis" (redis://, rediss://).
	URL string
	// Replicas is how many replicas of "redis" must acknowledge a task's
	// creation before it is answered (WAIT), within ReplicasTimeout
	// (default redis.DefaultReplicaTimeout); 0: none.
	Replicas        int
	ReplicasTimeout time.Duration
	// Shards spreads the accounts' data of "redis" over that many hash
	// tags, so that a Redis Cluster spreads it over its masters (0 or 1:
	// one); fixed for a deployment at its first start.
	Shards int
}

// rateLimitLease is how much of a busy account's demand a node leases
// ahead from Redis (ratelimit.WithLeases).
const rateLimitLease = 20 * time.Millisecond

// MaxShards bounds the shards of "redis".
const MaxShards = redis.MaxShards

// MaxReplicasTimeout bounds ReplicasTimeout.
const MaxReplicasTimeout = time.Minute

// Key names the store a config opens: two configs with the same key share
// one store (a config reload keeps the open bolt file).
func (c Config) Key() string {
	switch c.Type {
	case "bolt":
		return "bolt:" + c.Path
	case "redis":
		return fmt.Sprintf("redis:%s#replicas=%d/%s#shards=%d", c.URL, c.Replicas, c.ReplicasTimeout, max(c.Shards, 1))
	}
	return c.Type
}

// String describes the store for logs: its type and file or server, the
// passwords in a Redis URL hidden (the user's, and one given in the query,
// as a Sentinel URL gives its master's).
func (c Config) String() string {
	switch c.Type {
	case "bolt":
		return "bolt " + c.Path
	case "redis":
		s := "redis"
		if u, err := url.Parse(c.URL); err == nil {
			s += " " + redacted(u)
		}
		if c.Shards > 1 {
			s += fmt.Sprintf(" in %d shards", c.Shards)
		}
		if c.Replicas > 0 {
			s += fmt.Sprintf(" (a creation waits for %d replicas)", c.Replicas)
		}
		return s
	}
	return c.Type
}

// Validate checks the config without opening anything, and makes a bolt
// path absolute (a reload from another directory names the same file).
func (c *Config) Validate() error {
	switch c.Type {
	case "memory", "bolt":
		if c.Replicas != 0 || c.ReplicasTimeout != 0 {
			return fmt.Errorf("storage %s: replicas are for storage redis", c.Type)
		}
		if c.Shards != 0 {
			return fmt.Errorf("storage %s: shards are for storage redis", c.Type)
		}
	}
	switch c.Type {
	case "memory":
	case "bolt":
		if c.Path == "" {
			return errors.New("storage bolt: no database file")
		}
		path, err := filepath.Abs(c.Path)
		if err != nil {
			return fmt.Errorf("storage bolt: %w", err)
		}
		c.Path = path
	case "redis":
		if !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://") {
			return errors.New("storage redis: want a redis:// or rediss:// URL")
		}
		if c.Replicas < 0 || c.ReplicasTimeout < 0 {
			return errors.New("storage redis: replicas and replicas_timeout must not be negative")
		}
		if c.ReplicasTimeout > 0 && c.Replicas == 0 {
			return errors.New("storage redis: replicas_timeout without replicas")
		}
		if c.ReplicasTimeout > MaxReplicasTimeout {
			return fmt.Errorf("storage redis: replicas_timeout %s: want at most %s (a create waits that long before its answer)", c.ReplicasTimeout, MaxReplicasTimeout)
		}
		if c.Shards < 0 || c.Shards > redis.MaxShards {
			return fmt.Errorf("storage redis: shards %d: want 1 to %d", c.Shards, redis.MaxShards)
		}
	default:
		return fmt.Errorf("storage %q: want memory, bolt or redis", c.Type)
	}
	return nil
}

// Store is everything taskgate keeps: tasks, webhook deliveries, dynamic
// accounts and usage. Every implementation passes the conformance suites
// of packages tasktest, accounttest and usagetest.
type Store interface {
	task.Store
	webhook.Store
	account.Store
	usage.Store
	maintenance.Store
	quota.Store
}

// Notices carry what one node tells the others: an account changed (so
// that they reload it), a task ended (so that their waiters answer). They
// are best effort (Pub/Sub): the engine makes up for lost ones by reading
// the store again.
type Notices interface {
	PublishAccountChange(ctx context.Context, id string) error
	SubscribeAccountChanges(ctx context.Context, onChange func(id string), onSubscribed func()) error
	PublishTaskEnd(ctx context.Context, requestID string) error
	SubscribeTaskEnds(ctx context.Context, onEnd func(requestID string), onSubscribed func()) error
	// The nodes' beats: which nodes are up, and how busy.
	node.Beats
}

// Opened is an open store and what comes with it.
type Opened struct {
	Store Store
	// Notices is set when other nodes share the store; nil otherwise.
	Notices Notices
	// RateLimit is the store's exact, shared rate limit when other nodes
	// share the store; nil otherwise (the engine limits in memory).
	RateLimit ratelimit.Store
}

// Shared tells whether other nodes may use the store.
func (o *Opened) Shared() bool { return o.Notices != nil }

// openTimeout bounds connecting to a shared store.
const openTimeout = 10 * time.Second

// Open opens the store c names (c must have passed Validate). The caller
// closes o.Store.
func Open(ctx context.Context, c Config) (*Opened, error) {
	switch c.Type {
	case "memory":
		return &Opened{Store: memory.New()}, nil
	case "bolt":
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, fmt.Errorf("storage bolt: %w", err)
		}
		db, err := bolt.Open(c.Path)
		if err != nil {
			return nil, err
		}
		return &Opened{Store: db}, nil
	case "redis":
		ctx, cancel := context.WithTimeout(ctx, openTimeout)
		defer cancel()
		// Leases run on Redis's clock, not on the nodes'.
		opts := []redis.Option{redis.WithServerClock(time.Now)}
		if c.Replicas > 0 {
			opts = append(opts, redis.WithReplicas(c.Replicas, c.ReplicasTimeout))
		}
		if c.Shards > 1 {
			opts = append(opts, redis.WithShards(c.Shards))
		}
		rs, err := redis.Open(ctx, c.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("storage redis: %w", err)
		}
		// Each shard's rate-limit keys start with its prefix and "rl:",
		// made once rather than at each decision.
		limitPrefixes := make([]string, rs.Shards())
		for i := range limitPrefixes {
			limitPrefixes[i] = rs.ShardPrefixOf(i) + "rl:"
		}
		limits := ratelimit.NewRedisSharded(rs.Client(), func(key string) string { return limitPrefixes[rs.ShardOf(key)] },
			ratelimit.WithLeases(rateLimitLease))
		return &Opened{Store: rs, Notices: rs, RateLimit: limits}, nil
	}
	return nil, fmt.Errorf("storage %q: want memory, bolt or redis", c.Type)
}

// redacted is u as logs may show it: its user's password, and the value
// of every query parameter whose name speaks of a password, replaced by
// "xxxxx".
func redacted(u *url.URL) string {
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
