package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/storage/memory"
	"github.com/taskgate/taskgate/backend/task/tasktest"
)

// BenchmarkCreateParallel measures Creates from 32 goroutines.
func BenchmarkCreateParallel(b *testing.B) {
	s := memory.New()
	b.Cleanup(func() { s.Close() })
	tasktest.CreateParallel(b, s, 32)
}
