package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/flock"
	"github.com/taproot-dev/taproot/overlayxfs"
	"golang.org/x/sys/unix"
)

// CreateRequest describes an image to create.
type CreateRequest struct {
	ID             string
	Ref            string
	ManifestDigest digest.Digest
	Config         imgspecv1.Image
	Layers         []Layer // base first
	// DiskLimit is the image's limit in bytes (0 = none). Unless
	// ExcludeBase, the image's base size counts against it.
	DiskLimit   uint64
	ExcludeBase bool
	// DiskLimitInodes is the image's inode limit (0 = derived from the
	// byte limit, see inodeLimit), counted like DiskLimit.
	DiskLimitInodes uint64
}

// ErrUnreachable reports a store whose parents container root cannot
// search, so the runtime could not mount its images.
var ErrUnreachable = errors.New("container root cannot reach the store")

// ErrLimitBelowBase reports a disk limit not larger than the image itself.
var ErrLimitBelowBase = errors.New("disk limit is smaller than the image's base size")

// Create makes image id from req: layers present and locked, squashed if
// overlay could not stack them, upper/work dirs with their limit, and the
// record written last.
func (s *Store) Create(ctx context.Context, req CreateRequest) (rec ImageRecord, err error) {
	if err := ValidateID(req.ID); err != nil {
		return rec, err
	}
	idLock, err := flock.Exclusive(ctx, s.imageLock(req.ID))
	if err != nil {
		return rec, err
	}
	dir := s.imageDir(req.ID)
	defer func() {
		// A failed create leaves no image, so no reason for its lock file.
		unclaim(idLock, !exists(dir))
	}()

	if _, err := os.Stat(s.imageRecord(req.ID)); err == nil {
		return rec, fmt.Errorf("image %q: %w", req.ID, ErrImageExists)
	}
	if _, err := os.Lstat(dir); err == nil {
		// A create that died before its record: we hold the id's lock, so
		// nobody is working on it.
		s.log.Info("removing an unfinished image left by a killed create", "id", req.ID)
		if err := s.removeAll(ctx, dir); err != nil {
			return rec, err
		}
	}

	if err := s.checkReachable(); err != nil {
		return rec, err
	}
	keys, held, err := s.ensureLayers(ctx, req.Layers)
	if err != nil {
		return rec, err
	}
	defer s.releaseHeld(held)

	var base, baseInodes int64
	diffIDs := make([]digest.Digest, len(req.Layers))
	seen := map[string]bool{}
	for i, l := range req.Layers {
		diffIDs[i] = l.DiffID
		if seen[keys[i]] {
			continue
		}
		seen[keys[i]] = true
		lr, err := s.readLayer(keys[i])
		if err != nil {
			return rec, fmt.Errorf("layer %s: %w", l.DiffID, err)
		}
		base += lr.Size
		baseInodes += lr.Inodes
	}
	// A limit equal to the base leaves the upper dir 0 bytes, which XFS
	// cannot express (a hard limit of 0 is no limit): refuse it too.
	if req.DiskLimit > 0 && !req.ExcludeBase && req.DiskLimit <= uint64(base) {
		return rec, fmt.Errorf("image %q: %w: limit %d bytes, image %d bytes", req.ID, ErrLimitBelowBase, req.DiskLimit, base)
	}

	lowers, err := s.planLowers(ctx, keys, req.ID, held)
	if err != nil {
		return rec, err
	}
	// The mount is planned here, once, and persisted with the record.
	mounts, err := s.mountsOf(ImageRecord{ID: req.ID, Lowers: lowers})
	if err != nil {
		return rec, fmt.Errorf("image %q: %w", req.ID, err)
	}

	quota := false
	defer func() {
		if err != nil {
			if quota {
				s.opts.Limiter.Clear(context.WithoutCancel(ctx), dir)
			}
			if rmErr := s.removeAll(context.WithoutCancel(ctx), dir); rmErr != nil {
				s.log.Warn("unfinished image left behind; clean will remove it", "id", req.ID, "error", rmErr)
			}
		}
	}()
	a, err := s.access()
	if err != nil {
		return rec, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return rec, fmt.Errorf("image %q: %w", req.ID, err)
	}
	if err := a.fix(dir, true); err != nil {
		return rec, fmt.Errorf("image %q: %w", req.ID, err)
	}
	for _, sub := range imageSubdirs {
		if err := s.mkdirForContainerRoot(s.imageSub(req.ID, sub)); err != nil {
			return rec, fmt.Errorf("image %q: %w", req.ID, err)
		}
	}
	switch {
	case s.opts.Limiter != nil:
		// Every image on a quota store gets a project, limited or not, so
		// that stats can read its usage without walking its files.
		limit := req.DiskLimit
		if limit > 0 && !req.ExcludeBase {
			limit -= uint64(base)
		}
		if limit == 0 {
			if limit, err = overlayxfs.Capacity(dir); err != nil {
				return rec, err
			}
		}
		if limit == 0 {
			return rec, fmt.Errorf("image %q: %w: limit %d bytes, image %d bytes", req.ID, ErrLimitBelowBase, req.DiskLimit, base)
		}
		inodes, err := inodeLimit(req, limit, baseInodes)
		if err != nil {
			return rec, err
		}
		quota = true // from here a failure must clear it
		if err := s.opts.Limiter.SetLimit(ctx, dir, limit, inodes); err != nil {
			return rec, fmt.Errorf("image %q: set disk limit: %w", req.ID, err)
		}
	case req.DiskLimit > 0 || req.DiskLimitInodes > 0:
		s.warnNoQuotaOnce()
	}
	rec = ImageRecord{
		ID:             req.ID,
		Ref:            req.Ref,
		ManifestDigest: req.ManifestDigest,
		Created:        time.Now().UTC(),
		Layers:         diffIDs,
		Lowers:         lowers,
		BaseSize:       base,
		DiskLimit:      req.DiskLimit,
		ExcludeBase:    req.ExcludeBase,
		Quota:          quota,
		Config:         req.Config,
		Mounts:         mounts,
	}
	rec.BaseInodes, rec.DiskLimitInodes = baseInodes, req.DiskLimitInodes
	if err := ctx.Err(); err != nil {
		return rec, err
	}
	if err := writeJSONAtomic(s.imageRecord(req.ID), &rec, 0o644, s.opts.Sync); err != nil {
		return rec, fmt.Errorf("image %q: write record: %w", req.ID, err)
	}
	if err := s.syncImage(req.ID); err != nil {
		return rec, fmt.Errorf("image %q: %w", req.ID, err)
	}
	return rec, nil
}

