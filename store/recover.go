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
// whose lock nobody holds, and temporary files of the metadata cache. It
// returns the paths removed.
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
	removed = append(removed, s.removeBlobDebris()...)
	s.removeStaleLocks()
	return removed, nil
}

// removeStaleLocks removes lock files that guard nothing any more: those of
// scratch dirs, layers and images that are gone, and fetch locks left by
// killed creates. A lock file is removed only by the holder of its
// exclusive lock (taken without waiting, so a live holder is skipped);
// anyone waiting on it notices and retries on a fresh file.
func (s *Store) removeStaleLocks() {
	locks, _ := os.ReadDir(filepath.Join(s.root, "locks"))
	for _, e := range locks {
		name, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok {
			continue
		}
		kind, rest, _ := strings.Cut(name, "-")
		var gone func() bool
		switch kind {
		case "tmp":
			gone = func() bool { return !exists(filepath.Join(s.root, "tmp", rest)) }
		case "fetch":
			gone = func() bool { return true }
		case "layer":
			if !validLayerKey(rest) {
				continue
			}
			gone = func() bool { return !exists(s.layerDir(rest)) }
		case "image":
			if ValidateID(rest) != nil {
				continue
			}
			gone = func() bool { return !exists(s.imageDir(rest)) }
		default:
			continue // init and whatever a newer taproot keeps
		}
		if !gone() {
			continue
		}
		l, ok, err := flock.TryExclusive(s.lockPath(name))
		if err != nil || !ok {
			continue
		}
		if gone() {
			l.RemoveAndRelease()
		} else {
			l.Release()
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
