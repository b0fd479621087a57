package bolt

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// ClaimDeliveries leases up to n due deliveries, earliest first, in a
// transaction with concurrent changes; see webhook.Store.
//
// The claim goes URL by URL: bucketDeliveriesDueHeads holds the earliest
// due delivery of each URL, and a URL's next one is read from
// bucketDeliveriesDueByURL only once the one before was taken. The
// deliveries are looked at in the order of the due index (NextAt, then
// id), merged across the URLs not turned down, so that what is taken is
// the earliest due among them, as a walk of the whole due index would
// take. Once skip says true for a URL, the call reads no more of its
// deliveries and does not ask about it again: a URL at its cap costs one
// key whatever its backlog, and a claim reads about one key per URL it
// turns down plus two per delivery it takes. skip is thus asked before
// each delivery taken and at most once more per URL.
//
// A read of the file comes first, up to the first delivery skip lets
// through: a claim that finds nothing to take (nothing due, or every due
// URL at its cap, as when the dispatcher is woken with its slots full)
// answers from it, without waiting for the writer and a sync.
//
// skip runs in the store's writer, inside its transaction, or in that
// read: it must be quick and must not call the store. Its answers hold
// for the whole call, even when the writer runs the transaction again
// after another change failed: it is not asked again about a delivery or
// a URL it answered for. The one delivery the read let through is taken
// unless it stopped being due in between (an attempt recorded after its
// lease was rescued), which leaves skip's count one too high for its URL
// in this call: one attempt fewer to that URL until the next claim.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, n int, leaseUntil time.Time, skip func(url string) bool) ([]*webhook.Delivery, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	c := &deliveryClaim{
		due:     sortable(now),
		lease:   sortable(leaseUntil),
		n:       n,
		skip:    skip,
		skipped: make(map[string]bool),
	}
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		taken, err := c.pick(tx, 1)
		found = len(taken) > 0
		return err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return []*webhook.Delivery{}, nil
	}
	if err := s.update(ctx, c.run); err != nil {
		return nil, err
	}
	return c.out, nil
}

// deliveryClaim is one call of ClaimDeliveries. Its transaction may run
// more than once (see commit), each time from scratch but for skip's
// answers: skip may count what it lets through, so it is not asked again.
type deliveryClaim struct {
	due, lease uint64
	n          int
	skip       func(url string) bool
	// skipped holds skip's answers by delivery id, and skippedURLs the
	// URLs it turned down.
	skipped     map[string]bool
	skippedURLs map[string]bool
	out         []*webhook.Delivery
}

// run leases the deliveries in tx.
func (c *deliveryClaim) run(tx *bbolt.Tx) error {
	c.out = []*webhook.Delivery{}
	taken, err := c.pick(tx, c.n)
	if err != nil {
		return err
	}
	for _, d := range taken {
		id := d.key[8:]
		rec, err := getIndexed(tx, id)
		if err != nil {
			return err
		}
		if err := removeDue(tx, d.key, []byte(d.url)); err != nil {
			return err
		}
		rec.Leased, rec.Lease = true, c.lease
		rec.Claims++
		rec.Delivery.Claim = rec.Claims
		if err := putLease(tx, rec); err != nil {
			return err
		}
		if err := answerRetry(tx, rec); err != nil {
			return err
		}
		c.out = append(c.out, &rec.Delivery)
	}
	return nil
}

