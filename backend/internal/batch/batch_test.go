package batch

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestQueue adds 1,000 items from as many goroutines at once to a queue
// whose Send records its batches: every item is sent once, no batch is
// over its bounds, and the items go together.
func TestQueue(t *testing.T) {
	var mu sync.Mutex
	var batches [][]int
	var done sync.WaitGroup
	q := &Queue[int]{
		Max: 64, Senders: 2, Size: func(int) int { return 10 }, MaxSize: 300,
		Send: func(batch []int) {
			mu.Lock()
			batches = append(batches, slices.Clone(batch))
			mu.Unlock()
			for range batch {
				done.Done()
			}
		},
	}
	done.Add(1000)
	start := make(chan struct{})
	var adders sync.WaitGroup
	for i := range 1000 {
		adders.Go(func() {
			<-start
			q.Add(i)
		})
	}
	close(start)
	adders.Wait()
	done.Wait()

	mu.Lock()
	defer mu.Unlock()
	seen := map[int]bool{}
	for _, b := range batches {
		if len(b) > 30 {
			t.Errorf("a batch of %d items, over MaxSize (30 items of 10)", len(b))
		}
		for _, i := range b {
			if seen[i] {
				t.Errorf("item %d sent twice", i)
			}
			seen[i] = true
		}
	}
	if len(seen) != 1000 {
		t.Errorf("%d items sent, want 1000", len(seen))
	}
	if len(batches) >= 1000 {
		t.Errorf("%d batches for 1,000 items at once, want fewer", len(batches))
	}
	t.Logf("1,000 items in %d batches", len(batches))
}

// TestQueueLargeItem checks that an item over MaxSize goes alone rather
// than never.
func TestQueueLargeItem(t *testing.T) {
	sent := make(chan []int, 1)
	q := &Queue[int]{Max: 8, Senders: 1, Size: func(i int) int { return i }, MaxSize: 10,
		Send: func(batch []int) { sent <- slices.Clone(batch) }}
	q.Add(100)
	select {
	case got := <-sent:
		if !slices.Equal(got, []int{100}) {
			t.Fatalf("sent %v, want [100]", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the large item was not sent")
	}
}
