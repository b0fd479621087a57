package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/taskgate/taskgate/backend/maintenance"
)

// MaintenanceCreate stores a new window; see maintenance.Store.
func (s *Store) MaintenanceCreate(ctx context.Context, w *maintenance.Window) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	value, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("bolt: encoding maintenance window %s: %w", w.ID, err)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMaintenance).Put([]byte(w.ID), value)
	})
}

// MaintenanceDelete removes a window; see maintenance.Store.
func (s *Store) MaintenanceDelete(ctx context.Context, id string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	var answer error
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		answer = nil
		b := tx.Bucket(bucketMaintenance)
		if b.Get([]byte(id)) == nil {
			answer = maintenance.ErrNotFound
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return err
	}
	return answer
}

// MaintenanceList returns every window, by id; see maintenance.Store.
func (s *Store) MaintenanceList(ctx context.Context) ([]*maintenance.Window, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	out := []*maintenance.Window{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMaintenance).ForEach(func(k, v []byte) error {
			w := new(maintenance.Window)
			if err := json.Unmarshal(v, w); err != nil {
				return fmt.Errorf("bolt: decoding maintenance window %s: %w", k, err)
			}
			out = append(out, w)
			return nil
		})
	})
	return out, err
}
