package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/taproot-dev/taproot/internal/idmap"
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
	root = filepath.Clean(root)
	if o.UIDMappings == nil || o.GIDMappings == nil {
		uids, gids, err := mappingsFor(o.OwnerUID, o.OwnerGID)
		if err != nil {
			return Meta{}, fmt.Errorf("store %s: %w", root, err)
		}
		if o.UIDMappings == nil {
			o.UIDMappings = uids
		}
		if o.GIDMappings == nil {
			o.GIDMappings = gids
		}
	}
	if err := idmap.Validate(o.UIDMappings); err != nil {
		return Meta{}, fmt.Errorf("uid mapping: %w", err)
	}
	if err := idmap.Validate(o.GIDMappings); err != nil {
		return Meta{}, fmt.Errorf("gid mapping: %w", err)
	}
	s := &Store{root: root}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Meta{}, fmt.Errorf("create store: %w", err)
	}
	if err := s.ensureDirs(); err != nil {
		return Meta{}, err
	}
	var m Meta
	err := readJSON(s.metaPath(), &m)
	switch {
	case err == nil:
		if m.OwnerUID != o.OwnerUID || m.OwnerGID != o.OwnerGID {
			return m, fmt.Errorf("store %s is already initialized for owner %d:%d, not %d:%d (delete-store first)", root, m.OwnerUID, m.OwnerGID, o.OwnerUID, o.OwnerGID)
		}
		if !slices.Equal(m.UIDMappings, o.UIDMappings) || !slices.Equal(m.GIDMappings, o.GIDMappings) {
			return m, fmt.Errorf("store %s: %w: it was initialized with uid mapping %v", root, ErrMappingDiffer, m.UIDMappings)
		}
		if m.Quota != o.Quota || m.FSType != o.FSType {
			m.Quota, m.FSType = o.Quota, o.FSType
			if err := writeJSONAtomic(s.metaPath(), &m, 0o644); err != nil {
				return m, err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		m = Meta{
			Version: MetaVersion, OwnerUID: o.OwnerUID, OwnerGID: o.OwnerGID,
			UIDMappings: o.UIDMappings, GIDMappings: o.GIDMappings,
			Quota: o.Quota, FSType: o.FSType, Created: time.Now().UTC(),
		}
		if err := writeJSONAtomic(s.metaPath(), &m, 0o644); err != nil {
			return m, fmt.Errorf("store %s: write meta: %w", root, err)
		}
	default:
		return m, err
	}
	// Hand the layout to the owner (not the contents of a store in use:
	// those belong to it already).
	for _, p := range []string{"", "meta", "meta/store.json", "layers", "l", "images", "locks", "tmp"} {
		if err := os.Lchown(filepath.Join(root, p), int(o.OwnerUID), int(o.OwnerGID)); err != nil {
			return m, fmt.Errorf("hand store to %d:%d: %w", o.OwnerUID, o.OwnerGID, err)
		}
	}
	return m, nil
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
