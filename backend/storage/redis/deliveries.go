package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
	"github.com/taskgate/taskgate/backend/webhook"
)

// ClaimDeliveries leases up to n due deliveries, earliest first; see
// webhook.Store.
//
// skip is Go and the claim is Lua, so the claim goes in rounds, each one
// script: a round leases what skip let through in the round before (each
// delivery only if it is still due where it was seen), then walks on from
// the earliest due delivery, URL by URL, past the URLs skip turned down (one
// member of dlv_due_heads each, whatever their backlog), and returns what
// it found for skip to be asked about, in order. A call thus asks skip about
// the deliveries and URLs a walk of one store would, in the same order, and
// takes two round trips when nothing is turned down, one more per round in
// which skip turns a URL down; without skip it is one script.
//
// skip runs between the rounds, not inside a transaction. Another node may
// take a delivery skip let through before this call's next round leases it:
// the call then returns without it, although skip counted it. Answers hold
// for the whole call: skip is not asked again about a delivery or a URL it
// answered for. When a round fails, what the call leased in that shard is
// made due again where it was (or, if Redis cannot be reached, when its
// lease ends and RescueDeliveries queues it); with shards, what the others
// gave is returned, and the error only when none gave anything.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, n int, leaseUntil time.Time, skip func(url string) bool) ([]*webhook.Delivery, error) {
	bound, lease := lexAtOrBefore(now), s.leaseArg(leaseUntil)
	order, err := s.dueShards(ctx, bound)
	if err != nil {
		return nil, err
	}
	out := []*webhook.Delivery{}
	asked := answers{turnedDown: make(map[string]bool), letThrough: make(map[string]bool)}
	for _, sh := range order {
		if len(out) >= n {
			break
		}
		c := deliveryClaim{s: s, sh: sh, bound: bound, lease: lease, remaining: n - len(out)}
		taken, err := c.claim(ctx, skip, &asked)
		if err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		out = append(out, taken...)
	}
	return out, nil
}

// dueShards returns the shards that have due deliveries, the one with the
// earliest first, so that a claim over shards takes the earliest first as
// far as its n goes; with one shard, that shard.
func (s *Store) dueShards(ctx context.Context, bound string) ([]*shard, error) {
	if len(s.shards) == 1 {
		return s.shards, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	heads := make([]*goredis.StringSliceCmd, len(s.shards))
	_, _ = s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, sh := range s.shards {
			heads[i] = p.ZRangeByLex(ctx, sh.dueHeadsKey(), &goredis.ZRangeBy{Min: "-", Max: bound, Count: 1})
		}
		return nil
	})
	// A shard that does not answer is left out of this claim; when none
	// answers, the claim fails.
	var due []*shard
	first := make(map[*shard]string)
	var failed error
	answered := 0
	for i, h := range heads {
		if err := h.Err(); err != nil {
			failed = cmp.Or(failed, err)
			continue
		}
		answered++
		if v := h.Val(); len(v) > 0 {
			due = append(due, s.shards[i])
			first[s.shards[i]] = v[0]
		}
	}
	if answered == 0 && failed != nil {
		return nil, s.fail(failed)
	}
	slices.SortFunc(due, func(a, b *shard) int { return strings.Compare(first[a], first[b]) })
	return due, nil
}

// answers holds what skip answered during one call, over its shards.
type answers struct {
	turnedDown map[string]bool // by URL
	letThrough map[string]bool // by delivery id
}

