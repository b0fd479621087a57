package memory

import (
	"container/heap"
	"container/list"
)

// typeQueue is the queue of one task type: a queue per account, oldest
// first, and the ring of the accounts that have queued tasks, in the order
// of their turns. A claim serves the account at the front of the ring and
// sends it to the back, so that accounts take turns whatever their
// backlogs.
type typeQueue struct {
	accounts map[string]*accountQueue
	ring     list.List // of *accountQueue
	depth    int
}

// accountQueue holds an account's queued tasks of one type, by sequence
// number.
type accountQueue struct {
	id    string
	tasks heapOf[*entry]
	place *list.Element // in the ring
}

func newTypeQueue() *typeQueue {
	return &typeQueue{accounts: make(map[string]*accountQueue)}
}

// push queues e at the place its sequence number gives it in its
// account's queue; an account that had nothing queued joins the back of
// the ring.
func (q *typeQueue) push(e *entry) {
	aq := q.accounts[e.t.AccountID]
	if aq == nil {
		aq = &accountQueue{
			id: e.t.AccountID,
			tasks: heapOf[*entry]{
				less:  func(a, b *entry) bool { return a.seq < b.seq },
				moved: func(e *entry, i int) { e.queuePos = i },
			},
		}
		aq.place = q.ring.PushBack(aq)
		q.accounts[aq.id] = aq
	}
	heap.Push(&aq.tasks, e)
	q.depth++
}

// pop takes the oldest task of the account whose turn it is, and sends
// the account to the back of the ring; it returns nil when nothing is
// queued.
func (q *typeQueue) pop() *entry {
	front := q.ring.Front()
	if front == nil {
		return nil
	}
	aq := front.Value.(*accountQueue)
	e := heap.Pop(&aq.tasks).(*entry)
	e.queuePos = -1
	q.depth--
	if aq.tasks.Len() == 0 {
		q.leave(aq)
	} else {
		q.ring.MoveToBack(aq.place)
	}
	return e
}

// remove takes a queued e out of its account's queue; the account keeps
// its turn unless it has nothing left.
func (q *typeQueue) remove(e *entry) {
	aq := q.accounts[e.t.AccountID]
	heap.Remove(&aq.tasks, e.queuePos)
	e.queuePos = -1
	q.depth--
	if aq.tasks.Len() == 0 {
		q.leave(aq)
	}
}

func (q *typeQueue) leave(aq *accountQueue) {
	q.ring.Remove(aq.place)
	delete(q.accounts, aq.id)
}
