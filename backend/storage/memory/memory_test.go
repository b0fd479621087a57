package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task/tasktest"
)

func TestStore(t *testing.T) {
	tasktest.Run(t, func(t *testing.T) tasktest.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