// pick returns up to n due deliveries to take, earliest first among the
// URLs skip does not turn down; it only reads tx.
func (c *deliveryClaim) pick(tx *bbolt.Tx, n int) ([]dueHead, error) {
	// Keys are collected before deleting: deleting under a cursor makes
	// it skip.
	var taken []dueHead
	heads := tx.Bucket(bucketDeliveriesDueHeads).Cursor()
	byURL := tx.Bucket(bucketDeliveriesDueByURL).Cursor()
	// next holds the next due delivery of each URL taken from: its head
	// in bucketDeliveriesDueHeads is behind the cursor.
	var next dueHeads
	hk, hv := heads.First()
	for len(taken) < n {
		var d dueHead
		switch {
		case hk != nil && (len(next) == 0 || bytes.Compare(hk, next[0].key) < 0):
			d = dueHead{key: bytes.Clone(hk), url: string(hv)}
			hk, hv = heads.Next()
		case len(next) > 0:
			d = heap.Pop(&next).(dueHead)
		}
		if d.key == nil || binary.BigEndian.Uint64(d.key) > c.due {
			break
		}
		if c.skips(d) {
			continue
		}
		taken = append(taken, d)
		prefix, err := urlDuePrefix(tx, []byte(d.url), false)
		if err != nil {
			return nil, err
		}
		if k, _ := byURL.Seek(append(prefix, d.key...)); !bytes.Equal(k, append(prefix, d.key...)) {
			return nil, fmt.Errorf("%w: delivery %s is due but not in its URL's due index", errCorrupt, d.key[8:])
		}
		if k, _ := byURL.Next(); k != nil && bytes.HasPrefix(k, prefix) {
			heap.Push(&next, dueHead{key: bytes.Clone(k[len(prefix):]), url: d.url})
		}
	}
	return taken, nil
}

// skips tells whether skip turns the due delivery down, asking it unless
// it answered already about the delivery, or turned its URL down.
func (c *deliveryClaim) skips(d dueHead) bool {
	if c.skip == nil {
		return false
	}
	id := string(d.key[8:])
	if answer, asked := c.skipped[id]; asked {
		return answer
	}
	if c.skippedURLs[d.url] {
		return true
	}
	answer := c.skip(d.url)
	c.skipped[id] = answer
	if answer {
		if c.skippedURLs == nil {
			c.skippedURLs = make(map[string]bool)
		}
		c.skippedURLs[d.url] = true
	}
	return answer
}

// dueHead is a due delivery: its due key (NextAt, id) and its URL.
type dueHead struct {
	key []byte
	url string
}

// dueHeads is a min-heap of due deliveries by key, for container/heap.
type dueHeads []dueHead

func (h dueHeads) Len() int           { return len(h) }
func (h dueHeads) Less(i, j int) bool { return bytes.Compare(h[i].key, h[j].key) < 0 }
func (h dueHeads) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeads) Push(x any)        { *h = append(*h, x.(dueHead)) }
func (h *dueHeads) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// RecordAttempt stores a delivery after an attempt and the deliveries in
// also, in a transaction with concurrent changes; see webhook.Store.
func (s *Store) RecordAttempt(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery) error {
	if err := checkStatus(d.Status); err != nil {
		return err
	}
	news, err := encodeNewDeliveries(also)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error { return recordAttempt(tx, d, news) })
}

// RecordAttemptClaiming records an attempt and claims the next due
// delivery of its URL, in one transaction; see webhook.AttemptClaimer.
func (s *Store) RecordAttemptClaiming(ctx context.Context, d *webhook.Delivery, also []*webhook.Delivery, next webhook.NextOfURL) (*webhook.Delivery, error) {
	if err := checkStatus(d.Status); err != nil {
		return nil, err
	}
	news, err := encodeNewDeliveries(also)
	if err != nil {
		return nil, err
	}
	url := []byte(d.URL)
	var claimed *webhook.Delivery
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		claimed = nil
		if err := recordAttempt(tx, d, news); err != nil {
			return err
		}
		var err error
		claimed, err = claimNextOfURL(tx, url, sortable(next.Now), sortable(next.LeaseUntil))
		return err
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// claimNextOfURL leases the earliest due delivery of url in tx, as a
// claim does, and returns it: nil when none is due.
func claimNextOfURL(tx *bbolt.Tx, url []byte, due, lease uint64) (*webhook.Delivery, error) {
	prefix := tx.Bucket(bucketDeliveryURLs).Get(urlKey(url))
	if prefix == nil {
		return nil, nil
	}
	prefix = bytes.Clone(prefix)
	k, _ := tx.Bucket(bucketDeliveriesDueByURL).Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil
	}
	dueK := bytes.Clone(k[len(prefix):])
	if binary.BigEndian.Uint64(dueK) > due {
		return nil, nil
	}
	rec, err := getIndexed(tx, dueK[8:])
	if err != nil {
		return nil, err
	}
	if err := removeDue(tx, dueK, url); err != nil {
		return nil, err
	}
	rec.Leased, rec.Lease = true, lease
	rec.Claims++
	rec.Delivery.Claim = rec.Claims
	if err := putLease(tx, rec); err != nil {
		return nil, err
	}
	if err := answerRetry(tx, rec); err != nil {
		return nil, err
	}
	return &rec.Delivery, nil
}

