package store

import (
	"context"
	"os"

	"github.com/taproot-dev/taproot/internal/flock"
)

// The lock sequences of the store, written once.
//
// Creates hold a layer's reference lock (layer-<key>) shared from before
// they look at the layer until their image record names it; clean and
// check remove a layer only with that lock held exclusively, taken without
// waiting (a holder is a create in flight). A missing layer is fetched or
// built under its fetch lock (fetch-<key>), taken exclusively while the
// reference lock is held shared: the first process fetches, the others
// wait and find the layer published. flock(2) cannot turn an exclusive
// lock into a shared one atomically (clean could remove the fresh layer in
// between), hence two files.
//
// Everything that decides "left by a dead process" does it by claiming
// the lock of what it looks at: a lock nobody holds guards nothing in
// flight (the kernel drops the locks of a killed process). See debris.go.

// acquireLayer takes key's reference lock shared into held (unless held has
// it) and returns nil when the layer is present; else it returns the
// layer's fetch lock, held exclusively, for the caller to fetch or build
// the layer under, and to RemoveAndRelease once it is published or failed.
// The presence is asked again once the fetch lock is held: the process
// waited for may have published it.
func (s *Store) acquireLayer(ctx context.Context, key string, held heldLayers) (fetch *flock.Lock, err error) {
	if _, ok := held[key]; !ok {
		sh, err := flock.Shared(ctx, s.layerLock(key))
		if err != nil {
			return nil, err
		}
		held[key] = sh
	}
	if s.layerExists(key) {
		return nil, nil
	}
	ex, err := flock.Exclusive(ctx, s.fetchLock(key))
	if err != nil {
		return nil, err
	}
	if s.layerExists(key) {
		ex.RemoveAndRelease()
		return nil, nil
	}
	return ex, nil
}

// tryLayerExclusive takes key's reference lock exclusively without
// waiting, for removing the layer: ok is false when a create holds it.
func (s *Store) tryLayerExclusive(key string) (l *flock.Lock, ok bool, err error) {
	return flock.TryExclusive(s.layerLock(key))
}

// claimAbsentLayer claims key's reference lock (see claim) while the layer
// is not present, for removing what names it (a link, the lock file).
func (s *Store) claimAbsentLayer(key string) *flock.Lock {
	return claim(s.layerLock(key), func() bool { return !s.layerExists(key) })
}

// dropLayerLock removes the reference lock file of a layer that is not
// present, unless someone holds it (a create about to fetch the layer).
func (s *Store) dropLayerLock(key string) bool {
	p := s.layerLock(key)
	if _, err := os.Lstat(p); err != nil {
		return false
	}
	l := s.claimAbsentLayer(key)
	if l == nil {
		return false
	}
	l.RemoveAndRelease()
	return true
}

// claim takes the lock at path exclusively without waiting, for work on
// what it guards that must not race a live process. It returns nil when
// another process holds it, or when still, asked again under the lock,
// says the work is no longer needed (nil: always needed).
func claim(path string, still func() bool) *flock.Lock {
	l, ok, err := flock.TryExclusive(path)
	if err != nil || !ok {
		return nil
	}
	if still != nil && !still() {
		l.Release()
		return nil
	}
	return l
}

// idle says whether nobody holds the lock at path (so what it guards is
// not in flight). It creates no lock file.
func idle(path string) bool {
	if _, err := os.Lstat(path); err != nil {
		return true
	}
	l := claim(path, nil)
	if l == nil {
		return false
	}
	l.Release()
	return true
}

// unclaim releases a claimed lock, removing its file when what it guarded
// is gone (no lock file outlives its thing).
func unclaim(l *flock.Lock, gone bool) {
	if gone {
		l.RemoveAndRelease()
	} else {
		l.Release()
	}
}
