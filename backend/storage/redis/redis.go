// Package redis is a task.Store, webhook.Store, account.Store and
// usage.Store in Redis, shared by any number of taskgate nodes. Every
// change that touches more than one key is atomic: one Lua script for
// tasks and deliveries, a MULTI (under WATCH where it reads first) for
// accounts and usage. The keys are spread over shards, each a hash tag of
// its own (shards.go), so that the store runs on Redis Cluster and spreads
// over its masters.
package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrClosed is returned by the methods of a closed store but Close.
var ErrClosed = errors.New("redis: store closed")

// Timeouts of one call to Redis: a store that is down answers within a
// few seconds, never hangs.
const (
	dialTimeout = time.Second
	ioTimeout   = time.Second
)

// Store is the Redis store. It is safe for concurrent use.
type Store struct {
	rdb goredis.UniversalClient
	// prefix starts the keys of the deployment: "{tg}:" by default. The
	// braces make it their hash tag.
	prefix string
	// shards hold the accounts' data; with one, its prefix is prefix.
	shards []*shard
	// turn moves the shard that walks start from.
	turn atomic.Uint64
	// replicas is how many replicas must acknowledge a task's creation
	// before Create returns (WAIT), within replicaTimeout; 0: none.
	replicas       int
	replicaTimeout time.Duration
	// waiting is the connection of the writes that wait for replicas;
	// nil without replicas.
	waiting goredis.UniversalClient
	// closed is set by Close.
	closed atomic.Bool
	// clock, when set, is the caller's clock, which the lease ends and
	// rescue bounds it is given are counted on: the store turns them into
	// offsets from Redis's TIME (see leaseArg).
	clock func() time.Time
}

// Option changes how Open connects.
type Option func(*options)

type options struct {
	prefix         string
	replicas       int
	replicaTimeout time.Duration
	clock          func() time.Time
	shards         int
}

// WithPrefix sets the start of every key (default "tg"), so that several
// deployments can share one Redis. It becomes the keys' hash tag.
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithServerClock makes leases run on Redis's clock (TIME) rather than the
// nodes': the lease ends and rescue bounds the store is given, times of
// clock (the caller's own, time.Now in production), become as far from
// Redis's TIME as they are from clock's now. A node whose clock is off
// then neither takes over leases that have not run out on Redis's clock
// nor keeps its own past them. Without it (the conformance suites), the
// times are used as given.
func WithServerClock(clock func() time.Time) Option {
	return func(o *options) { o.clock = clock }
}

// WithShards spreads the accounts' data over n shards (default 1), each a
// hash tag of its own, so that Redis Cluster spreads them over its masters:
// a multiple of the number of masters. A deployment's number is fixed at
// its first start: a store opened with another is refused (ErrFormat).
func WithShards(n int) Option { return func(o *options) { o.shards = n } }

// DefaultReplicaTimeout bounds the wait for replicas when WithReplicas is
// given none.
const DefaultReplicaTimeout = time.Second

// WithReplicas makes Create return only once n replicas have acknowledged
// the task (Redis's WAIT), or fail with ErrReplicas after timeout (0:
// DefaultReplicaTimeout): a failover to a replica then loses no task whose
// creation returned.
func WithReplicas(n int, timeout time.Duration) Option {
	return func(o *options) {
		o.replicas = n
		o.replicaTimeout = cmp.Or(timeout, DefaultReplicaTimeout)
	}
}

// ErrReplicas is the error of a Create that fewer replicas acknowledged
// than WithReplicas asks, within its timeout. The task is stored on the
// master and may run; a client retrying with its Idempotency-Key gets it.
var ErrReplicas = errors.New("redis: too few replicas acknowledged the write")

// Open connects to the Redis at url and checks that it answers:
//
//   - redis://[user:password@]host:port/db, or rediss:// for TLS: one
//     server (go-redis's ParseURL; its query parameters apply);
//   - the same with master_name=<name> and addr=<host:port> parameters for
//     more sentinels: Redis Sentinel (go-redis's ParseFailoverURL);
//   - the same with addr=<host:port> parameters for more nodes: Redis
//     Cluster (go-redis's ParseClusterURL). The store spreads over the
//     masters as far as WithShards lets it.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{prefix: "tg", shards: 1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.prefix == "" || strings.ContainsAny(o.prefix, "{}") {
		return nil, fmt.Errorf("redis: prefix %q: want a non-empty name without braces", o.prefix)
	}
	if o.shards < 1 || o.shards > MaxShards {
		return nil, fmt.Errorf("redis: shards %d: want 1 to %d", o.shards, MaxShards)
	}
	rdb, addr, err := newClient(url, ioTimeout)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if o.replicas < 0 {
		return nil, fmt.Errorf("redis: replicas %d: want 0 or more", o.replicas)
	}
	s := &Store{rdb: rdb, prefix: "{" + o.prefix + "}:", replicas: o.replicas, replicaTimeout: o.replicaTimeout, clock: o.clock}
	for _, tag := range shardTags(o.prefix, o.shards) {
		sh := &shard{prefix: "{" + tag + "}:"}
		sh.creates = newCreations(s)
		s.shards = append(s.shards, sh)
	}
	if o.replicas > 0 {
		// A write and its WAIT answer once the replicas did: their reads
		// may take the replica timeout on top of the usual.
		if s.waiting, _, err = newClient(url, ioTimeout+o.replicaTimeout); err != nil {
			_ = rdb.Close()
			return nil, fmt.Errorf("redis: %w", err)
		}
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("redis: %s: %w", addr, err)
	}
	if err := s.checkFormat(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("redis: %s: %w", addr, err)
	}
	return s, nil
}

