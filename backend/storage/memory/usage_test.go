package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/usage/usagetest"
)

func TestUsageStore(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) usage.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
