package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/taskgate/taskgate/backend/webhook"
)

// A delivery is stored under its id in two values, and a third while it is
// leased, so that what a claim or an attempt changes is rewritten without
// what never changes (the body, above all):
//
//   - its part in bucketDeliveries is what it was created with and keeps:
//     the account id, request id, URL and event as length-prefixed
//     strings, the creation time, then the body to the end of the value;
//   - its state in bucketDeliveryStates is the store's bookkeeping and what
//     attempts change: a flags byte (1: retry requested), the number of
//     its last claim (uvarint), the status (length-prefixed), NextAt, then
//     the attempts (a uvarint count, then each one's time, status code,
//     error, duration and Retry-After);
//   - while it is leased, its value in bucketDeliveryClaims is the lease
//     end (8 bytes, sortable) then the number of the claim that holds it
//     (uvarint), which the state gets when the lease ends.
//
// All are binary: decoding and encoding JSON, body included, at every
// attempt was most of the writer's work. A claim writes only the small
// buckets of the leases, so that an attempt rewrites one value of the
// large ones. A time is 16 bytes: Unix seconds and nanoseconds, then the
// offset of its zone in seconds; it comes back as from JSON: in UTC at
// offset 0, in Local at Local's offset, else in a zone of that offset.

// deliveryRecord is a delivery and the store's bookkeeping of it.
//
// A pending delivery is either due (its key is in
// bucketDeliveriesDueByURL, at its NextAt, and in bucketDeliveriesDueHeads
// while it is the earliest of its URL) or leased (Leased, its keys in
// bucketDeliveryLeases at Lease and in bucketDeliveryClaims); a delivered
// or failed one is in none of them, and is in bucketDeliveriesEnded.
type deliveryRecord struct {
	Delivery webhook.Delivery
	// Leased tells that a worker holds the delivery, until Lease
	// (sortable).
	Leased bool
	Lease  uint64
	// RetryRequested marks a delivery that RetryDelivery asked to
	// attempt again since its last claim, with NextAt set to the time of
	// the request: when that claim's attempt is recorded (in time, or
	// late, after a rescue) the delivery stays pending, due at that
	// NextAt, whatever the attempt gave. The next claim, a new attempt,
	// clears it.
	RetryRequested bool
	// Claims counts the claims of the delivery: the number of the last
	// one, which RecordAttempt and ExtendDeliveryLeases must name.
	Claims int
}

// stateRetryRequested is the flag of a state whose RetryRequested is set.
const stateRetryRequested = 1

// encodeFixed returns the value of d in bucketDeliveries.
func encodeFixed(d *webhook.Delivery) []byte {
	b := make([]byte, 0, 4*binary.MaxVarintLen16+len(d.AccountID)+len(d.RequestID)+len(d.URL)+len(d.Event)+timeLen+len(d.Body))
	for _, s := range []string{d.AccountID, d.RequestID, d.URL, d.Event} {
		b = appendPart(b, s)
	}
	b = appendTime(b, d.CreatedAt)
	return append(b, d.Body...)
}

// decodeFixed fills d from its id and its value in bucketDeliveries; d
// does not alias v.
func decodeFixed(id, v []byte, d *webhook.Delivery) error {
	r := recordReader{b: v}
	d.ID = string(id)
	d.AccountID, d.RequestID, d.URL, d.Event = r.part(), r.part(), r.part(), r.part()
	d.CreatedAt = r.time()
	if r.err != nil {
		return r.err
	}
	d.Body = nil
	if len(r.b) > 0 {
		d.Body = append([]byte(nil), r.b...)
	}
	return nil
}

// encodeState returns the value of rec in bucketDeliveryStates.
func encodeState(rec *deliveryRecord) []byte {
	d := &rec.Delivery
	n := 1 + binary.MaxVarintLen64 + 1 + len(d.Status) + timeLen + binary.MaxVarintLen16
	for _, a := range d.Attempts {
		n += timeLen + 3*binary.MaxVarintLen64 + binary.MaxVarintLen16 + len(a.Error)
	}
	b := make([]byte, 1, n)
	if rec.RetryRequested {
		b[0] |= stateRetryRequested
	}
	b = binary.AppendUvarint(b, uint64(rec.Claims))
	b = appendPart(b, string(d.Status))
	b = appendTime(b, d.NextAt)
	b = binary.AppendUvarint(b, uint64(len(d.Attempts)))
	for _, a := range d.Attempts {
		b = appendTime(b, a.At)
		b = binary.AppendVarint(b, int64(a.StatusCode))
		b = appendPart(b, a.Error)
		b = binary.AppendVarint(b, a.DurationMS)
		b = binary.AppendVarint(b, a.RetryAfterMS)
	}
	return b
}

