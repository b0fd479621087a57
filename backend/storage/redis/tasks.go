package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// scriptBatch bounds the records one script of Rescue, RescueDeliveries and the
// idempotency purge handles, so that no script holds Redis for long; the
// call runs as many as it takes.
const scriptBatch = 1000

// taskEnd is what Finish adds to a task, stored apart from the task as
// created so that the scripts never parse JSON.
type taskEnd struct {
	Status      task.Status     `json:"status"`
	CompletedAt *time.Time      `json:"completed_at"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	Message     *string         `json:"message"`
}

// Create stores t and queues it, with the creations of concurrent calls
// (see creations.go); see task.Store.
func (s *Store) Create(ctx context.Context, t *task.Task, idem *task.Idempotency, idemSince time.Time) (*task.Idempotency, error) {
	stored := *t
	stored.Status = task.InProgress
	stored.CompletedAt, stored.Result, stored.Error, stored.Message = nil, nil, nil, nil
	body, err := stored.AppendJSON(nil)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding task %s: %w", t.RequestID, err)
	}
	args := []any{t.RequestID, body, t.TypeName(), t.Attempts, t.AccountID, t.GroupID, t.TaskID,
		member(invHex(t.CreatedAt), t.RequestID)}
	if idem != nil {
		rec, err := json.Marshal(idem)
		if err != nil {
			return nil, fmt.Errorf("redis: encoding idempotency record: %w", err)
		}
		args = append(args, idemRef(idem.AccountID, idem.Key), rec, hexTime(idem.CreatedAt), hexTime(idemSince))
	} else {
		args = append(args, "", "", "", "")
	}
	sh := s.shardOf(t.AccountID)
	c, err := s.createTogether(ctx, sh, sh.taskKey(t.RequestID), args)
	if err != nil {
		return nil, err
	}
	switch c.answer {
	case "ok":
		return nil, nil
	case "exists":
		return nil, task.ErrExists
	case "replay":
		rec := new(task.Idempotency)
		if err := json.Unmarshal([]byte(c.record), rec); err != nil {
			return nil, fmt.Errorf("redis: decoding idempotency record: %w", err)
		}
		return rec, nil
	}
	return nil, fmt.Errorf("redis: unexpected answer %q from Create", c.answer)
}

// Get returns the account's task with the request id; see task.Store.
func (s *Store) Get(ctx context.Context, accountID, requestID string) (*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := s.rdb.HMGet(ctx, s.shardOf(accountID).taskKey(requestID), "json", "end", "att", "rsc").Result()
	if err != nil {
		return nil, s.fail(err)
	}
	if v[0] == nil {
		return nil, task.ErrNotFound
	}
	t, err := decodeTask(v[0], v[1], v[2], v[3])
	if err != nil {
		return nil, err
	}
	if t.AccountID != accountID {
		return nil, task.ErrNotFound
	}
	return t, nil
}

// Find returns the task with the request id; see task.Store. The task is
// in its account's shard, which the request id does not tell: every
// shard is asked, in one pipeline.
func (s *Store) Find(ctx context.Context, requestID string) (*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.SliceCmd, len(s.shards))
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range s.shards {
			cmds[i] = p.HMGet(ctx, s.shards[i].taskKey(requestID), "json", "end", "att", "rsc")
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(err)
	}
	for _, c := range cmds {
		if v := c.Val(); v[0] != nil {
			return decodeTask(v[0], v[1], v[2], v[3])
		}
	}
	return nil, task.ErrNotFound
}

// ListByGroup returns the account's newest tasks of the group; see
// task.Store.
func (s *Store) ListByGroup(ctx context.Context, accountID, groupID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, s.shardOf(accountID).groupKey(accountID, groupID), groupID, limit)
}

// ListByTaskID returns the account's newest tasks with the task id; see
// task.Store.
func (s *Store) ListByTaskID(ctx context.Context, accountID, taskID string, limit int) ([]*task.Task, error) {
	return s.list(ctx, s.shardOf(accountID).taskIDKey(accountID, taskID), taskID, limit)
}

func (s *Store) list(ctx context.Context, key, id string, limit int) ([]*task.Task, error) {
	if id == "" || limit <= 0 {
		return []*task.Task{}, s.ready(ctx)
	}
	v, err := s.run(ctx, scriptTaskList, key, limit)
	if err != nil {
		return nil, err
	}
	return decodeTasks(v, 4)
}

// Claim leases up to n queued tasks of the type, the accounts taking
// turns; see task.Store. With shards, the shards take turns too (see
// shards.go): it reads their depths, shares n among those with queued
// tasks and claims from them in one pipeline.
func (s *Store) Claim(ctx context.Context, taskType string, n int, leaseUntil time.Time) ([]*task.Task, error) {
	lease := s.leaseArg(leaseUntil)
	if len(s.shards) == 1 {
		v, err := s.run(ctx, scriptTaskClaim, s.shards[0].ringKey(taskType), taskType, max(n, 0), lease)
		if err != nil {
			return nil, err
		}
		return decodeTasks(v, 3)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	order := s.walk()
	depths := make([]*goredis.StringCmd, len(order))
	_, _ = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, sh := range order {
			depths[i] = p.HGet(ctx, sh.depthKey(), taskType)
		}
		return nil
	})
	// A shard whose depth could not be read is left out of this claim;
	// when none could, the claim fails.
	left := make([]int, len(order))
	var failed error
	read := 0
	for i, d := range depths {
		n, err := d.Int()
		switch {
		case err == nil:
			left[i] = n
			read++
		case errors.Is(err, goredis.Nil):
			read++
		default:
			failed = cmp.Or(failed, err)
		}
	}
	if read == 0 && failed != nil {
		return nil, s.fail(failed)
	}
	calls := make([]call, 0, len(order))
	for i, share := range shareOut(max(n, 0), left) {
		if share > 0 {
			calls = append(calls, call{script: scriptTaskClaim, key: order[i].ringKey(taskType), args: []any{taskType, share, lease}})
		}
	}
	// What the shards that answered claimed is returned, whatever the
	// others did: a shard that failed keeps its tasks queued (or, if it
	// claimed them and the answer was lost, its leases end and Rescue
	// queues them again).
	out := []*task.Task{}
	var firstErr error
	for _, r := range s.runAll(ctx, calls) {
		ts, err := r.v, r.err
		if err == nil {
			var decoded []*task.Task
			if decoded, err = decodeTasks(ts, 3); err == nil {
				out = append(out, decoded...)
				continue
			}
		}
		firstErr = cmp.Or(firstErr, err)
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// shareOut shares n among shards that hold left[i] each, one at a time in
// turn from the first, none beyond what a shard holds.
func shareOut(n int, left []int) []int {
	shares := make([]int, len(left))
	for n > 0 {
		gave := false
		for i := range left {
			if n > 0 && shares[i] < left[i] {
				shares[i]++
				n--
				gave = true
			}
		}
		if !gave {
			break
		}
	}
	return shares
}

// Finish stores the end of a task and its deliveries, and gives back its
// quota units, in one script; see task.Store.
func (s *Store) Finish(ctx context.Context, t *task.Task, deliveries []*webhook.Delivery, refund []quota.Counter) error {
	if !t.Status.Terminal() {
		return fmt.Errorf("redis: finishing task %s with status %q, which is not terminal", t.RequestID, t.Status)
	}
	if t.CompletedAt == nil {
		return fmt.Errorf("redis: finishing task %s without a completion time", t.RequestID)
	}
	end, err := jsonenc.Marshal(&taskEnd{Status: t.Status, CompletedAt: t.CompletedAt, Result: t.Result, Error: t.Error, Message: t.Message})
	if err != nil {
		return fmt.Errorf("redis: encoding task %s: %w", t.RequestID, err)
	}
	news, err := deliveryArgs(deliveries)
	if err != nil {
		return err
	}
	args := append([]any{t.RequestID, end, member(hexTime(*t.CompletedAt), t.RequestID), t.Attempts}, news...)
	for _, c := range quota.OfAccount(refund, t.AccountID) {
		args = append(args, s.quotaKey(c))
	}
	v, err := s.run(ctx, scriptTaskFinish, s.shardOf(t.AccountID).taskKey(t.RequestID), args...)
	if err != nil {
		return err
	}
	return outcome(v, task.ErrNotFound)
}

// Release queues leased tasks again at their place, each only while it is
// leased under the claim that returned it; see task.Store.
func (s *Store) Release(ctx context.Context, tasks []*task.Task) error {
	if len(tasks) == 0 {
		return s.ready(ctx)
	}
	byShard := s.byShard(len(tasks), nil, func(i int) (string, []any) {
		return tasks[i].AccountID, []any{tasks[i].RequestID, tasks[i].Attempts}
	})
	return s.runEach(ctx, scriptTaskRelease, byShard, (*shard).taskLeasesKey)
}

// Rescue queues again the tasks whose lease ended before expiredBefore,
// a batch per script; see task.Store. It first moves into the accounts'
// queues what nodes of the layout before them queued (see keys.go).
func (s *Store) Rescue(ctx context.Context, expiredBefore time.Time) (int, error) {
	if err := s.migrateQueues(ctx); err != nil {
		return 0, err
	}
	return s.inBatchesEach(ctx, scriptTaskRescue, (*shard).taskLeasesKey, s.boundBefore(expiredBefore))
}

// migrateQueues moves the tasks of the queues of the layout before queues
// by account into the accounts' queues. That layout had one shard: a
// store of more has none of its queues.
func (s *Store) migrateQueues(ctx context.Context) error {
	if len(s.shards) > 1 {
		return nil
	}
	_, err := s.inBatches(ctx, scriptTaskMigrate, s.shards[0].queuesKey(), "")
	return err
}

// ExtendLeases moves the lease end of the tasks still leased under the
// given claims; see task.Store.
func (s *Store) ExtendLeases(ctx context.Context, claims []task.Claim, leaseUntil time.Time) error {
	if len(claims) == 0 {
		return s.ready(ctx)
	}
	byShard := s.byShard(len(claims), []any{s.leaseArg(leaseUntil)}, func(i int) (string, []any) {
		return claims[i].AccountID, []any{claims[i].RequestID, claims[i].Attempts}
	})
	return s.runEach(ctx, scriptTaskExtend, byShard, (*shard).taskLeasesKey)
}

// QueuedTypes returns the task types with queued tasks; see task.Store.
func (s *Store) QueuedTypes(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The types counted in task_depth, and those that nodes of the layout
	// before queues by account have queued but not yet had moved.
	cmds := make([]*goredis.StringSliceCmd, 0, 2*len(s.shards))
	if _, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, sh := range s.shards {
			cmds = append(cmds, p.HKeys(ctx, sh.depthKey()), p.SMembers(ctx, sh.queuesKey()))
		}
		return nil
	}); err != nil {
		return nil, s.fail(err)
	}
	var types []string
	for _, c := range cmds {
		types = append(types, c.Val()...)
	}
	slices.Sort(types)
	return slices.Compact(types), nil
}

// QueueDepth returns the number of queued tasks of the type; see
// task.Store.
func (s *Store) QueueDepth(ctx context.Context, taskType string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cmds := make([]*goredis.StringCmd, len(s.shards))
	if _, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, sh := range s.shards {
			cmds[i] = p.HGet(ctx, sh.depthKey(), taskType)
		}
		return nil
	}); err != nil && !errors.Is(err, goredis.Nil) {
		return 0, s.fail(err)
	}
	total := 0
	for _, c := range cmds {
		n, err := c.Int()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return 0, s.fail(err)
		}
		total += n
	}
	return total, nil
}

// Purge deletes old terminal tasks and ended deliveries in one script, then
// old idempotency records a batch per script; see task.Store.
func (s *Store) Purge(ctx context.Context, completedBefore, idemBefore time.Time, limit int) (int, error) {
	total := 0
	for _, sh := range s.walk() {
		n, err := s.runCount(ctx, scriptTaskPurge, sh.completedKey(), lexBefore(completedBefore), max(limit-total, 0))
		if err != nil {
			return total, err
		}
		total += n
		if _, err := s.inBatches(ctx, scriptIdemPurge, sh.idemAgeKey(), lexBefore(idemBefore)); err != nil {
			return total, err
		}
	}
	return total, nil
}

// inBatches runs a script that handles up to a batch of the records of an
// index before a bound, until it handles fewer, and returns how many
// records it handled in all.
func (s *Store) inBatches(ctx context.Context, script *goredis.Script, key, bound string) (int, error) {
	total := 0
	for {
		n, err := s.runCount(ctx, script, key, bound, scriptBatch)
		if err != nil {
			return total, err
		}
		total += n
		if n < scriptBatch {
			return total, nil
		}
	}
}

// inBatchesEach runs inBatches on the index keyOf of every shard: one
// that fails does not keep the others from their turn.
func (s *Store) inBatchesEach(ctx context.Context, script *goredis.Script, keyOf func(*shard) string, bound string) (int, error) {
	total := 0
	var errs []error
	for _, sh := range s.shards {
		n, err := s.inBatches(ctx, script, keyOf(sh), bound)
		total += n
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

// runCount runs a script that answers a number.
func (s *Store) runCount(ctx context.Context, script *goredis.Script, key string, args ...any) (int, error) {
	v, err := s.run(ctx, script, key, args...)
	if err != nil {
		return 0, err
	}
	return integer(v)
}

// decodeTask builds a task from its fields in Redis: the JSON it was
// created with, the JSON of its end (nil while in progress), its attempts
// and its rescues (nil when none).
func decodeTask(body, end, attempts, rescues any) (*task.Task, error) {
	t := new(task.Task)
	if err := json.Unmarshal([]byte(str(body)), t); err != nil {
		return nil, fmt.Errorf("redis: decoding a task: %w", err)
	}
	if end != nil {
		var e taskEnd
		if err := json.Unmarshal([]byte(str(end)), &e); err != nil {
			return nil, fmt.Errorf("redis: decoding the end of task %s: %w", t.RequestID, err)
		}
		t.Status, t.CompletedAt, t.Result, t.Error, t.Message = e.Status, e.CompletedAt, e.Result, e.Error, e.Message
	}
	var err error
	if t.Attempts, err = count(attempts); err != nil {
		return nil, fmt.Errorf("redis: decoding the attempts of task %s: %w", t.RequestID, err)
	}
	if t.Rescues, err = count(rescues); err != nil {
		return nil, fmt.Errorf("redis: decoding the rescues of task %s: %w", t.RequestID, err)
	}
	// A nil RawMessage is stored as null; give back nil.
	if string(t.Data) == "null" {
		t.Data = nil
	}
	if string(t.Result) == "null" {
		t.Result = nil
	}
	return t, nil
}

// count reads a counter of a task's hash: a number, or nil for 0.
func count(v any) (int, error) {
	switch a := v.(type) {
	case int64:
		return int(a), nil
	case string:
		return strconv.Atoi(a)
	}
	return 0, nil
}

// decodeTasks decodes a script's list of tasks, each given by width
// values: json, then (width 4) end, then attempts and rescues.
func decodeTasks(v any, width int) ([]*task.Task, error) {
	list, err := values(v)
	if err != nil {
		return nil, err
	}
	out := make([]*task.Task, 0, len(list)/width)
	for i := 0; i+width <= len(list); i += width {
		var end any
		if width == 4 {
			end = list[i+1]
		}
		t, err := decodeTask(list[i], end, list[i+width-2], list[i+width-1])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// outcome turns a script's {'ok'}, {'notfound'} or {'exists', id} into
// the error of a call: notFound for {'notfound'}.
func outcome(v any, notFound error) error {
	answer, err := values(v)
	if err != nil {
		return err
	}
	if len(answer) == 0 {
		return fmt.Errorf("redis: empty answer from a script")
	}
	switch str(answer[0]) {
	case "ok":
		return nil
	case "notfound":
		return notFound
	case "exists":
		id := ""
		if len(answer) > 1 {
			id = str(answer[1])
		}
		return fmt.Errorf("redis: delivery %s: %w", id, task.ErrExists)
	}
	return fmt.Errorf("redis: unexpected answer %v from a script", answer)
}

// stringArgs returns ids as script arguments.
func stringArgs(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// Interface guards.
var (
	_ task.Store    = (*Store)(nil)
	_ webhook.Store = (*Store)(nil)
)

// IdempotencyGet returns a live idempotency record; see task.Store.
func (s *Store) IdempotencyGet(ctx context.Context, accountID, key string, since time.Time) (*task.Idempotency, error) {
	v, err := s.rdb.HMGet(ctx, s.shardOf(accountID).idemKey(idemRef(accountID, key)), "at", "json").Result()
	if err != nil {
		return nil, storeErr(err)
	}
	at, body := str(v[0]), str(v[1])
	// Times are fixed-width hex: they compare as strings.
	if at == "" || body == "" || at < hexTime(since) {
		return nil, nil
	}
	rec := new(task.Idempotency)
	if err := json.Unmarshal([]byte(body), rec); err != nil {
		return nil, fmt.Errorf("redis: decoding idempotency record: %w", err)
	}
	return rec, nil
}