// syncImage makes the rest of an image durable once its record is: the
// dirs it names, its own name in images/, and the names of the layers it
// uses (published durably by their creates; fsynced again here for a layer
// another create published a moment ago). On XFS every one of these is a
// no-op or a log force that the record's fsync already did: they cost
// microseconds, not a flush each, and need no syncfs of the whole store's
// filesystem (which would flush every running container's dirty data).
func (s *Store) syncImage(id string) error {
	if !s.opts.Sync {
		return nil
	}
	return syncDirs(true,
		s.imageSub(id, rootfsDir), s.imageSub(id, upperDir), s.imageSub(id, workDir),
		s.imagesDir(), s.layersDir(), s.linksDir())
}

// Image reads an image's record, checking every name in it and its
// persisted mount.
func (s *Store) Image(ctx context.Context, id string) (ImageRecord, error) {
	rec, err := s.readImage(id)
	if err != nil {
		return rec, err
	}
	if err := checkImageRecord(id, &rec); err != nil {
		return rec, err
	}
	return rec, s.checkMounts(&rec)
}

// readImage reads an image's record as it is (for clean, which must count
// what even a damaged record names as referenced).
func (s *Store) readImage(id string) (ImageRecord, error) {
	var rec ImageRecord
	if err := ValidateID(id); err != nil {
		return rec, err
	}
	err := readJSON(s.imageRecord(id), &rec)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, fmt.Errorf("image %q: %w", id, ErrImageNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("image %q: %w: %w", id, ErrBadRecord, err)
	}
	return rec, nil
}

