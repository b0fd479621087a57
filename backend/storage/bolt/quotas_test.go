package bolt_test

import (
	"testing"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/quota/quotatest"
)

func TestQuotaStore(t *testing.T) {
	quotatest.Run(t, func(t *testing.T) quota.Store { return open(t, t.TempDir()) })
}
