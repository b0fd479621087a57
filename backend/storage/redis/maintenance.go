package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/taskgate/taskgate/backend/maintenance"
)

// Keys of the maintenance windows:
//
//	maintenance  hash: window id → the window as JSON
//
// Few and small, read whole by every node every few seconds: one key.

// MaintenanceCreate stores a new window; see maintenance.Store.
func (s *Store) MaintenanceCreate(ctx context.Context, w *maintenance.Window) error {
	value, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("redis: encoding maintenance window %s: %w", w.ID, err)
	}
	return storeErr(s.rdb.HSet(ctx, s.key("maintenance"), w.ID, value).Err())
}

// MaintenanceDelete removes a window; see maintenance.Store.
func (s *Store) MaintenanceDelete(ctx context.Context, id string) error {
	n, err := s.rdb.HDel(ctx, s.key("maintenance"), id).Result()
	if err != nil {
		return storeErr(err)
	}
	if n == 0 {
		return maintenance.ErrNotFound
	}
	return nil
}

// MaintenanceList returns every window, by id; see maintenance.Store.
func (s *Store) MaintenanceList(ctx context.Context) ([]*maintenance.Window, error) {
	all, err := s.rdb.HGetAll(ctx, s.key("maintenance")).Result()
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]*maintenance.Window, 0, len(all))
	for id, v := range all {
		w := new(maintenance.Window)
		if err := json.Unmarshal([]byte(v), w); err != nil {
			return nil, fmt.Errorf("redis: decoding maintenance window %s: %w", id, err)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *maintenance.Window) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