// decodeState fills rec's bookkeeping and rec.Delivery's changing fields
// from its value in bucketDeliveryStates, as if it were not leased; rec
// does not alias v.
func decodeState(v []byte, rec *deliveryRecord) error {
	if len(v) < 1 {
		return errCorrupt
	}
	rec.Leased, rec.Lease = false, 0
	rec.RetryRequested = v[0]&stateRetryRequested != 0
	r := recordReader{b: v[1:]}
	rec.Claims = int(r.uvarint())
	d := &rec.Delivery
	d.Status = webhook.Status(r.part())
	d.NextAt = r.time()
	d.Attempts = nil
	if n := r.uvarint(); n > 0 && n <= uint64(len(r.b)) {
		d.Attempts = make([]webhook.Attempt, n)
		for i := range d.Attempts {
			a := &d.Attempts[i]
			a.At = r.time()
			a.StatusCode = int(r.varint())
			a.Error = r.part()
			a.DurationMS = r.varint()
			a.RetryAfterMS = r.varint()
		}
	} else if n > 0 {
		return errCorrupt
	}
	if r.err == nil && len(r.b) > 0 {
		return errCorrupt
	}
	d.Claim = rec.Claims
	return r.err
}

// encodeLease returns the value of a leased delivery in
// bucketDeliveryClaims.
func encodeLease(rec *deliveryRecord) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+binary.MaxVarintLen64), rec.Lease)
	return binary.AppendUvarint(b, uint64(rec.Claims))
}

// decodeLease marks rec leased as its value in bucketDeliveryClaims says.
func decodeLease(v []byte, rec *deliveryRecord) error {
	if len(v) < 9 {
		return errCorrupt
	}
	claims, n := binary.Uvarint(v[8:])
	if n <= 0 || 8+n != len(v) {
		return errCorrupt
	}
	rec.Leased, rec.Lease, rec.Claims = true, binary.BigEndian.Uint64(v), int(claims)
	rec.Delivery.Claim = rec.Claims
	return nil
}

// timeLen is the length of an encoded time.
const timeLen = 16

// appendTime appends t: Unix seconds, nanoseconds and its zone's offset in
// seconds, so that the instant and the offset come back as JSON kept them.
func appendTime(b []byte, t time.Time) []byte {
	_, offset := t.Zone()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint32(b, uint32(int32(offset)))
}

// recordReader reads a value part by part; the first error sticks and
// later reads return zero values.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *recordReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *recordReader) varint() int64 {
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

// part reads a length-prefixed string.
func (r *recordReader) part() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// time reads a time written by appendTime.
func (r *recordReader) time() time.Time {
	if len(r.b) < timeLen {
		r.fail()
		return time.Time{}
	}
	sec := int64(binary.BigEndian.Uint64(r.b))
	nsec := int64(binary.BigEndian.Uint32(r.b[8:]))
	offset := int(int32(binary.BigEndian.Uint32(r.b[12:])))
	r.b = r.b[timeLen:]
	t := time.Unix(sec, nsec)
	if offset == 0 {
		return t.UTC()
	}
	if _, local := t.Zone(); local == offset {
		return t
	}
	return t.In(time.FixedZone("", offset))
}

// corruptDelivery is the error of a delivery's value that does not
// decode.
func corruptDelivery(id []byte, what string, err error) error {
	return fmt.Errorf("%w: delivery %s, %s", err, id, what)
}

// deliveryRecordJSON is a delivery's value in bucketDeliveries in files of
// formats 1 and 2: the delivery and the store's bookkeeping in one JSON
// value, which migrateDeliveries splits.
type deliveryRecordJSON struct {
	Delivery       webhook.Delivery `json:"delivery"`
	Leased         bool             `json:"leased,omitempty"`
	Lease          uint64           `json:"lease,omitempty"`
	RetryRequested bool             `json:"retry_requested,omitempty"`
	Claims         int              `json:"claims,omitempty"`
}

// migrateDeliveries splits the JSON value of every delivery of a file of
// format 1 or 2 into its fixed part, its state and its lease, and deletes
// the due index. The other indexes stay as they were: their keys did not
// change. The caller builds the per-URL due indexes, which a file of
// format 2 may lack.
func migrateDeliveries(tx *bbolt.Tx) error {
	if err := tx.DeleteBucket(bucketDeliveriesDueV2); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	deliveries, states := tx.Bucket(bucketDeliveries), tx.Bucket(bucketDeliveryStates)
	deliveries.FillPercent = appendFill
	// A chunk is read, then written: a cursor may skip after a change
	// under it.
	const chunk = 1000
	var from []byte
	for {
		type kv struct{ k, v []byte }
		var read []kv
		c := deliveries.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
			if bytes.Equal(k, from) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(read) < chunk; k, v = c.Next() {
			read = append(read, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		if len(read) == 0 {
			return nil
		}
		for _, r := range read {
			var old deliveryRecordJSON
			if err := json.Unmarshal(r.v, &old); err != nil {
				return fmt.Errorf("%w: delivery %s: %v", errCorrupt, r.k, err)
			}
			// A nil body was stored as null.
			if string(old.Delivery.Body) == "null" {
				old.Delivery.Body = nil
			}
			rec := deliveryRecord{Delivery: old.Delivery, Leased: old.Leased, Lease: old.Lease,
				RetryRequested: old.RetryRequested, Claims: old.Claims}
			if err := deliveries.Put(r.k, encodeFixed(&rec.Delivery)); err != nil {
				return err
			}
			if err := states.Put(r.k, encodeState(&rec)); err != nil {
				return err
			}
			if rec.Leased {
				if err := putLease(tx, &rec); err != nil {
					return err
				}
			}
		}
		from = read[len(read)-1].k
	}
}
