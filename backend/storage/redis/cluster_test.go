package redis_test

import (
	"strings"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/account/accounttest"
	"github.com/taskgate/taskgate/backend/task/tasktest"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/usage/usagetest"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestCluster runs the stores' conformance suites on a real Redis Cluster
// of three masters, each subtest's store under a prefix (a hash tag) of
// its own, so that the subtests' keys land on every master: every script
// and every call must work through the cluster client, routed by its
// declared key.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t, 3)
	t.Run("Tasks", func(t *testing.T) {
		tasktest.Run(t, func(t *testing.T) tasktest.Store { return openStore(t, c.URL(), subtestPrefix(t)) })
	})
	t.Run("Accounts", func(t *testing.T) {
		accounttest.Run(t, func(t *testing.T) account.Store { return openStore(t, c.URL(), subtestPrefix(t)) })
	})
	t.Run("Usage", func(t *testing.T) {
		usagetest.Run(t, func(t *testing.T) usage.Store { return openStore(t, c.URL(), subtestPrefix(t)) })
	})
	// The subtests' prefixes spread their stores over the masters.
	var sizes []string
	for _, m := range c.Masters {
		n, err := m.Command("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		n = strings.TrimSpace(strings.TrimPrefix(n, ":"))
		if n == "0" {
			t.Errorf("master %s holds no key", m.Addr())
		}
		sizes = append(sizes, n)
	}
	t.Logf("keys per master: %s", strings.Join(sizes, ", "))
}
