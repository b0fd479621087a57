package redis_test

import (
	"strings"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/account/accounttest"
	"github.com/taskgate/taskgate/backend/storage/redis"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestAccountStore runs the suite on one redis-server, each subtest under
// a prefix of its own.
func TestAccountStore(t *testing.T) {
	srv := redistest.Start(t)
	accounttest.Run(t, func(t *testing.T) account.Store { return openStore(t, srv.URL(), subtestPrefix(t)) })
}

// TestAccountStoreDurable reopens the store on a redis-server restarted in
// between: what a write acknowledged is in Redis's append-only file, not
// in the client.
func TestAccountStoreDurable(t *testing.T) {
	srv := redistest.Start(t)
	opened := false
	accounttest.RunDurable(t, func(t *testing.T, _ string) accounttest.Store {
		if opened {
			srv.Restart()
		}
		opened = true
		return openStore(t, srv.URL(), "durable")
	})
}

// openStore opens a store on the redis-server at url, with the prefix,
// and closes it when the test ends.
func openStore(t *testing.T, url, prefix string, opts ...redis.Option) *redis.Store {
	t.Helper()
	s, err := redis.Open(t.Context(), url, append([]redis.Option{redis.WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// subtestPrefix is a key prefix unique to the (sub)test.
func subtestPrefix(t *testing.T) string {
	return strings.ReplaceAll(t.Name(), "/", ".")
}
