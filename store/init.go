package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/flock"
)

// InitOptions configure Init.
type InitOptions struct {
	OwnerUID, OwnerGID       uint32
	UIDMappings, GIDMappings []idmap.Mapping // nil: the owner's default
	Quota                    bool
	FSType                   string
}

// Init creates (or, run again with the same owner and mapping, confirms)
// the store at root for its owner: the layout, owned by the owner, and the
// meta record. Root runs it (init-store) before handing the store to an
// unprivileged daemon user.
func Init(ctx context.Context, root string, o InitOptions) (Meta, error) {
	if !filepath.IsAbs(root) {
		return Meta{}, fmt.Errorf("store path %q must be absolute", root)
	}
	// Init confirms an existing store only with the mapping it would
	// give a new one: no mapping means the owner's default, not "any".
	uids, gids, err := defaultMappings(filepath.Clean(root), o.OwnerUID, o.OwnerGID, o.UIDMappings, o.GIDMappings)
	if err != nil {
		return Meta{}, err
	}
	s, err := establish(ctx, filepath.Clean(root), makeSpec{
		ownerUID: o.OwnerUID, ownerGID: o.OwnerGID, uids: uids, gids: gids,
		adopt: true, quota: &quotaSpec{on: o.Quota, fsType: o.FSType},
		sync: true, log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return Meta{}, err
	}
	return s.meta, nil
}

// makeSpec is what establish needs to make or confirm a store.
type makeSpec struct {
	ownerUID, ownerGID uint32
	// uids, gids: the mapping asked for; nil means the store's, or for a
	// new store the owner's default (see mappingsFor).
	uids, gids []idmap.Mapping
	// adopt: root is making the store for its owner (Init): the store dir
	// may be root's (a fresh mount point), the layout is handed over, and
	// an existing store must name the same owner.
	adopt bool
	// quota, if set, is recorded in the meta (Init); nil keeps it.
	quota *quotaSpec
	sync  bool
	log   *slog.Logger
}

type quotaSpec struct {
	on     bool
	fsType string
}

// establish is the one way a store is made or opened, for Open and Init
// alike: the path checked (perm.go), and then either an existing store's
// record confirmed (format version, owner, a valid mapping that maps
// container root, the mapping asked for) or a new one made under the init
// lock. Nothing that depends on the mapping is changed before the init lock
// is held and the record read again under it, so that of two processes
// making one store with different mappings the second changes nothing and
// is refused with ErrMappingDiffer.
func establish(ctx context.Context, root string, sp makeSpec) (*Store, error) {
	root, err := prepareRoot(root, sp.ownerUID, sp.adopt)
	if err != nil {
		return nil, err
	}
	s := &Store{layout: layout{root}, log: sp.log}
	s.opts.Sync = sp.sync
	var m Meta
	err = readJSON(s.metaPath(), &m)
	switch {
	case err == nil:
		return s, s.confirm(ctx, m, sp)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	uids, gids, err := defaultMappings(root, sp.ownerUID, sp.ownerGID, sp.uids, sp.gids)
	if err != nil {
		return nil, err
	}
	m = Meta{
		Version: MetaVersion, OwnerUID: sp.ownerUID, OwnerGID: sp.ownerGID,
		UIDMappings: uids, GIDMappings: gids, Created: time.Now().UTC(),
	}
	if sp.quota != nil {
		m.Quota, m.FSType = sp.quota.on, sp.quota.fsType
	}
	if err := validateMeta(root, m); err != nil {
		return nil, err
	}
	// Two processes may make the store at once: the lock decides who
	// writes. locks/ is the owner's alone, whatever the mapping.
	owner := access{ownerUID: sp.ownerUID, ownerGID: sp.ownerGID}
	if err := owner.mkdir(s.locksDir(), false); err != nil {
		return nil, fmt.Errorf("create store: %w", err)
	}
	l, err := s.lockInit(ctx, sp)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	var theirs Meta
	if err := readJSON(s.metaPath(), &theirs); err == nil {
		return s, s.confirm(ctx, theirs, sp)
	}
	s.meta = m
	// prepareRoot made the dir before the mapping was known.
	a, err := s.access()
	if err != nil {
		return nil, err
	}
	if err := a.fix(root, true); err != nil {
		return nil, fmt.Errorf("create store: %w", err)
	}
	if err := s.ensureLayout(sp.adopt); err != nil {
		return nil, err
	}
	if err := s.writeMeta(m); err != nil {
		return nil, err
	}
	// The layout dirs are names in the root, and the root a name in its
	// parent: both durable with the meta (the parent best effort: the
	// owner may not be allowed to open it).
	if err := syncDirs(sp.sync, root); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if sp.sync {
		syncDir(filepath.Dir(root))
	}
	return s, nil
}

// confirm checks an existing store's record against what is asked, takes
// the layout as it is (tightening an old store once, handing it over with
// adopt), and records a changed quota.
func (s *Store) confirm(ctx context.Context, m Meta, sp makeSpec) error {
	if m.Version > MetaVersion {
		return fmt.Errorf("store %s has format version %d; this taproot knows up to %d", s.root, m.Version, MetaVersion)
	}
	if sp.adopt && (m.OwnerUID != sp.ownerUID || m.OwnerGID != sp.ownerGID) {
		return fmt.Errorf("store %s is already initialized for owner %d:%d, not %d:%d (delete-store first)", s.root, m.OwnerUID, m.OwnerGID, sp.ownerUID, sp.ownerGID)
	}
	if m.OwnerUID != sp.ownerUID {
		return fmt.Errorf("store %s: %w: its record names owner uid %d, not the caller (uid %d)", s.root, ErrStoreUnsafe, m.OwnerUID, sp.ownerUID)
	}
	if err := validateMeta(s.root, m); err != nil {
		return err
	}
	if err := checkMapping(s.root, m, sp.uids, sp.gids); err != nil {
		return err
	}
	s.meta = m
	if err := s.ensureLayout(sp.adopt); err != nil {
		return err
	}
	if sp.quota == nil || (m.Quota == sp.quota.on && m.FSType == sp.quota.fsType) {
		return nil
	}
	l, err := s.lockInit(ctx, sp)
	if err != nil {
		return err
	}
	defer l.Release()
	m.Quota, m.FSType = sp.quota.on, sp.quota.fsType
	if err := s.writeMeta(m); err != nil {
		return err
	}
	s.meta = m
	return nil
}

// lockInit takes the init lock; its file is the owner's even when root
// makes the store.
func (s *Store) lockInit(ctx context.Context, sp makeSpec) (*flock.Lock, error) {
	l, err := flock.Exclusive(ctx, s.initLock())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.root, err)
	}
	if uint32(os.Geteuid()) != sp.ownerUID {
		if err := os.Lchown(s.initLock(), int(sp.ownerUID), int(sp.ownerGID)); err != nil {
			l.Release()
			return nil, fmt.Errorf("hand store to %d:%d: %w", sp.ownerUID, sp.ownerGID, err)
		}
	}
	return l, nil
}

