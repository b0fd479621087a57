package redis

import (
	"testing"

	"github.com/taskgate/taskgate/backend/usage"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestAddUsageDamagedRow: a row whose key is damaged (another type) fails
// its counts as the transaction runs, the other rows' counts applied all
// the same. The call answers them stored: a caller that wrote them again
// would count them twice, at every flush, for ever.
func TestAddUsageDamagedRow(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, redistest.Start(t).URL(), WithPrefix("damaged"))
	good := usage.Row{AccountID: "acme", Day: "2030-01-02", TaskType: "a", Counts: usage.Counts{Requests: 3}}
	damaged := usage.Row{AccountID: "acme", Day: "2030-01-02", TaskType: "b", Counts: usage.Counts{Requests: 5}}
	if err := s.rdb.Set(ctx, s.usageRowKey(damaged.AccountID, damaged.Day, damaged.TaskType), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsage(ctx, []usage.Row{good, damaged}); err != nil {
		t.Fatalf("AddUsage with a damaged row: %v; want both answered stored (the good one was)", err)
	}
	n, err := s.rdb.HGet(ctx, s.usageRowKey(good.AccountID, good.Day, good.TaskType), fieldRequests).Int64()
	if err != nil || n != 3 {
		t.Errorf("the good row counts %d requests, %v; want 3", n, err)
	}
}
