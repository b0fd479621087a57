package redis

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Account change notices: a node that changes an account publishes its id
// on the channel accounts:changes (with the store's prefix), and every
// node drops what it cached of the account. Pub/Sub delivers at most
// once, to whoever is subscribed at the time: a node that was cut off
// reloads every account instead of what it missed.

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
	noticeRetryMax = 2 * time.Second
)

// PublishAccountChange tells the nodes in SubscribeAccountChanges that the
// account with the id changed.
func (s *Store) PublishAccountChange(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return storeErr(s.rdb.Publish(ctx, s.noticeChannel(), id).Err())
}

// SubscribeAccountChanges receives account change notices until ctx ends,
// then returns nil; it returns ErrClosed, before, when the store is
// closed. It calls onChange with the id of each notice, and onReconnect
// each time it is subscribed again after losing its connection: notices
// published meanwhile are lost, so onReconnect should reload every
// account. The first subscription calls neither: notices published before
// it are not received. Both run in the calling goroutine, one at a time,
// and should be quick: while they run, notices wait in Redis's buffer of
// the connection, and a full buffer makes Redis drop the connection (and
// onReconnect follow). While Redis is out of reach, it tries again with
// growing pauses.
func (s *Store) SubscribeAccountChanges(ctx context.Context, onChange func(id string), onReconnect func()) error {
	channel := s.noticeChannel()
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
		subscribed bool // a confirmation came: the next one is a reconnection
		pinged     bool // a PING is unanswered
		retry      = noticeRetryMin
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
			if subscribed {
				onReconnect()
			}
			subscribed = true
		case *goredis.Message:
			onChange(m.Payload)
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
