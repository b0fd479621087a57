package memory_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/account/accounttest"
	"github.com/taskgate/taskgate/backend/storage/memory"
)

func TestAccountStore(t *testing.T) {
	accounttest.Run(t, func(t *testing.T) account.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
