package memory

import (
	"cmp"
	"context"
	"slices"

	"github.com/taskgate/taskgate/backend/maintenance"
)

// MaintenanceCreate stores a copy of a new window; see maintenance.Store.
func (s *Store) MaintenanceCreate(ctx context.Context, w *maintenance.Window) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c := *w
	s.maintenance[w.ID] = &c
	return nil
}

// MaintenanceDelete removes a window; see maintenance.Store.
func (s *Store) MaintenanceDelete(ctx context.Context, id string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.maintenance[id]; !ok {
		return maintenance.ErrNotFound
	}
	delete(s.maintenance, id)
	return nil
}

// MaintenanceList returns copies of every window, by id; see
// maintenance.Store.
func (s *Store) MaintenanceList(ctx context.Context) ([]*maintenance.Window, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]*maintenance.Window, 0, len(s.maintenance))
	for _, w := range s.maintenance {
		c := *w
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *maintenance.Window) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
