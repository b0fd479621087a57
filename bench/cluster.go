package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/taskgate/taskgate/internal/testport"
)

// clusterMasters is the number of masters of the cluster phase's Redis
// Cluster, and of the shards of its node's store.
const clusterMasters = 3

// clusterTenants is the number of accounts the cluster phase's load goes
// round robin over: an account's data is in one shard, so a cluster
// spreads the load of many accounts, not one's.
const clusterTenants = 12

// redisCluster is the Redis Cluster of the cluster phase: masters started
// by the harness, with no replica.
type redisCluster struct {
	masters []*redisServer
}

// startCluster starts clusterMasters redis-servers in cluster mode in dir
// and joins them (redis-cli --cluster create), each master given an
// equal range of slots.
func startCluster(ctx context.Context, dir string) (c *redisCluster, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errNoRedis
	}
	c = &redisCluster{}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	args := []string{"--cluster", "create"}
	for i := range clusterMasters {
		d := filepath.Join(dir, fmt.Sprintf("master-%d", i+1))
		// The bus port is picked as the others are: port+10000, Redis's
		// default, lies in the kernel's ephemeral range, where an outgoing
		// connection of the load may hold it.
		bus, err := testport.Pick("127.0.0.1")
		if err != nil {
			return c, err
		}
		m, err := startRedis(ctx, d, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(d, "nodes.conf"),
			"--cluster-port", strconv.Itoa(bus))
		if err != nil {
			return c, err
		}
		c.masters = append(c.masters, m)
		args = append(args, m.addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	return c, c.waitReady(ctx)
}

// waitReady waits until every master says the cluster is ok.
func (c *redisCluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for _, m := range c.masters {
			info, err := m.client.ClusterInfo(ctx).Result()
			ok = ok && err == nil && strings.Contains(info, "cluster_state:ok")
		}
		if ok {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("the Redis Cluster is not ok after %s", startupTimeout)
		}
	}
}

// url is the storage URL of the cluster: the first master, the others as
// addr parameters.
func (c *redisCluster) url() string {
	u := c.masters[0].url()
	for i, m := range c.masters[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + m.addr
	}
	return u
}

// stop stops every master.
func (c *redisCluster) stop() error {
	var errs []error
	for _, m := range c.masters {
		errs = append(errs, m.stop())
	}
	return errors.Join(errs...)
}

// clusterUsage sums each master's counters over the rounds it observes.
type clusterUsage struct {
	masters []redisUsage
}

func newClusterUsage(c *redisCluster) *clusterUsage {
	u := &clusterUsage{masters: make([]redisUsage, len(c.masters))}
	for i, m := range c.masters {
		u.masters[i].r = m
	}
	return u
}

func (u *clusterUsage) observe(ctx context.Context) (after func()) {
	afters := make([]func(), len(u.masters))
	for i := range u.masters {
		afters[i] = u.masters[i].observe(ctx)
	}
	return func() {
		for _, a := range afters {
			a()
		}
	}
}

// total is the masters' CPU time together; busiest the largest share of
// it one master took.
func (u *clusterUsage) total() (cpu time.Duration, busiest float64) {
	var most time.Duration
	for _, m := range u.masters {
		cpu += m.sum.cpu
		most = max(most, m.sum.cpu)
	}
	if cpu > 0 {
		busiest = float64(most) / float64(cpu)
	}
	return cpu, busiest
}

func (u *clusterUsage) err() error {
	var errs []error
	for _, m := range u.masters {
		errs = append(errs, m.err)
	}
	return errors.Join(errs...)
}

// clusterResult is what the cluster phase measured.
type clusterResult struct {
	// edge is the chain (a) against bare (b) on a node whose store is in
	// clusterMasters shards on the cluster; create is creations against
	// bare on it. decisions and creations are the masters over those
	// rounds.
	edge, create         *pairResult
	decisions, creations *clusterUsage
}

func (r *clusterResult) check() error {
	return errors.Join(r.edge.a.check("cluster chain"), r.edge.b.check("cluster bare"),
		r.create.a.check("cluster creation"), r.create.b.check("cluster bare POST"),
		r.decisions.err(), r.creations.err())
}

// measureCluster runs the cluster phase into res: a Redis Cluster of
// clusterMasters masters in dir/cluster, a node on it in dir/cluster-node
// whose store is in as many shards: chain against bare, then creations
// against bare, as the redis mode does on one redis-server.
func measureCluster(ctx context.Context, o options, bin, dir string, src *source, res *clusterResult) (err error) {
	c, err := startCluster(ctx, filepath.Join(dir, "cluster"))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.stop()) }()
	fmt.Fprintf(os.Stderr, "bench: a Redis Cluster of %d masters up on %s\n", clusterMasters, c.url())
	res.decisions, res.creations = newClusterUsage(c), newClusterUsage(c)
	cfg := serverConfig{name: "cluster-node", storage: fmt.Sprintf("redis %s {\n\t\t\tshards %d\n\t\t}", c.url(), clusterMasters),
		sourceURL: src.url + "/hold", sourceTimeout: holdTimeout, concurrency: o.concurrency,
		tenants: clusterTenants}
	return withServer(ctx, bin, filepath.Join(dir, "cluster-node"), cfg, func(s *server) error {
		_, bare := s.edgeTargets(o)
		chain, create := s.tenantTargets(o, clusterTenants)
		defer chain.close()
		defer bare.close()
		bare.name = "bare-cluster"
		chain.observe = res.decisions.observe
		var err error
		if res.edge, err = measurePair(ctx, s.cmd.Process.Pid, o.rounds, o.duration, o.warmup, chain, bare); err != nil {
			return err
		}
		_, barePost := s.createTargets(o)
		defer create.close()
		defer barePost.close()
		create.observe = res.creations.observe
		if res.create, err = measurePair(ctx, s.cmd.Process.Pid, o.createRounds, o.duration, o.warmup, create, barePost); err != nil {
			return err
		}
		cpu, busiest := res.creations.total()
		fmt.Fprintf(os.Stderr, "bench: cluster creations: %.0f/s, bare %.0f/s; Redis CPU %s per creation over %d masters, the busiest %.0f%% of it\n",
			res.create.a.medianThroughput(), res.create.b.medianThroughput(), micros(cpu/time.Duration(max(res.create.a.requests, 1))), clusterMasters, 100*busiest)
		return nil
	})
}