// claim claims up to c.remaining deliveries of c's shard.
func (c *deliveryClaim) claim(ctx context.Context, skip func(url string) bool, asked *answers) ([]*webhook.Delivery, error) {
	if skip == nil {
		taken, _, err := c.round(ctx, true)
		return taken, err
	}
	for u := range asked.turnedDown {
		c.excluded = append(c.excluded, u)
	}
	want := c.remaining
	out := []*webhook.Delivery{}
	for {
		taken, walked, err := c.round(ctx, false)
		if err != nil {
			c.s.unlease(ctx, out)
			return nil, err
		}
		out = append(out, taken...)
		progress := len(taken) > 0
		c.approved = c.approved[:0]
		for _, w := range walked {
			switch {
			case asked.turnedDown[w.url]:
			case asked.letThrough[w.id]:
				// Seen again: it moved after skip let it through.
				c.approved = append(c.approved, w.id, w.member)
			case skip(w.url):
				progress = true
				asked.turnedDown[w.url] = true
				c.excluded = append(c.excluded, w.url)
			default:
				progress = true
				asked.letThrough[w.id] = true
				c.approved = append(c.approved, w.id, w.member)
			}
		}
		c.remaining = want - len(out)
		if !progress || len(walked) == 0 {
			return out, nil
		}
	}
}

// deliveryClaim is one call of ClaimDeliveries on one shard.
type deliveryClaim struct {
	s            *Store
	sh           *shard
	bound, lease string
	// remaining is how many the call may still take.
	remaining int
	// excluded holds the URLs skip turned down; approved the id and the
	// member of each delivery it let through since the last round.
	excluded []string
	approved []string
}

// walked is a due delivery a round found.
type walked struct{ id, url, member string }

// round runs one round of the claim: it leases the approved deliveries
// and walks on, leasing what it finds too when takeAll.
func (c *deliveryClaim) round(ctx context.Context, takeAll bool) ([]*webhook.Delivery, []walked, error) {
	all := "0"
	if takeAll {
		all = "1"
	}
	args := make([]any, 0, 6+len(c.excluded)+len(c.approved))
	args = append(args, c.bound, c.lease, c.remaining, all, len(c.excluded))
	args = append(args, stringArgs(c.excluded)...)
	args = append(args, len(c.approved)/2)
	args = append(args, stringArgs(c.approved)...)
	v, err := c.s.run(ctx, scriptDlvClaim, c.sh.dueHeadsKey(), args...)
	if err != nil {
		return nil, nil, err
	}
	answer, err := values(v)
	if err != nil || len(answer) != 2 {
		return nil, nil, fmt.Errorf("redis: unexpected answer %v from ClaimDeliveries", v)
	}
	taken, err := decodeDeliveries(answer[0])
	if err != nil {
		return nil, nil, err
	}
	found, err := values(answer[1])
	if err != nil {
		return nil, nil, err
	}
	ws := make([]walked, 0, len(found)/3)
	for i := 0; i+3 <= len(found); i += 3 {
		ws = append(ws, walked{id: str(found[i]), url: str(found[i+1]), member: str(found[i+2])})
	}
	return taken, ws, nil
}

// unlease makes due again what a claim that failed leased, unless
// something happened to it since: each is fenced by its claim number, not
// by its lease, whose end the claim script may have read from Redis's
// clock.
func (s *Store) unlease(ctx context.Context, leased []*webhook.Delivery) {
	if len(leased) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*ioTimeout)
	defer cancel()
	byShard := s.byShard(len(leased), nil, func(i int) (string, []any) {
		return leased[i].AccountID, []any{leased[i].ID, leased[i].Claim}
	})
	// Failing, the leases end and RescueDeliveries queues them.
	_ = s.runEach(ctx, scriptDlvUnlease, byShard, (*shard).deliveryLeasesKey)
}

// RecordAttempt stores a delivery after an attempt and the deliveries in
// also; see webhook.Store.
func (s *Store) RecordAttempt(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery) error {
	if err := checkStatus(d.Status); err != nil {
		return err
	}
	attempts, err := jsonenc.Marshal(d.Attempts)
	if err != nil {
		return fmt.Errorf("redis: encoding the attempts of delivery %s: %w", d.ID, err)
	}
	next, err := d.NextAt.MarshalJSON()
	if err != nil {
		return fmt.Errorf("redis: delivery %s: %w", d.ID, err)
	}
	news, err := deliveryArgs(also)
	if err != nil {
		return err
	}
	args := append([]any{d.ID, string(d.Status), next, hexTime(d.NextAt), attempts, d.Claim}, news...)
	v, err := s.run(ctx, scriptDlvRecord, s.shardOf(d.AccountID).deliveryKey(d.ID), args...)
	if err != nil {
		return err
	}
	return outcome(v, webhook.ErrNotFound)
}

