// Package tasktest is the conformance suite of task.Store and
// webhook.Store, which every store implements together (deliveries enter
// the store with the end of their task). Every store implementation runs it
// from its own tests and passes it unchanged, so the engine can rely on one
// contract whatever the storage.
package tasktest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// The accounts, types and times the suite works with. accountC and the
// group and task ids of the list tests are chosen so that stores which
// concatenate key parts without a separator or length would mix them up.
const (
	accountA = "acme"
	accountB = "acme.eu"
	accountC = "acm"
	typePAN  = "verify_with_source/ind_pan"
	typeGST  = "verify_with_source/ind_gst"
)

// base is the suite's "now": nanoseconds and a zone other than UTC, so a
// store that loses either is caught.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.FixedZone("IST", 5*3600+30*60))

// farFuture is later than any lease; it is beyond what int64 nanoseconds
// since 1970 can hold, which stores must cope with.
var farFuture = time.Date(9999, time.December, 31, 0, 0, 0, 0, time.UTC)

// Store is what the suite tests: a store of tasks, of their webhook
// deliveries and of the quota counters their ends give units back to.
type Store interface {
	task.Store
	webhook.Store
	quota.Store
}

// Run tests the contracts of task.Store and webhook.Store on stores made
// by open, a new empty one for every subtest. The subtests run in
// parallel; open should register the store's Close with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s task.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"CreateCanceled", testCreateCanceled},
		{"GetNotFound", testGetNotFound},
		{"Find", testFind},
		{"Copies", testCopies},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"ListByGroup", testListByGroup},
		{"ListByTaskID", testListByTaskID},
		{"Claim", testClaim},
		{"Finish", testFinish},
		{"FinishNotTerminal", testFinishNotTerminal},
		{"FinishRefunds", testFinishRefunds},
		{"FinishRescued", testFinishRescued},
		{"ClaimTakesTurns", testClaimTakesTurns},
		{"ClaimLightBehindHeavy", testClaimLightBehindHeavy},
		{"ReleaseKeepsTurns", testReleaseKeepsTurns},
		{"ClaimModel", testClaimModel},
		{"ShardsTakeTurns", testShardsTakeTurns},
		{"RescuesCounted", testRescuesCounted},
		{"Release", testRelease},
		{"ReleaseStaleClaim", testReleaseStaleClaim},
		{"Rescue", testRescue},
		{"ExtendLeases", testExtendLeases},
		{"LostClaim", testLostClaim},
		{"QueueDepth", testQueueDepth},
		{"Purge", testPurge},
		{"Concurrency", testConcurrency},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
	for _, tc := range deliveryTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// RunDurable tests that a persistent store keeps everything across Close
// and a new open of the same directory: tasks, results, idempotency
// records, queue order, leases and webhook deliveries. open is called more
// than once with the same dir; it should register each store's Close with
// t.Cleanup.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) Store) {
	t.Run("Tasks", func(t *testing.T) {
		t.Parallel()
		runDurableTasks(t, func(t *testing.T, dir string) task.Store { return open(t, dir) })
	})
	t.Run("Deliveries", func(t *testing.T) {
		t.Parallel()
		runDurableDeliveries(t, open)
	})
}

// lastID numbers request ids, so that no two tasks of a test binary share
// one, even across stores.
var lastID atomic.Uint64

// benchID numbers the request ids of CreateParallel.
var benchID atomic.Uint64
