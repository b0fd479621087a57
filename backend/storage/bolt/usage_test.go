package bolt_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/backend/usage/usagetest"
)

func TestUsageStore(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) usage.Store { return open(t, t.TempDir()) })
}

func TestUsageStoreDurable(t *testing.T) {
	usagetest.RunDurable(t, func(t *testing.T, dir string) usagetest.Store { return open(t, dir) })
}
