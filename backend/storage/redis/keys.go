package redis

// The layout of tasks and webhook deliveries in Redis.
//
// Every key below starts with the prefix of a shard (shards.go): "{tg}:"
// with one shard (the default), whose braces make it the hash tag of the
// shard's keys, so that a Lua script may touch any key of its shard. Each
// shard has every index below for the accounts it holds; the format, the
// number of shards, the accounts, the maintenance windows and the notices
// are under the deployment's own "{tg}:". Go builds keys with the shard's
// key methods; a script builds the keys it cannot be told in advance (a
// task's queue, a delivery's indexes) with the functions of
// lua/prelude.lua from the shard's prefix it gets as ARGV[1], by the same
// rules (keys_test.go checks that both agree). A part of a key that is followed
// by another is length-prefixed ("4:acme"), so that no two tuples share a
// key; the last part is written as is.
//
// Times are kept at nanoseconds, in two forms. Where only Go reads them
// they are JSON (time.Time's, which keeps the nanoseconds and the zone).
// Where Redis orders them they are 16 lowercase hex digits of the instant
// as a sortable uint64 (nanoseconds since 1970 with the sign bit flipped,
// clamped to the years 1678–2262: see sortable), so that byte order is time
// order. A double score cannot hold nanoseconds, so every time-ordered
// index is a sorted set whose scores are all 0 and whose members are
// "<hex time>:<id>": Redis orders them by bytes, that is by time then id,
// and ZRANGEBYLEX reads a time range ("(<hex>" is "before", "(<hex>;" "at
// or before", since ';' follows ':'). Lists that go newest first use the
// complement of the time (invHex).
//
// The store's format:
//
//	format                       string: the layout's name (formatVersion),
//	                             under the deployment's prefix
//	shards                       string: the number of shards, the same
//	                             (none: one)
//
// The nodes (notices.go), under the deployment's prefix:
//
//	nodes                        hash: node id → the node's last beat,
//	                             JSON (node.State), written every 2 s;
//	                             a node silent for 10 minutes is deleted
//	                             by the next node that lists them
//
// Tasks:
//
//	task:<request id>            hash: json (the task as created, as JSON),
//	                             end (its terminal fields as JSON, once
//	                             finished), att (Attempts), type, seq (its
//	                             place in its queue, for life), lease (its
//	                             member of task_leases while leased), acct,
//	                             grp and tid (group and task id, when not
//	                             empty), lm (its member of the list indexes)
//	task_seq                     string: the last seq or turn given (INCR)
//	task_aq:<type>:<account>     zset: the account's queued request ids of
//	                             the type, scored by seq (the type is
//	                             length-prefixed and the account follows
//	                             it: "task_aq:26:verify_with_source/ind_panacme")
//	task_ring:<type>             zset: the accounts with queued tasks of the
//	                             type, scored by their turn: a claim serves
//	                             the lowest and gives it the next turn
//	task_depth                   hash: type → number of queued tasks, for
//	                             the types that have any
//	task_queues                  set: the types whose queue is not empty,
//	                             kept for the nodes of the layout before
//	                             (task_migrate finds their queues by it)
//	task_leases                  zset: "<lease end>:<request id>"
//	task_group:<account>:<group> zset: "<inverted creation>:<request id>"
//	task_taskid:<account>:<id>   zset: the same, by task id
//	task_completed               zset: "<completion>:<request id>" of the
//	                             terminal tasks, for Purge
//	idem:<account>:<key>         hash: json (the task.Idempotency), at (its
//	                             creation, hex)
//	idem_age                     zset: "<creation>:<account>:<key>", for Purge
//
// Deliveries:
//
//	dlv:<id>                     hash: json (the delivery as stored, but for
//	                             what changes), st (Status), next (NextAt as
//	                             JSON), nts (NextAt, hex), att (Attempts as
//	                             JSON), acct, rid, url, cm (its member of
//	                             the list indexes), em (of dlv_ended), due
//	                             (its member of dlv_due:<url> while due),
//	                             lease (of dlv_leases while leased), retry
//	                             ("1": RetryDelivery since its last claim),
//	                             clm (the number of its last claim)
//	dlv_due:<url>                zset: "<NextAt>:<id>" of the URL's due
//	                             deliveries
//	dlv_due_heads                zset: the first member of every
//	                             dlv_due:<url>, so that a claim walks the
//	                             URLs by their earliest due delivery and
//	                             passes over a URL skip turned down at the
//	                             cost of one member, whatever its backlog
//	dlv_leases                   zset: "<lease end>:<id>"
//	dlv_account:<account>        zset: "<inverted creation>:<id>"
//	dlv_request:<account>:<rid>  zset: the same, by request id
//	dlv_status:<account>:<st>    zset: the same, by status
//	dlv_ended                    zset: "<creation>:<id>" of the delivered
//	                             and failed ones, for Purge
//	dlv_counts                   hash: status → number of deliveries
//
// A pending delivery is either due (in dlv_due:<url>, and so in the heads
// when it is its URL's earliest) or leased (in dlv_leases); an ended one is
// in dlv_ended. A queued task is in its account's queue of its type, and
// the account in the type's ring; a leased one in task_leases; a terminal
// one in task_completed. The layout before queues by account had one
// zset per type, task_queue:<type>; Open, and Rescue on every node, move
// what such a zset holds into the accounts' queues (lua/task_migrate.lua),
// so that nodes of both kinds may share a Redis during an upgrade.
//
// Durability: a change is one script, which Redis applies whole, and a
// call returns once Redis has answered, that is once the change is in
// Redis's memory and, with appendonly yes, written to the append-only
// file. Whether that file is synced before the answer is the operator's
// choice of appendfsync: always (what the tests run) loses nothing a call
// returned for; everysec may lose the last second on a crash of the host.

