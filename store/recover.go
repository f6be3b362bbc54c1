package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/taproot-dev/taproot/internal/flock"
)

func (s *Store) lockStoreInit(ctx context.Context) (*flock.Lock, error) {
	return flock.Exclusive(ctx, s.lockPath("init"))
}

// RemoveDebris removes what killed processes left in tmp/: scratch dirs
// whose lock nobody holds. It returns the paths removed.
func (s *Store) RemoveDebris(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "tmp"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		l, ok, err := flock.TryExclusive(s.lockPath("tmp-" + name))
		if err != nil || !ok {
			continue // alive
		}
		path := filepath.Join(s.root, "tmp", name)
		if err := s.removeAll(ctx, path); err != nil {
			s.log.Warn("could not remove debris", "path", path, "error", err)
			l.Release()
			continue
		}
		l.RemoveAndRelease()
		removed = append(removed, path)
	}
	// Lock files of scratch dirs that are gone.
	locks, _ := os.ReadDir(filepath.Join(s.root, "locks"))
	for _, e := range locks {
		name, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || !strings.HasPrefix(name, "tmp-") {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.root, "tmp", strings.TrimPrefix(name, "tmp-"))); err == nil {
			continue
		}
		if l, ok, _ := flock.TryExclusive(s.lockPath(name)); ok {
			l.RemoveAndRelease()
		}
	}
	return removed, nil
}
