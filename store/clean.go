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

// CleanResult says what Clean reclaimed.
type CleanResult struct {
	ReclaimedBytes int64 // bytes of the layers removed (from their records)
	LayersRemoved  int
	LinksRemoved   int
	// DebrisRemoved counts scratch dirs, unfinished images and cache
	// writes left by killed processes, and deleted images' trash.
	DebrisRemoved int
}

// Clean is the store's garbage collection, without racing the creates and
// deletes that run at the same time: it waits for deferred deletes in
// flight (Reclaim), removes debris (see debris.go), then the layers no
// image record references and no create holds (in batches, see
// removeUnreferencedLayers), the local-rootfs records and cached
// manifests and configs that lead nowhere any more, and the short links
// whose layer is gone.
func (s *Store) Clean(ctx context.Context) (CleanResult, error) {
	var res CleanResult
	if err := s.Reclaim(ctx); err != nil {
		return res, fmt.Errorf("reclaim deleted images: %w", err)
	}
	debris, err := s.removeDebris(ctx)
	res.DebrisRemoved = len(debris)
	if err != nil {
		return res, fmt.Errorf("remove debris: %w", err)
	}
	keys, err := s.layerKeys()
	if err != nil {
		return res, err
	}
	// A first look skips layers that are plainly in use; the candidates
	// are looked at again under their locks.
	inUse, err := s.referencedLayers()
	if err != nil {
		return res, err
	}
	var candidates []string
	for _, key := range keys {
		if !inUse[key] {
			candidates = append(candidates, key)
		}
	}
	res.LayersRemoved, res.ReclaimedBytes, err = s.removeUnreferencedLayers(ctx, candidates)
	if err != nil {
		return res, err
	}
	s.removeStaleLocalRecords()
	s.removeUnreferencedBlobs()
	res.LinksRemoved, err = s.removeDanglingLinks()
	return res, err
}

// Usage is what a store holds: what metrics report and what the clean
// threshold compares.
type Usage struct {
	// LayerBytes is the file content committed in the store's layers
	// (squashed ones included), from their records.
	LayerBytes int64 `json:"layer_bytes"`
	Layers     int   `json:"layers"`
	// UnreferencedLayers is how many layers no image record names (what
	// Clean would remove unless a create holds them).
	UnreferencedLayers int `json:"unreferenced_layers"`
	// Images counts complete images (a readable, well-formed record);
	// BaseBytes and DiskLimitBytes sum their base sizes and disk limits.
	Images         int   `json:"images"`
	BaseBytes      int64 `json:"base_bytes"`
	DiskLimitBytes int64 `json:"disk_limit_bytes"`
}

// UsageOptions say how much Usage reads.
type UsageOptions struct {
	// LayersOnly reads the layer records alone: LayerBytes and Layers,
	// what the clean threshold compares before every create. Reading the
	// image records too cost 23-33 ms in a store of 1,000 images against
	// 0.024-0.027 ms without them (BenchmarkUsage, three runs).
	LayersOnly bool
}

// Usage reads every layer record and, unless LayersOnly, every image
// record once.
func (s *Store) Usage(ctx context.Context, opts UsageOptions) (Usage, error) {
	var u Usage
	keys, err := s.layerKeys()
	if err != nil {
		return u, err
	}
	u.Layers = len(keys)
	for _, k := range keys {
		if r, err := s.readLayer(k); err == nil {
			u.LayerBytes += r.Size
		}
	}
	if opts.LayersOnly {
		return u, nil
	}
	ids, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return u, err
	}
	refs := map[string]bool{}
	for _, e := range ids {
		if err := ctx.Err(); err != nil {
			return u, err
		}
		rec, err := s.readImage(e.Name())
		if err != nil {
			continue // unfinished or being deleted
		}
		addRefs(refs, rec)
		if s.listed(e.Name(), &rec) {
			u.Images++
			u.BaseBytes += rec.BaseSize
			u.DiskLimitBytes += int64(rec.DiskLimit)
		}
	}
	for _, k := range keys {
		if !refs[k] {
			u.UnreferencedLayers++
		}
	}
	return u, nil
}

// layerKeys lists the layer dirs present (published or not).
func (s *Store) layerKeys() ([]string, error) {
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

// referencedLayers returns every layer key an image record references.
func (s *Store) referencedLayers() (map[string]bool, error) {
	entries, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, err
	}
	refs := map[string]bool{}
	for _, e := range entries {
		if r, err := s.readImage(e.Name()); err == nil {
			addRefs(refs, r)
		}
	}
	return refs, nil
}

// addRefs adds the layer keys an image record names to refs: membership
// only, so a damaged record's names still keep their layers (a running
// container may use them), and are never paths.
func addRefs(refs map[string]bool, r ImageRecord) {
	for _, d := range r.Layers {
		if k, err := layerKey(d); err == nil {
			refs[k] = true
		}
	}
	for _, k := range r.Lowers {
		refs[k] = true
	}
}

// removeLayerIfUnused removes layer key when no process holds its lock
// and unused (asked while holding the lock exclusively) says nothing
// references it. A create takes a shared lock on a layer before it writes a
// record that references it, so the answer cannot go stale.
func (s *Store) removeLayerIfUnused(ctx context.Context, key string, unused func() (bool, error)) (removed bool, size int64, err error) {
	if err := checkLayerKey(key); err != nil {
		return false, 0, err
	}
	lock, ok, err := s.tryLayerExclusive(key)
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

// removeBatch is how many layers removeUnreferencedLayers locks before it
// reads the records once for all of them (well under the default limit of
// 1024 open files).
const removeBatch = 256

// removeUnreferencedLayers removes the layers among keys that no image
// record references and no process holds. It locks a batch of them
// (exclusively, without waiting: a held layer is in use), then reads the
// records once for the whole batch: a create takes a layer's lock shared
// before it writes a record naming it, so once the batch is locked no new
// record can name one of its layers. Reading the records once per layer
// instead cost 35 ms a layer in a store of 1,000 images (28.8x a small
// store's cost).
func (s *Store) removeUnreferencedLayers(ctx context.Context, keys []string) (removed int, bytes int64, err error) {
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
			l, ok, err := s.tryLayerExclusive(key)
			if err != nil {
				release()
				return removed, bytes, err
			}
			if ok {
				locked[key] = l
			}
		}
		refs, err := s.referencedLayers()
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
	defer func() { unclaim(lock, removed) }()
	rec, recErr := s.readLayer(key)
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

// removeDanglingLinks removes short links whose layer is gone and not being
// published right now.
func (s *Store) removeDanglingLinks() (int, error) {
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
		lock := s.claimAbsentLayer(key)
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

// removeStaleLocalRecords removes recorded local-rootfs versions whose layer
// is gone.
func (s *Store) removeStaleLocalRecords() int {
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