import (
	"encoding/hex"
	"strconv"
	"time"

	"github.com/taskgate/taskgate/backend/internal/sortkey"
)

// sortable returns t as a number whose order is the instants' order.
func sortable(t time.Time) uint64 { return sortkey.Time(t) }

// hexUint64 is v as 16 lowercase hex digits.
func hexUint64(v uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// hexTime is t in the form that sorts like time: 16 hex digits.
func hexTime(t time.Time) string { return hexUint64(sortable(t)) }

// invHex is t in the form that sorts against time, for lists that go
// newest first.
func invHex(t time.Time) string { return hexUint64(^sortable(t)) }

// member is the member of a time-ordered index: the time's 16 hex digits,
// ':', the id.
func member(hexT, id string) string { return hexT + ":" + id }

// leaseArg is the script argument of a lease end: its hex time, or, with
// the server's clock, "@<ns>", that far after Redis's TIME as t is after
// the caller's now (lua/prelude.lua's timeArg).
func (s *Store) leaseArg(t time.Time) string {
	if s.clock == nil {
		return hexTime(t)
	}
	return "@" + strconv.FormatInt(int64(t.Sub(s.clock())), 10)
}

// boundBefore is the ZRANGEBYLEX bound of the lease ends before t, as
// leaseArg reads t (boundArg in the scripts).
func (s *Store) boundBefore(t time.Time) string { return "(" + s.leaseArg(t) }

// lexBefore is the ZRANGEBYLEX bound of the members whose time is before
// t; lexAtOrBefore of those at or before t.
func lexBefore(t time.Time) string     { return "(" + hexTime(t) }
func lexAtOrBefore(t time.Time) string { return "(" + hexTime(t) + ";" }

// part is a key part that another part follows: its length, ':', itself.
func part(s string) string { return strconv.Itoa(len(s)) + ":" + s }

// The keys that Go reads or declares; lua/prelude.lua builds the same.

func (sh shard) taskKey(requestID string) string { return sh.key("task", requestID) }
func (sh shard) ringKey(taskType string) string  { return sh.key("task_ring", taskType) }
func (sh shard) depthKey() string                { return sh.key("task_depth") }
func (sh shard) queuesKey() string               { return sh.key("task_queues") }

func (sh shard) accountQueueKey(taskType, accountID string) string {
	return sh.key("task_aq", part(taskType)+accountID)
}

func (sh shard) legacyQueueKey(taskType string) string { return sh.key("task_queue", taskType) }
func (sh shard) taskLeasesKey() string                 { return sh.key("task_leases") }
func (sh shard) completedKey() string                  { return sh.key("task_completed") }
func (sh shard) seqKey() string                        { return sh.key("task_seq") }
func (sh shard) idemAgeKey() string                    { return sh.key("idem_age") }

func (sh shard) groupKey(accountID, groupID string) string {
	return sh.key("task_group", part(accountID), groupID)
}

func (sh shard) taskIDKey(accountID, taskID string) string {
	return sh.key("task_taskid", part(accountID), taskID)
}

// idemRef names an account's idempotency key: the end of its key in
// Redis and of its member of idem_age.
func idemRef(accountID, key string) string { return part(accountID) + ":" + key }

func (sh shard) idemKey(ref string) string { return sh.key("idem", ref) }

func (sh shard) deliveryKey(id string) string { return sh.key("dlv", id) }
func (sh shard) dueKey(url string) string     { return sh.key("dlv_due", url) }
func (sh shard) dueHeadsKey() string          { return sh.key("dlv_due_heads") }
func (sh shard) deliveryLeasesKey() string    { return sh.key("dlv_leases") }
func (sh shard) endedKey() string             { return sh.key("dlv_ended") }
func (sh shard) deliveryCountsKey() string    { return sh.key("dlv_counts") }
func (sh shard) accountDeliveriesKey(accountID string) string {
	return sh.key("dlv_account", accountID)
}

func (sh shard) requestDeliveriesKey(accountID, requestID string) string {
	return sh.key("dlv_request", part(accountID), requestID)
}

func (sh shard) statusDeliveriesKey(accountID string, status string) string {
	return sh.key("dlv_status", part(accountID), status)
}
