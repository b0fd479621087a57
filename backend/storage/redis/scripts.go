package redis

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// The Lua scripts of tasks and deliveries: every change that touches more
// than one key is one of them, run with EVALSHA (EVAL the first time a
// Redis sees it). Each is lua/prelude.lua followed by its own file.
//
// A script checks all that can make it fail before it writes anything:
// Redis applies a script whole but does not undo one that stops half-way.
// The only write Redis may refuse (OOM under maxmemory) is refused at a
// script's first write, before it changed anything.
var (
	scriptTaskCreate  = newScript("task_create")
	scriptTaskClaim   = newScript("task_claim")
	scriptTaskFinish  = newScript("task_finish")
	scriptTaskRelease = newScript("task_release")
	scriptTaskRescue  = newScript("task_rescue")
	scriptTaskMigrate = newScript("task_migrate")
	scriptTaskExtend  = newScript("task_extend")
	scriptTaskList    = newScript("task_list")
	scriptTaskPurge   = newScript("task_purge")
	scriptIdemPurge   = newScript("idem_purge")
	scriptDlvClaim    = newScript("dlv_claim")
	scriptDlvUnlease  = newScript("dlv_unlease")
	scriptDlvRecord   = newScript("dlv_record")
	scriptDlvRetry    = newScript("dlv_retry")
	scriptDlvRescue   = newScript("dlv_rescue")
	scriptDlvExtend   = newScript("dlv_extend")
	scriptDlvList     = newScript("dlv_list")
	scriptQuotaSpend  = newScript("quota_spend")
	scriptQuotaRefund = newScript("quota_refund")
	scriptNodeBeat    = newScript("node_beat")
	scriptNodeStates  = newScript("node_states")
)

//go:embed lua/*.lua
var luaFiles embed.FS

// newScript returns the script of lua/<name>.lua.
func newScript(name string) *goredis.Script {
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return newScriptSource(name, string(body))
}

// newScriptSource returns a script of the prelude and body.
func newScriptSource(name, body string) *goredis.Script {
	prelude, err := luaFiles.ReadFile("lua/prelude.lua")
	if err != nil {
		panic(err)
	}
	return goredis.NewScript("-- taskgate " + name + "\n" + string(prelude) + body)
}

// run runs a script with the prefix of key's shard as ARGV[1]; key is the
// key Redis Cluster routes the call by (any key of the shard: they share
// one slot).
func (s *Store) run(ctx context.Context, script *goredis.Script, key string, args ...any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	argv := make([]any, 0, 1+len(args))
	argv = append(argv, prefixOf(key))
	argv = append(argv, args...)
	v, err := script.Run(ctx, s.rdb, []string{key}, argv...).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail(err)
	}
	return v, nil
}

// runReplicated runs a script as run does, then waits for the store's
// replicas to acknowledge it (WAIT) on the same connection, which WAIT
// needs: the two go in one pipeline. Fewer replicas within the timeout
// is ErrReplicas.
func (s *Store) runReplicated(ctx context.Context, script *goredis.Script, key string, args ...any) (any, error) {
	if s.replicas == 0 {
		return s.run(ctx, script, key, args...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	argv := append([]any{prefixOf(key)}, args...)
	// On a cluster, the pipeline goes to the master of the key's slot.
	var client goredis.Cmdable = s.waiting
	if cc, ok := s.waiting.(*goredis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, s.fail(err)
		}
		client = master
	}
	for loaded := false; ; loaded = true {
		var eval *goredis.Cmd
		var wait *goredis.Cmd
		_, err := client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			eval = script.EvalSha(ctx, p, []string{key}, argv...)
			wait = p.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
			return nil
		})
		if err := eval.Err(); err != nil && !loaded && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := script.Load(ctx, client).Err(); err != nil {
				return nil, s.fail(err)
			}
			continue
		}
		v, evalErr := eval.Result()
		if evalErr != nil && !errors.Is(evalErr, goredis.Nil) {
			return nil, s.fail(evalErr)
		}
		if err != nil && !errors.Is(err, goredis.Nil) {
			return nil, s.fail(err)
		}
		if n, _ := wait.Int64(); n < int64(s.replicas) {
			return nil, fmt.Errorf("%w: %d of %d within %s", ErrReplicas, n, s.replicas, s.replicaTimeout)
		}
		return v, nil
	}
}

// call is one script run of runAll.
type call struct {
	script *goredis.Script
	key    string
	args   []any
}

// result is what a call of runAll gave.
type result struct {
	v   any
	err error
}

// runAll runs the calls, each as run does, in one pipeline: on a cluster,
// one round trip to each master concerned, at once. A script a Redis does
// not know yet is run again alone (EVAL).
func (s *Store) runAll(ctx context.Context, calls []call) []result {
	out := make([]result, len(calls))
	if err := ctx.Err(); err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	cmds := make([]*goredis.Cmd, len(calls))
	_, _ = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, p, []string{c.key}, append([]any{prefixOf(c.key)}, c.args...)...)
		}
		return nil
	})
	for i, c := range calls {
		v, err := cmds[i].Result()
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			out[i].v, out[i].err = s.run(ctx, c.script, c.key, c.args...)
			continue
		}
		if err != nil && !errors.Is(err, goredis.Nil) {
			err = s.fail(err)
		} else {
			err = nil
		}
		out[i] = result{v: v, err: err}
	}
	return out
}

// runEach runs the script on each shard that has arguments in byShard, at
// the shard's key keyOf, in one pipeline, and returns the first error
// (the other shards ran all the same).
func (s *Store) runEach(ctx context.Context, script *goredis.Script, byShard map[*shard][]any, keyOf func(*shard) string) error {
	calls := make([]call, 0, len(byShard))
	for _, sh := range s.shards {
		if args, ok := byShard[sh]; ok {
			calls = append(calls, call{script: script, key: keyOf(sh), args: args})
		}
	}
	var first error
	for _, r := range s.runAll(ctx, calls) {
		first = cmp.Or(first, r.err)
	}
	return first
}

// byShard gathers the script arguments of n items by shard: each shard's
// list starts with head, then holds the arguments of each of its items
// (item i is of the shards of its account: every shard when it has none).
func (s *Store) byShard(n int, head []any, item func(i int) (accountID string, args []any)) map[*shard][]any {
	out := make(map[*shard][]any)
	for i := range n {
		accountID, args := item(i)
		for _, sh := range s.shardsOf(accountID) {
			if out[sh] == nil {
				out[sh] = append([]any{}, head...)
			}
			out[sh] = append(out[sh], args...)
		}
	}
	return out
}

// shardsOf returns the shard of an account, or every shard when the
// account is not known (a claim built without it).
func (s *Store) shardsOf(accountID string) []*shard {
	if accountID == "" && len(s.shards) > 1 {
		return s.shards
	}
	return []*shard{s.shardOf(accountID)}
}

// fail wraps an error of go-redis.
func (s *Store) fail(err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return ErrClosed
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("redis: %w", err)
}

// ready tells whether a call that has nothing to ask Redis may go ahead:
// ctx is live and the store open (a closed client fails at once, without
// a round trip).
func (s *Store) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return s.fail(err)
	}
	return nil
}

// The shapes of script answers.

// values returns v as a list.
func values(v any) ([]any, error) {
	list, ok := v.([]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("redis: unexpected answer %T from a script", v)
	}
	return list, nil
}

// str returns v as a string, "" for nil.
func str(v any) string {
	s, _ := v.(string)
	return s
}

// integer returns v as an int.
func integer(v any) (int, error) {
	switch n := v.(type) {
	case int64:
		return int(n), nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("redis: unexpected answer %T from a script", v)
}