// Images lists complete images.
func (s *Store) Images(ctx context.Context) ([]ImageRecord, error) {
	entries, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, err
	}
	var out []ImageRecord
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, err := s.readImage(e.Name())
		if err != nil || !s.listed(e.Name(), &rec) {
			continue // unfinished, being deleted or damaged (check reports it)
		}
		out = append(out, rec)
	}
	return out, nil
}

// listed says whether the record read from images/<id> is one Images
// lists (and Usage counts): its names check out and its persisted mount
// matches the names it carries (checkMountsBy, quick).
func (s *Store) listed(id string, rec *ImageRecord) bool {
	return checkImageRecord(id, rec) == nil && s.checkMountsBy(rec, true) == nil
}

// Delete removes image id. An unknown id is not an error: it returns
// ErrImageNotFound wrapped so the caller can warn, and changes nothing.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	idLock, err := flock.Exclusive(ctx, s.imageLock(id))
	if err != nil {
		return err
	}
	defer idLock.RemoveAndRelease()
	dir := s.imageDir(id)
	var rec ImageRecord
	err = readJSON(s.imageRecord(id), &rec)
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Lstat(dir); statErr != nil {
			return fmt.Errorf("image %q: %w", id, ErrImageNotFound)
		}
		// Unfinished create: remove what it left.
	} else if err != nil {
		s.log.Warn("image record unreadable; removing the image anyway", "id", id, "error", err)
	}
	if rec.Quota && s.opts.Limiter != nil {
		if err := s.opts.Limiter.Clear(ctx, dir); err != nil {
			return fmt.Errorf("image %q: clear disk limit: %w", id, err)
		}
	}
	// Move aside first: the id is free at once, and a killed delete leaves
	// only tmp debris.
	t, err := s.newTmp(ctx, tmpTrash)
	if err != nil {
		return err
	}
	trash := filepath.Join(t.path, "image")
	if err := os.Rename(dir, trash); err != nil {
		s.removeTmp(ctx, t)
		return fmt.Errorf("image %q: %w", id, err)
	}
	// Durable before delete returns, and before clean may remove the
	// layers: a cut must not bring back a record whose layers are gone.
	if err := syncDirs(s.opts.Sync, s.imagesDir()); err != nil {
		s.removeTmp(ctx, t)
		return fmt.Errorf("image %q: %w", id, err)
	}
	if s.opts.DeferReclaim {
		// Leave the trash unlocked: Reclaim (started by the caller in the
		// background) or clean removes it.
		t.lock.RemoveAndRelease()
		return nil
	}
	s.removeTmp(ctx, t)
	return nil
}

// Reclaim removes trash that deferred deletes left. It waits for other
// reclaimers rather than skipping their trash, so that after it returns
// no trash of a finished delete is left.
func (s *Store) Reclaim(ctx context.Context) error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tmpTrash+"-") {
			continue
		}
		path := s.tmpPath(name)
		l, err := flock.Exclusive(ctx, s.tmpLock(name))
		if err != nil {
			return err
		}
		if _, err := os.Lstat(path); err == nil {
			if err := s.removeAll(ctx, path); err != nil {
				errs = append(errs, err)
			}
		}
		l.RemoveAndRelease()
	}
	return errors.Join(errs...)
}

// mountPlan returns the overlay dirs of an image (lowers top first), from
// a record Image has checked: every lower is a short link under l/ whose
// name its layer's record may only choose among the names of that layer.
func (s *Store) mountPlan(rec ImageRecord) (overlayxfs.Plan, error) {
	if err := checkImageRecord(rec.ID, &rec); err != nil {
		return overlayxfs.Plan{}, err
	}
	dir := s.imageDir(rec.ID)
	p := overlayxfs.Plan{
		Upper:  filepath.Join(dir, "diff"),
		Work:   filepath.Join(dir, "work"),
		Rootfs: filepath.Join(dir, "rootfs"),
	}
	for _, key := range rec.Lowers {
		short, err := s.shortOf(key)
		if err != nil {
			return overlayxfs.Plan{}, fmt.Errorf("image %q: %w", rec.ID, err)
		}
		p.Lowers = append(p.Lowers, s.linkPath(short))
	}
	return p, nil
}

