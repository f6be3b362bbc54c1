package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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
	root, err := prepareRoot(root, o.OwnerUID, true)
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	err = readJSON(filepath.Join(root, "meta", "store.json"), &m)
	existing := err == nil
	switch {
	case existing:
		if m.OwnerUID != o.OwnerUID || m.OwnerGID != o.OwnerGID {
			return m, fmt.Errorf("store %s is already initialized for owner %d:%d, not %d:%d (delete-store first)", root, m.OwnerUID, m.OwnerGID, o.OwnerUID, o.OwnerGID)
		}
		if !slices.Equal(m.UIDMappings, o.UIDMappings) || !slices.Equal(m.GIDMappings, o.GIDMappings) {
			return m, fmt.Errorf("store %s: %w: it was initialized with uid mapping %v", root, ErrMappingDiffer, m.UIDMappings)
		}
	case errors.Is(err, fs.ErrNotExist):
		m = Meta{
			Version: MetaVersion, OwnerUID: o.OwnerUID, OwnerGID: o.OwnerGID,
			UIDMappings: o.UIDMappings, GIDMappings: o.GIDMappings,
			Created: time.Now().UTC(),
		}
	default:
		return m, err
	}
	if err := validateMeta(root, m); err != nil {
		return m, err
	}
	// Hand the layout to the owner, with the modes perm.go explains.
	s := &Store{layout: layout{root}, meta: m, log: slog.New(slog.DiscardHandler)}
	if err := s.ensureLayout(true); err != nil {
		return m, err
	}
	if existing && m.Quota == o.Quota && m.FSType == o.FSType {
		return m, nil
	}
	m.Quota, m.FSType = o.Quota, o.FSType
	if err := writeJSONAtomic(s.metaPath(), &m, 0o644, true); err != nil {
		return m, fmt.Errorf("store %s: write meta: %w", root, err)
	}
	if err := os.Lchown(s.metaPath(), int(o.OwnerUID), int(o.OwnerGID)); err != nil {
		return m, fmt.Errorf("hand store to %d:%d: %w", o.OwnerUID, o.OwnerGID, err)
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