// writeMeta writes the store's record, the owner's.
func (s *Store) writeMeta(m Meta) error {
	if err := writeJSONAtomic(s.metaPath(), &m, 0o644, s.opts.Sync); err != nil {
		return fmt.Errorf("store %s: write meta: %w", s.root, err)
	}
	if uint32(os.Geteuid()) != m.OwnerUID {
		if err := os.Lchown(s.metaPath(), int(m.OwnerUID), int(m.OwnerGID)); err != nil {
			return fmt.Errorf("hand store to %d:%d: %w", m.OwnerUID, m.OwnerGID, err)
		}
	}
	return nil
}

// defaultMappings fills in the owner's default for a mapping not given.
func defaultMappings(root string, uid, gid uint32, uids, gids []idmap.Mapping) ([]idmap.Mapping, []idmap.Mapping, error) {
	if uids != nil && gids != nil {
		return uids, gids, nil
	}
	du, dg, err := mappingsFor(uid, gid)
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", root, err)
	}
	if uids == nil {
		uids = du
	}
	if gids == nil {
		gids = dg
	}
	return uids, gids, nil
}

// mappingsFor is the default mapping of a store owned by uid:gid: maximus
// for root, else the owner's sub-IDs.
func mappingsFor(uid, gid uint32) (uids, gids []idmap.Mapping, err error) {
	if uid == 0 {
		return idmap.Maximus(), idmap.Maximus(), nil
	}
	if uids, err = idmap.ForUser("/etc/subuid", uid, uid); err != nil {
		return nil, nil, err
	}
	if gids, err = idmap.ForUser("/etc/subgid", uid, uid); err != nil {
		return nil, nil, err
	}
	gids[0].HostID = gid
	return uids, gids, idmap.Validate(gids)
}
