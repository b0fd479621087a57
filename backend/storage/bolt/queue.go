package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// The queue of a task type is a bucket of bucketTaskQueues named after the
// type. It holds three kinds of keys, told apart by their first byte:
//
//	'q' <uvarint length of account> <account> <seq, 8 bytes>  →  request id
//	'r' <turn, 8 bytes>                                       →  account
//	't' <account>                                             →  turn
//
// The 'q' keys are the accounts' queues, each oldest first; the 'r' keys
// are the ring of the accounts with queued tasks, in the order of their
// turns, and the 't' keys say where each account is in it. Sequence
// numbers and turns both come from the bucket's sequence, so a task keeps
// its number for life and an account that is served or joins gets a turn
// after every other.
const (
	queueTasks = 'q'
	queueRing  = 'r'
	queueTurn  = 't'
)

// accountQueuePrefix is what the keys of an account's queued tasks start
// with.
func accountQueuePrefix(accountID string) []byte {
	k := binary.AppendUvarint([]byte{queueTasks}, uint64(len(accountID)))
	return append(k, accountID...)
}

func accountQueueKey(accountID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(accountQueuePrefix(accountID), seq)
}

func ringKey(turn uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{queueRing}, turn)
}

func turnKey(accountID string) []byte { return append([]byte{queueTurn}, accountID...) }

// typeQueue returns the queue bucket of the type, creating it when create
// is set; it returns nil when the type has none and create is not set.
func typeQueue(tx *bbolt.Tx, typeName []byte, create bool) (*bbolt.Bucket, error) {
	queues := tx.Bucket(bucketTaskQueues)
	if !create {
		return queues.Bucket(typeName), nil
	}
	return queues.CreateBucketIfNotExists(typeName)
}

// enqueue puts a task in its account's queue at its sequence number; an
// account that had nothing queued joins the back of the ring. The caller
// counts the depth.
func enqueue(q *bbolt.Bucket, accountID string, seq uint64, id []byte) error {
	if err := q.Put(accountQueueKey(accountID, seq), id); err != nil {
		return err
	}
	if q.Get(turnKey(accountID)) != nil {
		return nil
	}
	return joinRing(q, accountID)
}

// joinRing gives the account the next turn, at the back of the ring.
func joinRing(q *bbolt.Bucket, accountID string) error {
	turn, err := q.NextSequence()
	if err != nil {
		return err
	}
	if err := q.Put(ringKey(turn), []byte(accountID)); err != nil {
		return err
	}
	return q.Put(turnKey(accountID), binary.BigEndian.AppendUint64(nil, turn))
}

// leaveRing takes the account out of the ring.
func leaveRing(q *bbolt.Bucket, accountID string) error {
	tk := turnKey(accountID)
	turn := q.Get(tk)
	if len(turn) != 8 {
		return nil
	}
	if err := q.Delete(append([]byte{queueRing}, turn...)); err != nil {
		return err
	}
	return q.Delete(tk)
}

// hasQueued tells whether the account has a queued task in q.
func hasQueued(q *bbolt.Bucket, accountID string) bool {
	prefix := accountQueuePrefix(accountID)
	k, _ := q.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// popTurn takes the oldest queued task of the account at the front of the
// ring and sends the account to the back, or out of the ring when it has
// nothing left. It returns the task's request id, or nil when nothing is
// queued.
func popTurn(q *bbolt.Bucket) ([]byte, error) {
	rk, v := q.Cursor().Seek([]byte{queueRing})
	if rk == nil || rk[0] != queueRing {
		return nil, nil
	}
	accountID := string(v)
	prefix := accountQueuePrefix(accountID)
	k, id := q.Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, fmt.Errorf("%w: account %q has a turn but no queued task", errCorrupt, accountID)
	}
	id = bytes.Clone(id)
	if err := q.Delete(k); err != nil {
		return nil, err
	}
	if err := leaveRing(q, accountID); err != nil {
		return nil, err
	}
	if hasQueued(q, accountID) {
		if err := joinRing(q, accountID); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// unqueue takes a queued task out of its account's queue, if it is there,
// and tells whether it was; the account keeps its turn unless it has
// nothing left.
func unqueue(q *bbolt.Bucket, accountID string, seq uint64) (bool, error) {
	k := accountQueueKey(accountID, seq)
	if q.Get(k) == nil {
		return false, nil
	}
	if err := q.Delete(k); err != nil {
		return false, err
	}
	if hasQueued(q, accountID) {
		return true, nil
	}
	return true, leaveRing(q, accountID)
}

// taskAttempts reads the attempts of a task from its JSON.
func taskAttempts(body []byte) (int, error) {
	var t struct {
		Attempts int `json:"attempts"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return 0, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return t.Attempts, nil
}

// taskAccount reads the account of a task from its JSON.
func taskAccount(body []byte) (string, error) {
	var t struct {
		AccountID string `json:"account_id"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return "", fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return t.AccountID, nil
}

// migrateQueues moves the queues of a file of format 1, a first-in
// first-out bucket per type mapping sequence numbers to request ids, into
// the queues by account, keeping every task's number. The depths stay as
// they were.
func migrateQueues(tx *bbolt.Tx) error {
	old := tx.Bucket(bucketQueuesV1)
	if old == nil {
		return nil
	}
	err := old.ForEachBucket(func(typeName []byte) error {
		src := old.Bucket(typeName)
		dst, err := typeQueue(tx, typeName, true)
		if err != nil {
			return err
		}
		if err := dst.SetSequence(max(dst.Sequence(), src.Sequence())); err != nil {
			return err
		}
		moved := uint64(0)
		err = src.ForEach(func(k, id []byte) error {
			v := tx.Bucket(bucketTasks).Get(id)
			if v == nil || len(k) != 8 {
				return nil
			}
			_, body, err := decodeValue(v)
			if err != nil {
				return err
			}
			accountID, err := taskAccount(body)
			if err != nil {
				return err
			}
			moved++
			return enqueue(dst, accountID, binary.BigEndian.Uint64(k), bytes.Clone(id))
		})
		if err != nil {
			return err
		}
		// The depth counts what was moved: an entry of a missing task,
		// which a claim used to skip, is gone.
		return tx.Bucket(bucketDepth).Put(bytes.Clone(typeName), binary.BigEndian.AppendUint64(nil, moved))
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(bucketQueuesV1)
}
