package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/taskgate/taskgate/backend/node"
)

// Notices between nodes, on Pub/Sub channels (with the store's prefix):
// accounts:changes carries the id of each account that changed, so that
// every node reloads it; tasks:ended the request id of each task that
// ended, so that every node wakes its waiters of it. Pub/Sub delivers at
// most once, to whoever is subscribed at the time: a subscriber is told
// each time it is subscribed, the first time included, so that it
// catches up on what it may have missed (reloads every account, wakes
// every waiter to look at the store).

const (
	// noticeCheckInterval is how long a subscription may hear nothing
	// before it sends a PING; when it then hears nothing, not even the
	// PONG, for as long again, its connection is dead without having
	// failed (a partition, a load balancer dropping idle connections) and
	// a new subscription replaces it.
	noticeCheckInterval = 3 * time.Second
	// The pause between attempts to reach a Redis that is down doubles
	// from noticeRetryMin up to noticeRetryMax.
	noticeRetryMin = 50 * time.Millisecond
	noticeRetryMax = 250 * time.Millisecond
)

// PublishAccountChange tells the nodes in SubscribeAccountChanges that the
// account with the id changed.
func (s *Store) PublishAccountChange(ctx context.Context, id string) error {
	return s.publish(ctx, s.noticeChannel(), id)
}

// SubscribeAccountChanges receives account change notices (see subscribe):
// onChange gets the id of each account that changed; onSubscribed should
// reload every account.
func (s *Store) SubscribeAccountChanges(ctx context.Context, onChange func(id string), onSubscribed func()) error {
	return s.subscribe(ctx, s.noticeChannel(), onChange, onSubscribed)
}

// PublishTaskEnd tells the nodes in SubscribeTaskEnds that the task with
// the request id ended.
func (s *Store) PublishTaskEnd(ctx context.Context, requestID string) error {
	return s.publish(ctx, s.key("tasks", "ended"), requestID)
}

// SubscribeTaskEnds receives task end notices (see subscribe): onEnd gets
// the request id of each task that ended; onSubscribed should wake every
// waiter, to look at the store.
func (s *Store) SubscribeTaskEnds(ctx context.Context, onEnd func(requestID string), onSubscribed func()) error {
	return s.subscribe(ctx, s.key("tasks", "ended"), onEnd, onSubscribed)
}

func (s *Store) publish(ctx context.Context, channel, payload string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return storeErr(s.rdb.Publish(ctx, channel, payload).Err())
}

// subscribe receives the notices of the channel until ctx ends, then
// returns nil; it returns ErrClosed, before, when the store is closed. It
// calls onNotice with the payload of each notice, and onSubscribed each
// time it is subscribed, the first time and after losing its connection:
// notices published before are lost to it. Both run in the calling
// goroutine, one at a time, and should be quick: while they run, notices
// wait in Redis's buffer of the connection, and a full buffer makes Redis
// drop the connection (and onSubscribed follow). While Redis is out of
// reach, it tries again with growing pauses.
func (s *Store) subscribe(ctx context.Context, channel string, onNotice func(string), onSubscribed func()) error {
	sub := &noticeSubscription{}
	// Receiving does not heed the context: closing the subscription ends
	// a receive that waits.
	stop := context.AfterFunc(ctx, sub.close)
	defer func() {
		stop()
		sub.close()
	}()
	// An error of the first SUBSCRIBE is the receive's too: go-redis
	// remembers the channel and subscribes on its next connection.
	ps := sub.replace(s.rdb.Subscribe(ctx, channel))
	var (
		pinged bool // a PING is unanswered
		retry  = noticeRetryMin
	)
	for {
		msg, err := ps.ReceiveTimeout(ctx, noticeCheckInterval)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			switch {
			case errors.Is(err, goredis.ErrClosed):
				// Only the store's Close: the subscription is closed
				// when ctx ends, handled above.
				return ErrClosed
			case isReadTimeout(err) && !pinged:
				// A failed PING fails the next receive, which
				// reconnects.
				_ = ps.Ping(ctx)
				pinged = true
			case isReadTimeout(err):
				ps = sub.replace(s.rdb.Subscribe(ctx, channel))
				pinged = false
			default:
				// go-redis dropped the connection and dials again at
				// the next receive.
				if !waitOrDone(ctx, retry) {
					return nil
				}
				retry = min(2*retry, noticeRetryMax)
			}
			continue
		}
		pinged, retry = false, noticeRetryMin
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			onSubscribed()
		case *goredis.Message:
			onNotice(m.Payload)
		}
	}
}

// noticeChannel is the channel of account change notices.
func (s *Store) noticeChannel() string { return s.key("accounts", "changes") }

// noticeSubscription holds the PubSub that SubscribeAccountChanges receives
// from, for the context to close it from another goroutine.
type noticeSubscription struct {
	mu     sync.Mutex
	ps     *goredis.PubSub
	closed bool
}

// replace closes the current PubSub and makes ps current; it closes ps
// too when the subscription is closed already. It returns ps.
func (s *noticeSubscription) replace(ps *goredis.PubSub) *goredis.PubSub {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps != nil {
		_ = s.ps.Close()
	}
	s.ps = ps
	if s.closed {
		_ = ps.Close()
	}
	return ps
}

// close closes the current PubSub, and any that replaces it. It may be
// called more than once.
func (s *noticeSubscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.ps != nil {
		_ = s.ps.Close()
	}
}

// isReadTimeout tells whether err is a receive's read timeout.
func isReadTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitOrDone waits for d, or until ctx ends; it reports whether it waited
// the whole d.
func waitOrDone(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// NodeBeat stores a node's state, by its id, in the hash nodes, stamped
// with Redis's time, and forgets the beats silent for longer than
// node.ForgetAfter; see node.Beats.
func (s *Store) NodeBeat(ctx context.Context, id string, state []byte) error {
	return scriptNodeBeat.Run(ctx, s.rdb, []string{s.key("nodes")}, s.prefix, id, state, node.ForgetAfter.Microseconds()).Err()
}

// NodeStates returns every node's last beat, by id, and Redis's time, read
// in one script on the server that stamped the beats.
func (s *Store) NodeStates(ctx context.Context) (map[string]node.Beat, time.Time, error) {
	v, err := scriptNodeStates.Run(ctx, s.rdb, []string{s.key("nodes")}, s.prefix).StringSlice()
	if err != nil {
		return nil, time.Time{}, s.fail(err)
	}
	if len(v) < 2 || len(v)%2 != 0 {
		return nil, time.Time{}, fmt.Errorf("redis: unexpected answer of %d values from the node states", len(v))
	}
	sec, err1 := strconv.ParseInt(v[0], 10, 64)
	usec, err2 := strconv.ParseInt(v[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, time.Time{}, fmt.Errorf("redis: unexpected time %q %q from the node states", v[0], v[1])
	}
	now := time.Unix(sec, usec*1000)
	beats := make(map[string]node.Beat, len(v)/2-1)
	for i := 2; i < len(v); i += 2 {
		id, v := v[i], v[i+1]
		at, state, ok := strings.Cut(v, "|")
		us, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			// Not a beat of this layout: listed as long silent, and
			// forgotten.
			beats[id] = node.Beat{}
			continue
		}
		beats[id] = node.Beat{State: []byte(state), At: time.UnixMicro(us)}
	}
	return beats, now, nil
}

// NodeForget deletes the beats of the nodes with the ids.
func (s *Store) NodeForget(ctx context.Context, ids ...string) error {
	return s.rdb.HDel(ctx, s.key("nodes"), ids...).Err()
}
