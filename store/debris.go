package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/taproot-dev/taproot/internal/flock"
)

// Debris is what a killed process leaves: a scratch dir, an image dir
// without its record, a cache file before its rename, a lock file that
// guards nothing. Whether a thing is debris or work in flight is decided
// here once, by claiming its lock without waiting (the kernel drops a dead
// holder's locks; every create, delete and clean takes the lock before it
// makes the thing): check reports what this finds, and recover (clean,
// check --repair) removes the same list, each piece while holding its lock.

type debrisKind int

const (
	// debrisTmp: tmp/<kind>-<hex> whose lock nobody holds (a killed
	// create, delete or clean, or the trash of a deferred delete that
	// nobody reclaimed).
	debrisTmp debrisKind = iota
	// debrisUnfinished: images/<id> without a record whose id lock
	// nobody holds (a create killed before its record).
	debrisUnfinished
	// debrisStray: images/<name> where name is no image id: taproot did
	// not make it.
	debrisStray
	// debrisBlobTmp: a metadata cache write whose process is gone
	// (meta/blobs/sha256/<hex>.<pid>.tmp).
	debrisBlobTmp
	// debrisLock: locks/<kind>-<what>.lock whose scratch dir, layer or
	// image is gone, or a fetch lock, that nobody holds.
	debrisLock
)

// debris is one piece found.
type debris struct {
	kind debrisKind
	rel  string // relative to the store root, as check reports it
	path string
}

// debrisSweep says what sweepDebris looks for and whether it removes it.
type debrisSweep struct {
	remove bool
	// stray includes image dirs taproot did not make (check reports and
	// repairs them; clean leaves what is not its own alone).
	stray bool
}

// sweepDebris lists the store's debris, in the order of debrisKind (lock
// files last, so that those freed by the removals before are not listed),
// and with sw.remove removes each piece under its lock. A piece that
// cannot be removed is logged and left for the next sweep.
func (s *Store) sweepDebris(ctx context.Context, sw debrisSweep) ([]debris, error) {
	var found []debris
	add := func(kind debrisKind, parent, name string) {
		found = append(found, debris{kind: kind, rel: filepath.Join(parent, name), path: s.path(parent, name)})
	}
	// claimed runs fn under the lock at lockPath if nobody holds it and
	// still() holds under it; without remove no lock file is made and the
	// lock is not kept.
	claimed := func(lockPath string, still func() bool, fn func(l *flock.Lock)) {
		if !sw.remove {
			if idle(lockPath) && (still == nil || still()) {
				fn(nil)
			}
			return
		}
		if l := claim(lockPath, still); l != nil {
			fn(l)
		}
	}

	tmps, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.root, err)
	}
	for _, e := range tmps {
		name := e.Name()
		path := s.tmpPath(name)
		claimed(s.tmpLock(name), func() bool { return exists(path) }, func(l *flock.Lock) {
			add(debrisTmp, tmpDirName, name)
			if l == nil {
				return
			}
			if err := s.removeAll(ctx, path); err != nil {
				s.log.Warn("could not remove debris", "path", path, "error", err)
				found = found[:len(found)-1]
				l.Release()
				return
			}
			l.RemoveAndRelease()
		})
	}

	images, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return found, fmt.Errorf("store %s: %w", s.root, err)
	}
	for _, e := range images {
		id := e.Name()
		if ValidateID(id) != nil {
			if !sw.stray {
				continue
			}
			add(debrisStray, imagesDirName, id)
			if sw.remove {
				if err := s.removeStray(ctx, imagesDirName, id); err != nil {
					return found, fmt.Errorf("remove %s: %w", found[len(found)-1].rel, err)
				}
			}
			continue
		}
		recordless := func() bool { return !exists(s.imageRecord(id)) }
		if !recordless() {
			continue
		}
		dir := s.imageDir(id)
		claimed(s.imageLock(id), recordless, func(l *flock.Lock) {
			add(debrisUnfinished, imagesDirName, id)
			if l == nil {
				return
			}
			if s.opts.Limiter != nil {
				s.opts.Limiter.Clear(ctx, dir)
			}
			if err := s.removeAll(ctx, dir); err != nil {
				s.log.Warn("could not remove an unfinished image", "path", dir, "error", err)
				found = found[:len(found)-1]
			}
			l.RemoveAndRelease()
		})
	}

	blobs, _ := os.ReadDir(s.blobDir())
	for _, e := range blobs {
		pid, ok := blobTmpPID(e.Name())
		if !ok || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // not a cache write, or its writer may be alive
		}
		rel, _ := filepath.Rel(s.root, s.blobDir())
		add(debrisBlobTmp, rel, e.Name())
		if sw.remove && os.Remove(found[len(found)-1].path) != nil {
			found = found[:len(found)-1]
		}
	}

	locks, _ := os.ReadDir(s.locksDir())
	for _, e := range locks {
		gone := s.lockGuardsNothing(e.Name())
		if gone == nil || !gone() {
			continue
		}
		claimed(filepath.Join(s.locksDir(), e.Name()), gone, func(l *flock.Lock) {
			add(debrisLock, locksDirName, e.Name())
			if l != nil {
				l.RemoveAndRelease()
			}
		})
	}
	return found, nil
}

// lockGuardsNothing returns, for a lock file that guards one scratch dir,
// layer or image, a func saying whether that thing is gone (a fetch lock
// guards work, never a thing: always "gone"); nil for the init lock and
// whatever a newer taproot keeps.
func (s *Store) lockGuardsNothing(file string) func() bool {
	kind, what, ok := parseLockName(file)
	if !ok {
		return nil
	}
	switch kind {
	case lockTmp:
		return func() bool { return !exists(s.tmpPath(what)) }
	case lockFetch:
		return func() bool { return true }
	case lockLayer:
		if !validLayerKey(what) {
			return nil
		}
		return func() bool { return !exists(s.layerDir(what)) }
	case lockImage:
		if ValidateID(what) != nil {
			return nil
		}
		return func() bool { return !exists(s.imageDir(what)) }
	}
	return nil
}

// removeDebris removes what killed processes left (see sweepDebris) and
// returns the paths removed.
func (s *Store) removeDebris(ctx context.Context) ([]string, error) {
	found, err := s.sweepDebris(ctx, debrisSweep{remove: true})
	paths := make([]string, 0, len(found))
	for _, d := range found {
		if d.kind != debrisLock {
			paths = append(paths, d.path)
		}
	}
	return paths, err
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