// mountsOf plans the mounts of an image from its checked names: the one
// overlay of mountPlan's dirs (overlayxfs.Plan.Mount refuses a store path
// the options cannot carry).
func (s *Store) mountsOf(rec ImageRecord) ([]overlayxfs.Mount, error) {
	p, err := s.mountPlan(rec)
	if err != nil {
		return nil, err
	}
	m, err := p.Mount()
	if err != nil {
		return nil, err
	}
	return []overlayxfs.Mount{m}, nil
}

// checkMounts checks the persisted mounts of a record whose names
// checkImageRecord has checked: they must be exactly the ones its layers
// give in this store (type overlay, lowerdir the l/<short> links of
// rec.Lowers in order, upperdir/workdir/target images/<id>/{diff,work,
// rootfs}), or the record was tampered with (an extra option, a lowerdir
// of / or an upperdir of /etc would otherwise be mounted). Recomputing and
// comparing checks every field with no parser of the options.
func (s *Store) checkMounts(rec *ImageRecord) error {
	return s.checkMountsBy(rec, false)
}

// checkMountsBy is checkMounts; with quick, a persisted mount is checked
// against the names it carries itself (mountsFromPersistedNames) rather
// than the layer records', for listing: a damaged layer record is then
// found when the image is used (Image) or checked, not when it is listed.
func (s *Store) checkMountsBy(rec *ImageRecord, quick bool) error {
	if quick && rec.Mounts != nil {
		if want, ok := s.mountsFromPersistedNames(*rec); ok && rec.Mounts[0].Equal(want) {
			return nil
		}
	}
	want, err := s.mountsOf(*rec)
	if err != nil {
		if errors.Is(err, ErrBadRecord) {
			return err
		}
		return fmt.Errorf("image %q: cannot check its mount: %w: %w", rec.ID, ErrBadRecord, err)
	}
	if rec.Mounts == nil {
		// A record written by a taproot before mounts were persisted:
		// its mount is computed once here, on read, from the same
		// checked names (nothing is written back; delete and the
		// fragment use this value).
		rec.Mounts = want
		return nil
	}
	if len(rec.Mounts) != len(want) {
		return fmt.Errorf("image %q: record names %d mounts, its layers give %d: %w", rec.ID, len(rec.Mounts), len(want), ErrBadRecord)
	}
	if moved(rec.Mounts, want, s.root) {
		// The store was moved (or is reached by another path, a bind
		// mount): the record is this store's mount under its old path,
		// field for field. Its names were checked; the paths are not
		// used: the image gets the mount this store gives it now.
		rec.Mounts = want
		return nil
	}
	for i := range want {
		if !rec.Mounts[i].Equal(want[i]) {
			return fmt.Errorf("image %q: record's mount %q on %q (%q) is not the one its layers give in this store: %w", rec.ID, rec.Mounts[i].Type, rec.Mounts[i].Target, rec.Mounts[i].Data(), ErrBadRecord)
		}
	}
	return nil
}

// moved reports whether got is want with a store path other than root in
// every path: want's target, upper, work and lower dirs all begin with
// root, so got is want moved when one old root, put in root's place,
// makes every field equal. Paths in mounts hold no ',' or ':'
// (overlayxfs refuses them), so the options compare as text.
func moved(got, want []overlayxfs.Mount, root string) bool {
	if len(got) != 1 || len(want) != 1 {
		return false
	}
	rel := strings.TrimPrefix(want[0].Target, root)
	old, ok := strings.CutSuffix(got[0].Target, rel)
	if !ok || old == root || !filepath.IsAbs(old) || filepath.Clean(old) != old {
		return false
	}
	g := got[0]
	g.Target = root + rel
	g.Options = nil
	for _, o := range got[0].Options {
		g.Options = append(g.Options, strings.ReplaceAll(o, old+"/", root+"/"))
	}
	return g.Equal(want[0])
}