// GetDelivery returns the account's delivery with the id; see
// webhook.Store.
func (s *Store) GetDelivery(ctx context.Context, accountID, id string) (*webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := s.rdb.HMGet(ctx, s.shardOf(accountID).deliveryKey(id), "json", "st", "next", "att", "clm", "acct").Result()
	if err != nil {
		return nil, s.fail(err)
	}
	if v[0] == nil || str(v[5]) != accountID {
		return nil, webhook.ErrNotFound
	}
	return decodeDelivery(v[0], v[1], v[2], v[3], v[4])
}

// ListDeliveries returns the account's newest deliveries that match f; see
// webhook.Store. Each filter has an index of its own but the two together:
// with a request id and a status it reads that request's deliveries (a few
// per task) and keeps those with the status.
func (s *Store) ListDeliveries(ctx context.Context, accountID string, f webhook.Filter, limit int) ([]*webhook.Delivery, error) {
	if limit <= 0 {
		return []*webhook.Delivery{}, s.ready(ctx)
	}
	sh := s.shardOf(accountID)
	key := sh.accountDeliveriesKey(accountID)
	switch {
	case f.RequestID != "":
		key = sh.requestDeliveriesKey(accountID, f.RequestID)
	case f.Status != "":
		key = sh.statusDeliveriesKey(accountID, string(f.Status))
	}
	v, err := s.run(ctx, scriptDlvList, key, limit, string(f.Status))
	if err != nil {
		return nil, err
	}
	return decodeDeliveries(v)
}

// RetryDelivery makes the account's delivery pending and due at now; see
// webhook.Store. A leased delivery is made pending when its attempt is
// recorded; every one is marked until its next claim (dlv_retry.lua).
func (s *Store) RetryDelivery(ctx context.Context, accountID, id string, now time.Time) (*webhook.Delivery, error) {
	next, err := now.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("redis: retrying delivery %s: %w", id, err)
	}
	v, err := s.run(ctx, scriptDlvRetry, s.shardOf(accountID).deliveryKey(id), accountID, id, next, hexTime(now))
	if err != nil {
		return nil, err
	}
	answer, err := values(v)
	if err != nil {
		return nil, err
	}
	if len(answer) == 6 && str(answer[0]) == "ok" {
		return decodeDelivery(answer[1], answer[2], answer[3], answer[4], answer[5])
	}
	if len(answer) == 1 && str(answer[0]) == "notfound" {
		return nil, webhook.ErrNotFound
	}
	return nil, fmt.Errorf("redis: unexpected answer %v from RetryDelivery", answer)
}

// RescueDeliveries makes claimable again the deliveries whose lease ended
// before expiredBefore, a batch per script; see webhook.Store.
func (s *Store) RescueDeliveries(ctx context.Context, expiredBefore time.Time) (int, error) {
	return s.inBatchesEach(ctx, scriptDlvRescue, (*shard).deliveryLeasesKey, s.boundBefore(expiredBefore))
}

// ExtendDeliveryLeases moves the lease end of the deliveries still leased
// under the given claims; see webhook.Store.
func (s *Store) ExtendDeliveryLeases(ctx context.Context, claims []webhook.Claim, leaseUntil time.Time) error {
	if len(claims) == 0 {
		return s.ready(ctx)
	}
	byShard := s.byShard(len(claims), []any{s.leaseArg(leaseUntil)}, func(i int) (string, []any) {
		return claims[i].AccountID, []any{claims[i].ID, claims[i].Claim}
	})
	return s.runEach(ctx, scriptDlvExtend, byShard, (*shard).deliveryLeasesKey)
}