// newClient returns the client the URL describes, with the store's
// timeouts and the given read timeout, and the address to name in errors.
func newClient(rawURL string, readTimeout time.Duration) (goredis.UniversalClient, string, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, "", errors.New("the URL does not parse")
	}
	q := u.Query()
	// RESP2 unless the URL asks for a protocol: the store uses nothing of
	// RESP3, whose client looks for push notifications around every
	// command (about 3 % of a node's CPU per creation).
	protocol := func(p *int) {
		if !q.Has("protocol") {
			*p = 2
		}
	}
	switch {
	case q.Has("master_name"):
		cfg, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, "", err
		}
		cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.PoolTimeout = dialTimeout, readTimeout, ioTimeout, ioTimeout
		cfg.MaxRetries, cfg.ContextTimeoutEnabled = -1, true
		cfg.DialerRetries, cfg.DialerRetryTimeout = 1, 50*time.Millisecond
		protocol(&cfg.Protocol)
		return goredis.NewFailoverClient(cfg), "sentinel master " + cfg.MasterName, nil
	case q.Has("addr"):
		cfg, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, "", err
		}
		cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.PoolTimeout = dialTimeout, readTimeout, ioTimeout, ioTimeout
		cfg.MaxRetries, cfg.ContextTimeoutEnabled = -1, true
		// The cluster client also sends a call again after a lost reply
		// (as a redirect): a script could run twice. One failed call
		// after a failover, then the new map of slots, is the price.
		cfg.MaxRedirects = -1
		cfg.DialerRetries, cfg.DialerRetryTimeout = 1, 50*time.Millisecond
		protocol(&cfg.Protocol)
		return goredis.NewClusterClient(cfg), "cluster " + strings.Join(cfg.Addrs, ","), nil
	}
	cfg, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, "", err
	}
	cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.PoolTimeout = dialTimeout, readTimeout, ioTimeout, ioTimeout
	// A script whose reply was lost may have run: sending it again could
	// run it twice (a task created twice, a claim lost). A failed call
	// fails; the caller answers 503 and the client retries.
	cfg.MaxRetries, cfg.ContextTimeoutEnabled = -1, true
	// A Redis that is down answers at once, not after five dials.
	cfg.DialerRetries, cfg.DialerRetryTimeout = 1, 50*time.Millisecond
	protocol(&cfg.Protocol)
	return goredis.NewClient(cfg), cfg.Addr, nil
}

// Client returns the store's connection, for the rate limiter and the
// account change notices to share.
func (s *Store) Client() goredis.UniversalClient { return s.rdb }

// Prefix returns the start of the deployment's keys, hash tag included
// (with one shard, of all its keys).
func (s *Store) Prefix() string { return s.prefix }

// key joins the prefix and the parts of a key of the deployment with ':'.
func (s *Store) key(parts ...string) string {
	return s.prefix + strings.Join(parts, ":")
}

// ErrFormat is the error of Open when Redis holds keys of another layout.
var ErrFormat = errors.New("a layout this program does not read")

// Close closes the connections. It may be called more than once.
func (s *Store) Close() error {
	s.closed.Store(true)
	if s.waiting != nil {
		_ = s.waiting.Close()
	}
	err := s.rdb.Close()
	if errors.Is(err, goredis.ErrClosed) {
		return nil
	}
	return err
}

// formatVersion names the layout of the keys (keys.go). The store records
// it under the prefix at its first open, and refuses a Redis whose keys
// record another: a layout it would misread. Stores of releases before the
// marker wrote the layout of queues by type; Open moves their queues and
// marks them.
const formatVersion = "taskgate-redis-2"

// checkFormat checks the layout recorded in Redis, and records it when
// none is, once the queues of the layout before are moved.
func (s *Store) checkFormat(ctx context.Context) error {
	format, err := s.rdb.Get(ctx, s.formatKey()).Result()
	switch {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		return err
	case format == formatVersion:
		return s.checkShards(ctx, true)
	default:
		return fmt.Errorf("the keys under %s have format %q, this program reads %q: %w", s.prefix, format, formatVersion, ErrFormat)
	}
	if err := s.checkShards(ctx, false); err != nil {
		return err
	}
	if err := s.migrateQueues(ctx); err != nil {
		return fmt.Errorf("moving queued tasks to queues by account: %w", err)
	}
	return s.rdb.SetNX(ctx, s.formatKey(), formatVersion, 0).Err()
}