// mountsFromPersistedNames is the mount rec's layers give when the short
// link names are the ones its persisted lowerdir carries, each checked by
// computation to be one of its layer's names (validShort): no layer record
// is read, so listing 1,000 images does not read 5,000 layer records
// (55 µs each here) to check mounts nobody mounts. ok is false when the
// persisted mount is not of that shape; checkMounts then compares with the
// names the layer records give, to say what is wrong.
func (s *Store) mountsFromPersistedNames(rec ImageRecord) (overlayxfs.Mount, bool) {
	if len(rec.Mounts) != 1 {
		return overlayxfs.Mount{}, false
	}
	lowers := rec.Mounts[0].Lowers()
	if len(lowers) != len(rec.Lowers) {
		return overlayxfs.Mount{}, false
	}
	p := overlayxfs.Plan{
		Upper:  s.imageSub(rec.ID, upperDir),
		Work:   s.imageSub(rec.ID, workDir),
		Rootfs: s.imageSub(rec.ID, rootfsDir),
	}
	for i, dir := range lowers {
		short := filepath.Base(dir)
		if !validShort(rec.Lowers[i], short) {
			return overlayxfs.Mount{}, false
		}
		p.Lowers = append(p.Lowers, s.linkPath(short))
	}
	m, err := p.Mount()
	return m, err == nil
}

// shortOf is the short link name a layer's record gives, checked to be
// one of that layer's names.
func (s *Store) shortOf(key string) (string, error) {
	lr, err := s.readLayer(key)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", key, err)
	}
	if !validShort(key, lr.Short) {
		return "", fmt.Errorf("layer %s: record names short link %q: %w", key, lr.Short, ErrBadRecord)
	}
	return lr.Short, nil
}

// containerRoot returns the host uid and gid of container root.
func (s *Store) containerRoot() (uid, gid uint32, err error) {
	uid, err = idmap.ToHost(s.meta.UIDMappings, 0)
	if err != nil {
		return 0, 0, err
	}
	gid, err = idmap.ToHost(s.meta.GIDMappings, 0)
	return uid, gid, err
}

// warnNoQuotaOnce says, the first time a limit is asked of a store without
// project quotas, that limits are not enforced.
func (s *Store) warnNoQuotaOnce() {
	marker := s.noQuotaMarker()
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	f.Close()
	s.log.Warn("disk limits are not enforced: this store is not on XFS with project quotas (see taproot init-store --help)", "store", s.root)
}

// checkReachable fails early, with the fix, when the runtime could not
// mount the image: it mounts inside the container's user namespace as
// container root, which for a root-owned store is an unprivileged host ID
// that needs search permission on every directory above the store. Only
// that ID needs it: an ACL entry grants it without opening the dirs to
// other users (the store's own dirs let it search through their group).
func (s *Store) checkReachable() error {
	a, err := s.access()
	if err != nil || !a.shared() {
		return err // container root is the caller, who reached the store
	}
	for dir := filepath.Dir(s.root); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		st, _ := statT(fi)
		perm := fi.Mode().Perm()
		ok := perm&0o001 != 0 || (st != nil && st.Gid == a.rootGID && perm&0o010 != 0) || (st != nil && st.Uid == a.rootUID && perm&0o100 != 0) || hasACL(dir)
		if !ok {
			return fmt.Errorf("store %s: %w: container root (host uid %d) cannot search %s (mode %04o) to mount images: grant only it search with `setfacl -m u:%d:x %s`, or put the store under a dir it can search", s.root, ErrUnreachable, a.rootUID, dir, perm, a.rootUID, dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// hasACL says whether dir has an access ACL, which may grant container
// root search: checkReachable then trusts the admin who set it.
func hasACL(dir string) bool {
	_, err := unix.Getxattr(dir, "system.posix_acl_access", nil)
	return err == nil
}