// CountDeliveries returns the number of deliveries with the status; see
// webhook.Store.
func (s *Store) CountDeliveries(ctx context.Context, status webhook.Status) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cmds := make([]*goredis.StringCmd, len(s.shards))
	if _, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, sh := range s.shards {
			cmds[i] = p.HGet(ctx, sh.deliveryCountsKey(), string(status))
		}
		return nil
	}); err != nil && !errors.Is(err, goredis.Nil) {
		return 0, s.fail(err)
	}
	total := 0
	for _, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return 0, s.fail(err)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("redis: the count of %s deliveries: %w", status, err)
		}
		total += n
	}
	return total, nil
}

// deliveryArgs returns the script arguments that store deliveries pending,
// whatever their Status: their number, then ten fields each (see
// checkNew in lua/prelude.lua).
func deliveryArgs(deliveries []*webhook.Delivery) ([]any, error) {
	args := make([]any, 0, 1+10*len(deliveries))
	args = append(args, len(deliveries))
	for i, d := range deliveries {
		if d == nil || d.ID == "" {
			return nil, fmt.Errorf("redis: delivery %d of %d has no id", i+1, len(deliveries))
		}
		stored := *d
		stored.Status, stored.Attempts = webhook.Pending, nil
		body, err := jsonenc.Marshal(&stored)
		if err != nil {
			return nil, fmt.Errorf("redis: encoding delivery %s: %w", d.ID, err)
		}
		next, err := d.NextAt.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("redis: delivery %s: %w", d.ID, err)
		}
		attempts, err := jsonenc.Marshal(d.Attempts)
		if err != nil {
			return nil, fmt.Errorf("redis: encoding the attempts of delivery %s: %w", d.ID, err)
		}
		args = append(args, d.ID, body, next, hexTime(d.NextAt), attempts, d.AccountID, d.RequestID, d.URL,
			member(invHex(d.CreatedAt), d.ID), member(hexTime(d.CreatedAt), d.ID))
	}
	return args, nil
}

// decodeDelivery builds a delivery from its fields in Redis: the JSON it
// was stored with, its status, NextAt (JSON), attempts (JSON) and the
// number of its last claim (nil before any).
func decodeDelivery(body, status, next, attempts, claim any) (*webhook.Delivery, error) {
	d := new(webhook.Delivery)
	if err := json.Unmarshal([]byte(str(body)), d); err != nil {
		return nil, fmt.Errorf("redis: decoding a delivery: %w", err)
	}
	d.Status = webhook.Status(str(status))
	if err := d.NextAt.UnmarshalJSON([]byte(str(next))); err != nil {
		return nil, fmt.Errorf("redis: decoding the NextAt of delivery %s: %w", d.ID, err)
	}
	d.Attempts = nil
	if err := json.Unmarshal([]byte(str(attempts)), &d.Attempts); err != nil {
		return nil, fmt.Errorf("redis: decoding the attempts of delivery %s: %w", d.ID, err)
	}
	// A nil RawMessage is stored as null; give back nil.
	if string(d.Body) == "null" {
		d.Body = nil
	}
	if claim != nil {
		n, err := strconv.Atoi(str(claim))
		if err != nil {
			return nil, fmt.Errorf("redis: decoding the claim of delivery %s: %w", d.ID, err)
		}
		d.Claim = n
	}
	return d, nil
}

// decodeDeliveries decodes a script's list of deliveries, five values
// each.
func decodeDeliveries(v any) ([]*webhook.Delivery, error) {
	list, err := values(v)
	if err != nil {
		return nil, err
	}
	out := make([]*webhook.Delivery, 0, len(list)/5)
	for i := 0; i+5 <= len(list); i += 5 {
		d, err := decodeDelivery(list[i], list[i+1], list[i+2], list[i+3], list[i+4])
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// checkStatus tells whether s is a status of a delivery.
func checkStatus(s webhook.Status) error {
	switch s {
	case webhook.Pending, webhook.Delivered, webhook.Failed:
		return nil
	}
	return fmt.Errorf("redis: unknown delivery status %q", s)
}
