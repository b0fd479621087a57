package redis

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
	"github.com/taskgate/taskgate/internal/redistest"
)

// TestServerClock checks leases on Redis's clock: a node whose clock runs
// an hour ahead does not take over a lease another node took a moment ago
// (as it does when leases run on the nodes' clocks), and does take it over
// once the lease has run out on Redis's clock; the same for deliveries.
func TestServerClock(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	behind := time.Now
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	a := openTest(t, srv.URL(), WithPrefix("clock"), WithServerClock(behind))
	b := openTest(t, srv.URL(), WithPrefix("clock"), WithServerClock(ahead))
	naive := openTest(t, srv.URL(), WithPrefix("clock"))
	const typeName = "verify_with_source/ind_pan"
	at := time.Now().UTC()
	tk := &task.Task{RequestID: "req-clock", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
		Status: task.InProgress, CreatedAt: at}
	if _, err := a.Create(ctx, tk, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}

	// A lease of a minute, on Redis's clock.
	if got, err := a.Claim(ctx, typeName, 1, behind().Add(time.Minute)); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if n, err := b.Rescue(ctx, ahead()); err != nil || n != 0 {
		t.Fatalf("Rescue by a node an hour ahead = %d, %v; want 0: the lease has a minute to run on Redis's clock", n, err)
	}
	// The same lease, as the nodes' clocks see it, has run out an hour
	// ago for the node ahead: on its clock it would take the task over.
	if err := a.ExtendLeases(ctx, []task.Claim{{RequestID: tk.RequestID, Attempts: 1}}, behind().Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	waitRescued := func(what string, rescue func() (int, error)) {
		t.Helper()
		deadline := time.NewTimer(5 * time.Second)
		defer deadline.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			n, err := rescue()
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				return
			}
			select {
			case <-tick.C:
			case <-deadline.C:
				t.Fatalf("%s: not rescued after the lease ran out on Redis's clock", what)
			}
		}
	}
	waitRescued("task", func() (int, error) { return b.Rescue(ctx, ahead()) })

	// What a node on its own clock would do: a lease it is given ends at
	// the time as written, and the node ahead rescues it at once.
	if got, err := naive.Claim(ctx, typeName, 1, time.Now().Add(time.Minute)); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if n, err := naive.Rescue(ctx, ahead()); err != nil || n != 1 {
		t.Fatalf("Rescue on the nodes' clocks by a node an hour ahead = %d, %v; want 1", n, err)
	}

	// Deliveries: the same.
	holder, err := a.Claim(ctx, typeName, 1, behind().Add(time.Minute))
	if err != nil || len(holder) != 1 {
		t.Fatalf("Claim = %v, %v", holder, err)
	}
	end := *holder[0]
	done := at.Add(time.Second)
	end.Status, end.CompletedAt = task.Completed, &done
	d := &webhook.Delivery{ID: "dlv-clock", AccountID: "acme", RequestID: tk.RequestID, URL: "https://hooks.example/x",
		Event: webhook.EventTask, Body: []byte(`{}`), CreatedAt: at, NextAt: at}
	if err := a.Finish(ctx, &end, []*webhook.Delivery{d}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ClaimDeliveries(ctx, behind(), 1, behind().Add(time.Minute), nil); err != nil || len(got) != 1 {
		t.Fatalf("ClaimDeliveries = %v, %v", got, err)
	}
	if n, err := b.RescueDeliveries(ctx, ahead()); err != nil || n != 0 {
		t.Fatalf("RescueDeliveries by a node an hour ahead = %d, %v; want 0", n, err)
	}
	if err := a.ExtendDeliveryLeases(ctx, []webhook.Claim{{ID: d.ID, Claim: 1}}, behind().Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	waitRescued("delivery", func() (int, error) { return b.RescueDeliveries(ctx, ahead()) })
}

// TestClaimDeliveriesGivesBack checks that a claim whose later round
// fails makes due again, at once, what its earlier rounds leased: with
// leases on the nodes' clocks and on Redis's alike. skip lets the first
// URL through and turns the second down, so that a second round leases
// the first delivery and walks on to the third; skip, asked about that
// one, ends the call's context, and the third round fails.
func TestClaimDeliveriesGivesBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"nodes' clock", nil},
		{"Redis's clock", []Option{WithServerClock(time.Now)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			srv := redistest.Start(t)
			s := openTest(t, srv.URL(), append([]Option{WithPrefix("giveback")}, tc.opts...)...)
			at := time.Now().UTC().Add(-time.Minute)
			tk := &task.Task{RequestID: "req-giveback", AccountID: "acme", Action: "verify_with_source", Type: "ind_pan",
				Status: task.InProgress, CreatedAt: at}
			if _, err := s.Create(ctx, tk, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			end := *tk
			end.Status, end.CompletedAt = task.Completed, &at
			urls := []string{"https://one.example/", "https://two.example/", "https://three.example/"}
			var ds []*webhook.Delivery
			for i, u := range urls {
				ds = append(ds, &webhook.Delivery{ID: fmt.Sprintf("dlv-%d", i), AccountID: "acme", RequestID: tk.RequestID,
					URL: u, Event: webhook.EventTask, Body: []byte(`{}`), Status: webhook.Pending,
					CreatedAt: at, NextAt: at.Add(time.Duration(i) * time.Millisecond)})
			}
			if err := s.Finish(ctx, &end, ds, nil); err != nil {
				t.Fatal(err)
			}

			claimCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			var asked []string
			skip := func(url string) bool {
				asked = append(asked, url)
				switch url {
				case urls[1]:
					return true
				case urls[2]:
					cancel()
				}
				return false
			}
			got, err := s.ClaimDeliveries(claimCtx, time.Now(), 2, time.Now().Add(time.Hour), skip)
			if err == nil || len(got) != 0 {
				t.Fatalf("ClaimDeliveries with its context ended in its third round = %v, %v; want an error alone (skip asked about %v)", got, err, asked)
			}

			// Given back: due at once, not when the hour's lease ends.
			got, err = s.ClaimDeliveries(ctx, time.Now(), 10, time.Now().Add(time.Hour), nil)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
			}
			if want := []string{"dlv-0", "dlv-1", "dlv-2"}; !slices.Equal(ids, want) {
				t.Fatalf("after the failed claim, ClaimDeliveries = %v; want %v: what the failed claim leased is due again", ids, want)
			}
		})
	}
}