// recordAttempt is RecordAttempt's change in tx.
func recordAttempt(tx *bbolt.Tx, d *webhook.Delivery, news []newDelivery) error {
	rec, err := getDelivery(tx, []byte(d.ID))
	if err != nil {
		return err
	}
	if rec.Delivery.Status != webhook.Pending || rec.Claims != d.Claim {
		return webhook.ErrNotFound
	}
	if err := unschedule(tx, rec); err != nil {
		return err
	}
	status, next := d.Status, d.NextAt
	if rec.RetryRequested {
		status, next = webhook.Pending, rec.Delivery.NextAt
	}
	// RetryRequested stays until the next claim: a record of this claim
	// sent again keeps the retry too.
	rec.Leased, rec.Lease = false, 0
	rec.Delivery.Attempts = d.Attempts
	rec.Delivery.NextAt = next
	if err := setStatus(tx, rec, status); err != nil {
		return err
	}
	if status == webhook.Pending {
		if err := schedule(tx, rec); err != nil {
			return err
		}
	}
	if err := putState(tx, rec); err != nil {
		return err
	}
	return putNewDeliveries(tx, news)
}

// GetDelivery returns the account's delivery with the id; see
// webhook.Store.
func (s *Store) GetDelivery(ctx context.Context, accountID, id string) (*webhook.Delivery, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	var out *webhook.Delivery
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec, err := getDelivery(tx, []byte(id))
		if err != nil {
			return err
		}
		if rec.Delivery.AccountID != accountID {
			return webhook.ErrNotFound
		}
		out = &rec.Delivery
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListDeliveries returns the account's newest deliveries that match f; see
// webhook.Store. Each filter has an index of its own but the two together:
// with a request id and a status it reads that request's deliveries (a
// few per task) and keeps those with the status.
func (s *Store) ListDeliveries(ctx context.Context, accountID string, f webhook.Filter, limit int) ([]*webhook.Delivery, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	index, prefix := bucketDeliveriesByAccount, accountPrefix(accountID)
	switch {
	case f.RequestID != "":
		index, prefix = bucketDeliveriesByRequest, listPrefix(accountID, f.RequestID)
	case f.Status != "":
		index, prefix = bucketDeliveriesByStatus, listPrefix(accountID, string(f.Status))
	}
	out := []*webhook.Delivery{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(index).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			// The key ends with the delivery id as a task list key ends
			// with the request id.
			rec, err := getIndexed(tx, listKeyRequestID(k, len(prefix)))
			if err != nil {
				return err
			}
			if f.Status == "" || rec.Delivery.Status == f.Status {
				out = append(out, &rec.Delivery)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RetryDelivery makes the account's delivery pending and due at now, in a
// transaction with concurrent changes; see webhook.Store. A leased
// delivery is made so when its attempt is recorded; every one is marked
// (deliveryRecord.RetryRequested), so that an attempt of its last claim
// recorded late leaves it so.
func (s *Store) RetryDelivery(ctx context.Context, accountID, id string, now time.Time) (*webhook.Delivery, error) {
	key := []byte(id)
	var out *webhook.Delivery
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		rec, err := getDelivery(tx, key)
		if err != nil {
			return err
		}
		if rec.Delivery.AccountID != accountID {
			return webhook.ErrNotFound
		}
		rec.RetryRequested = true
		switch {
		case rec.Leased:
		case rec.Delivery.Status == webhook.Pending:
			if err := unschedule(tx, rec); err != nil {
				return err
			}
		default:
			if err := setStatus(tx, rec, webhook.Pending); err != nil {
				return err
			}
		}
		rec.Delivery.NextAt = now
		if !rec.Leased {
			if err := schedule(tx, rec); err != nil {
				return err
			}
		}
		out = &rec.Delivery
		return putState(tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RescueDeliveries makes claimable again the deliveries whose lease ended
// before expiredBefore, in a transaction with concurrent changes; see
// webhook.Store.
func (s *Store) RescueDeliveries(ctx context.Context, expiredBefore time.Time) (int, error) {
	before := sortable(expiredBefore)
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		var ids [][]byte
		c := tx.Bucket(bucketDeliveryLeases).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < before; k, _ = c.Next() {
			ids = append(ids, bytes.Clone(k[8:]))
		}
		for _, id := range ids {
			rec, err := getIndexed(tx, id)
			if err != nil {
				return err
			}
			if err := unschedule(tx, rec); err != nil {
				return err
			}
			rec.Leased, rec.Lease = false, 0
			if err := schedule(tx, rec); err != nil {
				return err
			}
			if err := putState(tx, rec); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ExtendDeliveryLeases moves the lease end of the deliveries still
// leased under the given claims, in a transaction with concurrent changes;
// see webhook.Store.
func (s *Store) ExtendDeliveryLeases(ctx context.Context, claims []webhook.Claim, leaseUntil time.Time) error {
	if len(claims) == 0 {
		return s.ready(ctx)
	}
	lease := sortable(leaseUntil)
	return s.update(ctx, func(tx *bbolt.Tx) error {
		for _, c := range claims {
			rec := deliveryRecord{Delivery: webhook.Delivery{ID: c.ID}}
			v := tx.Bucket(bucketDeliveryClaims).Get([]byte(c.ID))
			if v == nil {
				continue
			}
			if err := decodeLease(v, &rec); err != nil {
				return corruptDelivery([]byte(c.ID), "its lease", err)
			}
			if rec.Lease == lease || rec.Claims != c.Claim {
				continue
			}
			if err := deleteLease(tx, &rec); err != nil {
				return err
			}
			rec.Lease = lease
			if err := putLease(tx, &rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// CountDeliveries returns the number of deliveries with the status; see
// webhook.Store.
func (s *Store) CountDeliveries(ctx context.Context, status webhook.Status) (int, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var n uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketDeliveryCounts).Get([]byte(status)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return int(n), err
}

// newDelivery is a delivery to store, encoded before the transaction so
// that the writer's work stays short.
type newDelivery struct {
	// fixed and state are its values in bucketDeliveries and
	// bucketDeliveryStates.
	id, url, fixed, state []byte
	// dueK is its due key (NextAt, id); accountK, requestK (nil without a
	// request id) and statusK its keys in the list indexes.
	dueK, accountK, requestK, statusK []byte
}

// encodeNewDeliveries encodes deliveries to store pending, whatever their
// Status.
func encodeNewDeliveries(deliveries []*webhook.Delivery) ([]newDelivery, error) {
	news := make([]newDelivery, 0, len(deliveries))
	for i, d := range deliveries {
		if d == nil || d.ID == "" {
			return nil, fmt.Errorf("bolt: delivery %d of %d has no id", i+1, len(deliveries))
		}
		rec := deliveryRecord{Delivery: *d}
		rec.Delivery.Status = webhook.Pending
		id := []byte(d.ID)
		nd := newDelivery{
			id:       id,
			url:      []byte(d.URL),
			fixed:    encodeFixed(d),
			state:    encodeState(&rec),
			dueK:     timeKey(d.NextAt, id),
			accountK: accountKey(d.AccountID, d.CreatedAt, d.ID),
			statusK:  listKey(d.AccountID, string(webhook.Pending), d.CreatedAt, d.ID),
		}
		if d.RequestID != "" {
			nd.requestK = listKey(d.AccountID, d.RequestID, d.CreatedAt, d.ID)
		}
		news = append(news, nd)
	}
	return news, nil
}

// putNewDeliveries stores encoded deliveries, pending and due. An id
// already stored (or given twice) is an error.
func putNewDeliveries(tx *bbolt.Tx, news []newDelivery) error {
	if len(news) == 0 {
		return nil
	}
	deliveries := tx.Bucket(bucketDeliveries)
	deliveries.FillPercent = appendFill
	for _, nd := range news {
		if deliveries.Get(nd.id) != nil {
			return fmt.Errorf("bolt: delivery %s: %w", nd.id, task.ErrExists)
		}
		err := putAll(
			put{deliveries, nd.id, nd.fixed},
			put{tx.Bucket(bucketDeliveryStates), nd.id, nd.state},
			put{tx.Bucket(bucketDeliveriesByAccount), nd.accountK, nil},
			put{tx.Bucket(bucketDeliveriesByRequest), nd.requestK, nil},
			put{tx.Bucket(bucketDeliveriesByStatus), nd.statusK, nil},
		)
		if err != nil {
			return err
		}
		if err := addDue(tx, nd.dueK, nd.url); err != nil {
			return err
		}
	}
	return addCount(tx.Bucket(bucketDeliveryCounts), []byte(webhook.Pending), len(news))
}

// getDelivery reads a delivery's record; webhook.ErrNotFound when there is
// none.
func getDelivery(tx *bbolt.Tx, id []byte) (*deliveryRecord, error) {
	fixed := tx.Bucket(bucketDeliveries).Get(id)
	if fixed == nil {
		return nil, webhook.ErrNotFound
	}
	rec := new(deliveryRecord)
	if err := decodeFixed(id, fixed, &rec.Delivery); err != nil {
		return nil, corruptDelivery(id, "its fixed part", err)
	}
	state := tx.Bucket(bucketDeliveryStates).Get(id)
	if state == nil {
		return nil, fmt.Errorf("%w: delivery %s has no state", errCorrupt, id)
	}
	if err := decodeState(state, rec); err != nil {
		return nil, corruptDelivery(id, "its state", err)
	}
	if v := tx.Bucket(bucketDeliveryClaims).Get(id); v != nil {
		if err := decodeLease(v, rec); err != nil {
			return nil, corruptDelivery(id, "its lease", err)
		}
	}
	return rec, nil
}

// getIndexed reads the record of a delivery an index names: one missing
// is a corrupt file, not an unknown delivery.
func getIndexed(tx *bbolt.Tx, id []byte) (*deliveryRecord, error) {
	rec, err := getDelivery(tx, id)
	if errors.Is(err, webhook.ErrNotFound) {
		return nil, fmt.Errorf("%w: an index names delivery %s, which is missing", errCorrupt, id)
	}
	return rec, err
}

// putState stores a delivery's state: all that attempts, retries and
// rescues change. A claim changes the delivery's lease (putLease), and its
// state only to clear a retry's mark (answerRetry).
func putState(tx *bbolt.Tx, rec *deliveryRecord) error {
	return tx.Bucket(bucketDeliveryStates).Put([]byte(rec.Delivery.ID), encodeState(rec))
}

// answerRetry clears the retry asked for before a claim, which the claim's
// attempt answers.
func answerRetry(tx *bbolt.Tx, rec *deliveryRecord) error {
	if !rec.RetryRequested {
		return nil
	}
	rec.RetryRequested = false
	return putState(tx, rec)
}

// putLease stores the lease and claim of a leased delivery.
func putLease(tx *bbolt.Tx, rec *deliveryRecord) error {
	id := []byte(rec.Delivery.ID)
	if err := tx.Bucket(bucketDeliveryLeases).Put(leaseKey(rec.Lease, id), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketDeliveryClaims).Put(id, encodeLease(rec))
}

// deleteLease deletes the lease of a leased delivery; its state keeps the
// number of the claim once the caller stores it.
func deleteLease(tx *bbolt.Tx, rec *deliveryRecord) error {
	id := []byte(rec.Delivery.ID)
	if err := tx.Bucket(bucketDeliveryLeases).Delete(leaseKey(rec.Lease, id)); err != nil {
		return err
	}
	return tx.Bucket(bucketDeliveryClaims).Delete(id)
}

// unschedule takes a pending delivery out of the due indexes or, when
// leased, out of the leases.
func unschedule(tx *bbolt.Tx, rec *deliveryRecord) error {
	id := []byte(rec.Delivery.ID)
	if rec.Leased {
		return deleteLease(tx, rec)
	}
	return removeDue(tx, timeKey(rec.Delivery.NextAt, id), []byte(rec.Delivery.URL))
}

// schedule puts a pending delivery that is not leased in the due indexes,
// at its NextAt.
func schedule(tx *bbolt.Tx, rec *deliveryRecord) error {
	id := []byte(rec.Delivery.ID)
	return addDue(tx, timeKey(rec.Delivery.NextAt, id), []byte(rec.Delivery.URL))
}

// addDue puts a delivery in the due indexes: dueK is its due key
// (NextAt, id). When it falls due before the other deliveries of its URL,
// it becomes the URL's head. url must not change until the transaction
// ends.
func addDue(tx *bbolt.Tx, dueK, url []byte) error {
	byURL, heads := dueByURL(tx), tx.Bucket(bucketDeliveriesDueHeads)
	prefix, err := urlDuePrefix(tx, url, true)
	if err != nil {
		return err
	}
	first, _ := byURL.Cursor().Seek(prefix)
	switch {
	case first == nil || !bytes.HasPrefix(first, prefix):
		// The URL's first due delivery.
	case bytes.Compare(first[len(prefix):], dueK) < 0:
		return byURL.Put(append(prefix, dueK...), nil)
	default:
		if err := heads.Delete(bytes.Clone(first[len(prefix):])); err != nil {
			return err
		}
	}
	if err := heads.Put(dueK, url); err != nil {
		return err
	}
	return byURL.Put(append(prefix, dueK...), nil)
}

// removeDue takes a delivery out of the due indexes: dueK is its due key.
// When it was its URL's head, the URL's next due delivery, if any,
// becomes the head. url must not change until the transaction ends.
func removeDue(tx *bbolt.Tx, dueK, url []byte) error {
	byURL := dueByURL(tx)
	prefix, err := urlDuePrefix(tx, url, false)
	if err != nil {
		return err
	}
	k := append(prefix, dueK...)
	c := byURL.Cursor()
	if first, _ := c.Seek(prefix); bytes.Equal(first, k) {
		heads := tx.Bucket(bucketDeliveriesDueHeads)
		if err := heads.Delete(dueK); err != nil {
			return err
		}
		if next, _ := c.Next(); next != nil && bytes.HasPrefix(next, prefix) {
			if err := heads.Put(bytes.Clone(next[len(prefix):]), url); err != nil {
				return err
			}
		}
	}
	return byURL.Delete(k)
}

// dueByURLFill is how full bbolt fills the pages of
// bucketDeliveriesDueByURL, instead of half. A URL's due deliveries are a
// queue, taken at its head and mostly added after the others: a page
// split in halves would stay half empty. Denser pages make the index a
// level shallower under thousands of due deliveries, and a commit
// rewrites fewer of them (about 28 pages instead of 32 under
// DispatchRetries with 10 URLs).
const dueByURLFill = 0.9

// dueByURL returns bucketDeliveriesDueByURL in tx, to be changed.
func dueByURL(tx *bbolt.Tx) *bbolt.Bucket {
	b := tx.Bucket(bucketDeliveriesDueByURL)
	b.FillPercent = dueByURLFill
	return b
}

// urlDuePrefix returns what the keys of a URL's deliveries in
// bucketDeliveriesDueByURL start with, its number in bucketDeliveryURLs;
// the key goes on with the delivery's due key, timeKey(NextAt, id). A URL
// without a number gets one when assign is set; otherwise it has no due
// delivery, and that is a corrupt index.
func urlDuePrefix(tx *bbolt.Tx, url []byte, assign bool) ([]byte, error) {
	urls := tx.Bucket(bucketDeliveryURLs)
	key := urlKey(url)
	// Room for the due key that follows.
	prefix := make([]byte, 0, binary.MaxVarintLen64+8+36)
	if v := urls.Get(key); v != nil {
		return append(prefix, v...), nil
	}
	if !assign {
		return nil, fmt.Errorf("%w: URL %.64q has due deliveries but no number", errCorrupt, url)
	}
	n, err := urls.NextSequence()
	if err != nil {
		return nil, err
	}
	prefix = binary.AppendUvarint(prefix, n)
	return prefix, urls.Put(bytes.Clone(key), bytes.Clone(prefix))
}

// buildDueByURL fills the per-URL due indexes from the deliveries'
// states, emptying them first.
func buildDueByURL(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketDeliveriesDueByURL, bucketDeliveriesDueHeads} {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	byURL, heads := dueByURL(tx), tx.Bucket(bucketDeliveriesDueHeads)
	// The earliest due key of each URL is its head.
	first := make(map[string][]byte)
	c := tx.Bucket(bucketDeliveryStates).Cursor()
	for id, _ := c.First(); id != nil; id, _ = c.Next() {
		rec, err := getIndexed(tx, id)
		if err != nil {
			return err
		}
		if rec.Delivery.Status != webhook.Pending || rec.Leased {
			continue
		}
		k := timeKey(rec.Delivery.NextAt, id)
		prefix, err := urlDuePrefix(tx, []byte(rec.Delivery.URL), true)
		if err != nil {
			return err
		}
		if err := byURL.Put(append(prefix, k...), nil); err != nil {
			return err
		}
		if f, ok := first[rec.Delivery.URL]; !ok || bytes.Compare(k, f) < 0 {
			first[rec.Delivery.URL] = k
		}
	}
	for url, k := range first {
		if err := heads.Put(k, []byte(url)); err != nil {
			return err
		}
	}
	return nil
}

// setStatus changes a delivery's status, and its keys in the status
// index, the ended index and the counts; the caller stores the record.
func setStatus(tx *bbolt.Tx, rec *deliveryRecord, status webhook.Status) error {
	d := &rec.Delivery
	old := d.Status
	if old == status {
		return nil
	}
	byStatus := tx.Bucket(bucketDeliveriesByStatus)
	if err := byStatus.Delete(listKey(d.AccountID, string(old), d.CreatedAt, d.ID)); err != nil {
		return err
	}
	if err := byStatus.Put(listKey(d.AccountID, string(status), d.CreatedAt, d.ID), nil); err != nil {
		return err
	}
	counts := tx.Bucket(bucketDeliveryCounts)
	if err := addCount(counts, []byte(old), -1); err != nil {
		return err
	}
	if err := addCount(counts, []byte(status), 1); err != nil {
		return err
	}
	endedK := timeKey(d.CreatedAt, []byte(d.ID))
	switch {
	case old == webhook.Pending:
		if err := tx.Bucket(bucketDeliveriesEnded).Put(endedK, nil); err != nil {
			return err
		}
	case status == webhook.Pending:
		if err := tx.Bucket(bucketDeliveriesEnded).Delete(endedK); err != nil {
			return err
		}
	}
	d.Status = status
	return nil
}

// purgeDeliveries deletes up to limit ended deliveries created before
// the given time, those created first first, and returns how many.
func purgeDeliveries(tx *bbolt.Tx, createdBefore time.Time, limit int) (int, error) {
	ended := tx.Bucket(bucketDeliveriesEnded)
	before := sortable(createdBefore)
	var keys [][]byte
	c := ended.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < limit && binary.BigEndian.Uint64(k) < before; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		rec, err := getDelivery(tx, k[8:])
		if err != nil && !errors.Is(err, webhook.ErrNotFound) {
			return 0, err
		}
		if rec != nil {
			if err := deleteDelivery(tx, rec); err != nil {
				return 0, err
			}
		}
		if err := ended.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// deleteDelivery deletes an ended delivery, its list keys and its count;
// the caller deletes its key in bucketDeliveriesEnded.
func deleteDelivery(tx *bbolt.Tx, rec *deliveryRecord) error {
	d := &rec.Delivery
	dels := []struct{ b, k []byte }{
		{bucketDeliveriesByAccount, accountKey(d.AccountID, d.CreatedAt, d.ID)},
		{bucketDeliveriesByStatus, listKey(d.AccountID, string(d.Status), d.CreatedAt, d.ID)},
		{bucketDeliveries, []byte(d.ID)},
		{bucketDeliveryStates, []byte(d.ID)},
	}
	if d.RequestID != "" {
		dels = append(dels, struct{ b, k []byte }{bucketDeliveriesByRequest, listKey(d.AccountID, d.RequestID, d.CreatedAt, d.ID)})
	}
	for _, del := range dels {
		if err := tx.Bucket(del.b).Delete(del.k); err != nil {
			return err
		}
	}
	return addCount(tx.Bucket(bucketDeliveryCounts), []byte(d.Status), -1)
}

// checkStatus tells whether s is a status of a delivery.
func checkStatus(s webhook.Status) error {
	switch s {
	case webhook.Pending, webhook.Delivered, webhook.Failed:
		return nil
	}
	return fmt.Errorf("bolt: unknown delivery status %q", s)
}
