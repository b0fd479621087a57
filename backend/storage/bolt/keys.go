package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/taskgate/taskgate/backend/internal/sortkey"
)

// Keys are built so that bolt's byte order is the order the store needs
// and no two different tuples share a key or a prefix: every variable part
// but the last is length-prefixed (uvarint), times are fixed-width.

// sortable returns t as a number whose order is the instants' order.
func sortable(t time.Time) uint64 { return sortkey.Time(t) }

// appendPart appends a length-prefixed part of a key.
func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// listPrefix is what the index keys of an account's tasks with one group
// (or task) id start with.
func listPrefix(accountID, id string) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen16+len(accountID)+len(id)+8+36)
	return appendPart(appendPart(b, accountID), id)
}

// listKey is the index key of a task under one of its ids: the prefix,
// then the creation time inverted (newest first), then the request id.
func listKey(accountID, id string, created time.Time, requestID string) []byte {
	b := binary.BigEndian.AppendUint64(listPrefix(accountID, id), ^sortable(created))
	return append(b, requestID...)
}

// listKeyRequestID returns the request id at the end of an index key with
// the given prefix length.
func listKeyRequestID(k []byte, prefixLen int) []byte { return k[prefixLen+8:] }

// timeKey is a key ordered by time: the instant, then rest (a request id,
// or an idempotency key).
func timeKey(t time.Time, rest []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(rest)), sortable(t)), rest...)
}

// idemKey is the key of an account's idempotency record.
func idemKey(accountID, key string) []byte {
	return append(appendPart(make([]byte, 0, 2+len(accountID)+len(key)), accountID), key...)
}

// A task's value in the tasks bucket is a fixed header, where the store
// keeps its own bookkeeping, then the task as JSON:
//
//	[0]      1 when the task is leased
//	[1:9]    seq, its place in its type's queue (kept for life)
//	[9:17]   the end of its lease, sortable, when leased
//	[17:]    the task.Task as JSON
const headerLen = 17

// header is the store's bookkeeping of a task.
type header struct {
	leased bool
	seq    uint64
	lease  uint64
}

var errCorrupt = errors.New("bolt: corrupt record")

// encodeValue returns a task's value.
func encodeValue(h header, body []byte) []byte {
	v := make([]byte, headerLen, headerLen+len(body))
	if h.leased {
		v[0] = 1
	}
	binary.BigEndian.PutUint64(v[1:9], h.seq)
	binary.BigEndian.PutUint64(v[9:17], h.lease)
	return append(v, body...)
}

// decodeValue splits a task's value; body aliases v.
func decodeValue(v []byte) (header, []byte, error) {
	if len(v) < headerLen {
		return header{}, nil, errCorrupt
	}
	h := header{
		leased: v[0] == 1,
		seq:    binary.BigEndian.Uint64(v[1:9]),
		lease:  binary.BigEndian.Uint64(v[9:17]),
	}
	return h, v[headerLen:], nil
}

// leaseKey is a key of the leases bucket: the end of the lease, sortable,
// then the request id, so that Rescue reads only the leases that ended.
func leaseKey(lease uint64, requestID []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(requestID)), lease), requestID...)
}

// accountPrefix is what the keys of an account's deliveries in
// bucketDeliveriesByAccount start with.
func accountPrefix(accountID string) []byte {
	return appendPart(make([]byte, 0, binary.MaxVarintLen16+len(accountID)+8+36), accountID)
}

// accountKey is the key of a delivery in bucketDeliveriesByAccount: the
// account's prefix, then the creation time inverted (newest first), then
// the id.
func accountKey(accountID string, created time.Time, id string) []byte {
	b := binary.BigEndian.AppendUint64(accountPrefix(accountID), ^sortable(created))
	return append(b, id...)
}

// maxURLKeyLen bounds a URL as a key: a bbolt key holds at most 32 KiB, a
// URL may be longer. A longer URL is keyed by its SHA-256 after a zero
// byte, which no URL starts with.
const maxURLKeyLen = 1024

// urlKey is the key of a URL in bucketDeliveryURLs.
func urlKey(url []byte) []byte {
	if len(url) <= maxURLKeyLen {
		return url
	}
	sum := sha256.Sum256(url)
	return append([]byte{0}, sum[:]...)
}
