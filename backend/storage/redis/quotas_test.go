package redis_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/quota/quotatest"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestQuotaStore runs the suite on one redis-server, each subtest under a
// prefix of its own.
func TestQuotaStore(t *testing.T) {
	srv := redistest.Start(t)
	quotatest.Run(t, func(t *testing.T) quota.Store { return openStore(t, srv.URL(), subtestPrefix(t)) })
}
