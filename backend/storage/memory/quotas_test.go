package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/quota/quotatest"
	"github.com/taskgate/taskgate/backend/storage/memory"
)

func TestQuotaStore(t *testing.T) {
	quotatest.Run(t, func(t *testing.T) quota.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
