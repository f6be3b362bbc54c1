package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/taproot-dev/taproot/internal/flock"
)

// LayerKeys lists the layer dirs present (published or not).
func (s *Store) LayerKeys() ([]string, error) {
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		keys = append(keys, e.Name())
	}
	return keys, nil
}

// ReferencedLayers returns every layer key an image record references.
func (s *Store) ReferencedLayers() (map[string]bool, error) {
	entries, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, err
	}
	refs := map[string]bool{}
	for _, e := range entries {
		// Membership only: a damaged record's names still keep their
		// layers (a running container may use them), and are never paths.
		r, err := s.readImage(e.Name())
		if err != nil {
			continue
		}
		for _, d := range r.Layers {
			if k, err := layerKey(d); err == nil {
				refs[k] = true
			}
		}
		for _, k := range r.Lowers {
			refs[k] = true
		}
	}
	return refs, nil
}

// CommittedSize is the bytes the store's layers hold, from their records.
func (s *Store) CommittedSize() (int64, error) {
	keys, err := s.LayerKeys()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, k := range keys {
		if r, err := s.ReadLayer(k); err == nil {
			n += r.Size
		}
	}
	return n, nil
}

// RemoveLayerIfUnused removes layer key when no process holds its lock
// and unused (asked while holding the lock exclusively) says nothing
// references it. A create takes a shared lock on a layer before it writes a
// record that references it, so the answer cannot go stale.
func (s *Store) RemoveLayerIfUnused(ctx context.Context, key string, unused func() (bool, error)) (removed bool, size int64, err error) {
	if err := checkLayerKey(key); err != nil {
		return false, 0, err
	}
	lock, ok, err := flock.TryExclusive(s.layerLock(key))
	if err != nil || !ok {
		return false, 0, err
	}
	free, err := unused()
	if err != nil || !free {
		lock.Release()
		return false, 0, err
	}
	return s.removeLockedLayer(ctx, key, lock)
}

// removeBatch is how many layers RemoveUnreferencedLayers locks before it
// reads the records once for all of them (well under the default limit of
// 1024 open files).
const removeBatch = 256

// RemoveUnreferencedLayers removes the layers among keys that no image
// record references and no process holds. It locks a batch of them
// (exclusively, without waiting: a held layer is in use), then reads the
// records once for the whole batch: a create takes a layer's lock shared
// before it writes a record naming it, so once the batch is locked no new
// record can name one of its layers. Reading the records once per layer
// instead cost 35 ms a layer in a store of 1,000 images (28.8x a small
// store's cost).
func (s *Store) RemoveUnreferencedLayers(ctx context.Context, keys []string) (removed int, bytes int64, err error) {
	for start := 0; start < len(keys); start += removeBatch {
		if err := ctx.Err(); err != nil {
			return removed, bytes, err
		}
		batch := keys[start:min(start+removeBatch, len(keys))]
		locked := make(map[string]*flock.Lock, len(batch))
		release := func() {
			for _, l := range locked {
				l.Release()
			}
		}
		for _, key := range batch {
			if !validLayerKey(key) {
				continue
			}
			l, ok, err := flock.TryExclusive(s.layerLock(key))
			if err != nil {
				release()
				return removed, bytes, err
			}
			if ok {
				locked[key] = l
			}
		}
		refs, err := s.ReferencedLayers()
		if err != nil {
			release()
			return removed, bytes, err
		}
		for _, key := range batch {
			l, ok := locked[key]
			if !ok {
				continue
			}
			delete(locked, key)
			if refs[key] {
				l.Release()
				continue
			}
			done, size, err := s.removeLockedLayer(ctx, key, l)
			if err != nil {
				release()
				return removed, bytes, fmt.Errorf("layer %s: %w", key, err)
			}
			if done {
				removed++
				bytes += size
			}
		}
	}
	return removed, bytes, nil
}

// removeLockedLayer removes layer key, whose reference lock the caller
// holds exclusively, and releases the lock (removing its file when the
// layer went).
func (s *Store) removeLockedLayer(ctx context.Context, key string, lock *flock.Lock) (removed bool, size int64, err error) {
	defer func() {
		if removed {
			lock.RemoveAndRelease()
		} else {
			lock.Release()
		}
	}()
	rec, recErr := s.ReadLayer(key)
	size = rec.Size
	// Move aside, then drop the link, then remove the content: a crash
	// leaves tmp debris, never a half-removed layer under its real name.
	t, err := s.newTmp(ctx, "trash")
	if err != nil {
		return false, 0, err
	}
	if err := os.Rename(s.layerDir(key), filepath.Join(t.path, "layer")); err != nil {
		s.removeTmp(ctx, t)
		if errors.Is(err, fs.ErrNotExist) {
			return false, 0, nil
		}
		return false, 0, fmt.Errorf("remove layer %s: %w", key, err)
	}
	// The rename durable before the link and the content go: a cut must
	// not bring the layer's record back over missing files.
	if err := syncDirs(s.opts.Sync, s.layersDir()); err != nil {
		t.lock.RemoveAndRelease() // trash left as debris for a later clean
		return true, 0, fmt.Errorf("remove layer %s: %w", key, err)
	}
	s.removeLinksOf(key)
	s.removeTmp(ctx, t)
	if recErr != nil {
		size = 0
	}
	return true, size, nil
}

// removeLinksOf removes key's short links: the names recomputed from the
// key, each only if it points at that layer (never a name from a record).
func (s *Store) removeLinksOf(key string) {
	for _, n := range shortLens {
		p := s.linkPath(shortName(key, n))
		if got, err := os.Readlink(p); err == nil && got == linkTarget(key) {
			os.Remove(p)
		}
	}
}

// RemoveDanglingLinks removes short links whose layer is gone and not being
// published right now.
func (s *Store) RemoveDanglingLinks() (int, error) {
	entries, err := os.ReadDir(s.linksDir())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		p := s.linkPath(e.Name())
		target, err := os.Readlink(p)
		if err != nil {
			continue
		}
		key, ok := keyOfLinkTarget(target)
		if !ok {
			// Not a link taproot makes: it leads nowhere taproot mounts.
			if os.Remove(p) == nil {
				n++
			}
			continue
		}
		if s.layerExists(key) {
			continue
		}
		lock := claim(s.layerLock(key), func() bool { return !s.layerExists(key) })
		if lock == nil {
			continue
		}
		if os.Remove(p) == nil {
			n++
		}
		lock.RemoveAndRelease() // no layer, no lock file
	}
	return n, nil
}

// RemoveStaleLocalRecords removes recorded local-rootfs versions whose layer
// is gone.
func (s *Store) RemoveStaleLocalRecords() int {
	entries, _ := os.ReadDir(s.metaDir())
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), localPrefix) {
			continue
		}
		p := filepath.Join(s.metaDir(), e.Name())
		var r localCacheRecord
		if err := readJSON(p, &r); err == nil {
			if k, err := layerKey(r.DiffID); err == nil && s.layerExists(k) {
				continue
			}
		}
		if os.Remove(p) == nil {
			n++
		}
	}
	return n
}
