package bolt_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/account/accounttest"
)

func TestAccountStore(t *testing.T) {
	accounttest.Run(t, func(t *testing.T) account.Store { return open(t, t.TempDir()) })
}

func TestAccountStoreDurable(t *testing.T) {
	accounttest.RunDurable(t, func(t *testing.T, dir string) accounttest.Store { return open(t, dir) })
}
