package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
	"golang.org/x/sys/unix"
)

// backingFile is where init-store --store-size-bytes keeps the XFS image.
func backingFile(storePath string) string { return storePath + ".backing-store" }

// InitStoreRequest asks root to prepare a store for its owner.
type InitStoreRequest struct {
	// SizeBytes > 0 makes a loop-backed XFS filesystem of that size at
	// the store path; XFSMount uses an existing XFS mount with pquota
	// instead (at most one of the two).
	SizeBytes int64
	XFSMount  string
	// Owner is "UID:GID" or "USER:GROUP" ("" = root).
	Owner string
	// UIDMappings, GIDMappings ("C:H:N"): nil is the config's, else the
	// owner's /etc/subuid range (maximus for root).
	UIDMappings, GIDMappings []string
}

// InitStoreResult is the prepared store.
type InitStoreResult struct {
	Store      string `json:"store"`
	Quota      bool   `json:"quota"`
	Filesystem string `json:"filesystem"`
}

// InitStore prepares a store, as root, for the user that will run taproot:
// the filesystem (a new loop XFS, an existing XFS mount, or whatever holds
// the path), the store's layout handed to the owner with its mapping, and,
// with project quotas, the store listed in /etc/taproot/stores for the
// quota helper. Running it again with the same request changes nothing.
func (b *Builder) InitStore(ctx context.Context, req InitStoreRequest) (InitStoreResult, error) {
	var res InitStoreResult
	if os.Geteuid() != 0 {
		return res, errors.New("init-store must run as root: it mounts filesystems and edits /etc/taproot/stores")
	}
	if req.SizeBytes < 0 {
		return res, fmt.Errorf("--store-size-bytes %d: must be positive", req.SizeBytes)
	}
	if req.SizeBytes > 0 && req.XFSMount != "" {
		return res, errors.New("--store-size-bytes and --xfs-mount exclude each other")
	}
	uid, gid, err := parseOwner(req.Owner)
	if err != nil {
		return res, err
	}
	root, err := b.storeRoot()
	if err != nil {
		return res, err
	}
	if req.XFSMount != "" {
		mnt, err := filepath.Abs(req.XFSMount)
		if err != nil {
			return res, err
		}
		if !b.storeGiven {
			root = mnt
		}
		if root != mnt && !strings.HasPrefix(root, mnt+"/") {
			return res, fmt.Errorf("store %s is not inside --xfs-mount %s", root, mnt)
		}
		on, err := overlayxfs.ProjectQuotaEnabled(mnt)
		if err != nil {
			return res, err
		}
		if !on {
			fsType, _ := overlayxfs.FilesystemType(mnt)
			return res, fmt.Errorf("--xfs-mount %s: project quotas are off (filesystem %s): mount it with -o pquota", mnt, fsType)
		}
	}
	if req.SizeBytes > 0 {
		quotaOn, _ := overlayxfs.ProjectQuotaEnabled(root)
		mounted, _ := overlayxfs.IsMountPoint(root)
		switch {
		case mounted && quotaOn:
			b.log.Info("store filesystem already mounted", "store", root)
		case mounted:
			return res, fmt.Errorf("%s is already a mount point without XFS project quotas", root)
		default:
			if _, err := os.Stat(backingFile(root)); err == nil {
				return res, fmt.Errorf("%s exists but is not mounted at %s: mount it (-o loop,pquota,noatime) or delete-store", backingFile(root), root)
			}
			if err := overlayxfs.MakeLoopXFS(ctx, backingFile(root), req.SizeBytes, root); err != nil {
				return res, fmt.Errorf("make the store's XFS filesystem: %w", err)
			}
		}
	}
	// Before anything is made: a refused store leaves nothing behind.
	if err := checkOneOwnerPerFS(overlayxfs.StoresListPath, root, uid); err != nil {
		return res, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return res, err
	}
	fsType, err := overlayxfs.FilesystemType(root)
	if err != nil {
		return res, err
	}
	quota, err := overlayxfs.ProjectQuotaEnabled(root)
	if err != nil {
		return res, err
	}
	uids, gids, err := b.parseMappings(req.UIDMappings, req.GIDMappings)
	if err != nil {
		return res, err
	}
	if _, err := store.Init(ctx, root, store.InitOptions{
		OwnerUID: uid, OwnerGID: gid, UIDMappings: uids, GIDMappings: gids, Quota: quota, FSType: fsType,
	}); err != nil {
		return res, err
	}
	if quota {
		if err := overlayxfs.RegisterStore(overlayxfs.StoresListPath, root); err != nil {
			return res, fmt.Errorf("list the store in %s: %w", overlayxfs.StoresListPath, err)
		}
	} else {
		b.log.Warn("the store's filesystem has no XFS project quotas: images get no disk limits", "store", root, "filesystem", fsType)
	}
	return InitStoreResult{Store: root, Quota: quota, Filesystem: fsType}, nil
}

// checkOneOwnerPerFS refuses a store for owner at root when a store listed
// in listPath is on the same filesystem (st_dev of root, or of its nearest
// existing parent) and has another owner (its meta's owner_uid, or the uid
// owning its dir). XFS project quotas cannot keep two owners apart on one
// filesystem: see overlayxfs.ErrSharedFilesystem.
func checkOneOwnerPerFS(listPath, root string, owner uint32) error {
	data, err := os.ReadFile(listPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := root
	var st unix.Stat_t
	for {
		err := unix.Stat(dir, &st)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) || dir == "/" {
			return &os.PathError{Op: "stat", Path: dir, Err: err}
		}
		dir = filepath.Dir(dir)
	}
	for _, line := range strings.Split(string(data), "\n") {
		other := strings.TrimSpace(line)
		if other == "" || strings.HasPrefix(other, "#") || other == root {
			continue
		}
		var ost unix.Stat_t
		if err := unix.Lstat(other, &ost); err != nil || ost.Mode&unix.S_IFMT != unix.S_IFDIR || ost.Dev != st.Dev {
			continue // gone, or elsewhere: no store sharing this filesystem
		}
		otherOwner := ost.Uid
		if m, err := store.ReadStoreMeta(other); err == nil {
			otherOwner = m.OwnerUID
		}
		if otherOwner != owner {
			return fmt.Errorf("store %s for uid %d: it would be on the filesystem of store %s of uid %d: %w", root, owner, other, otherOwner, overlayxfs.ErrSharedFilesystem)
		}
	}
	return nil
}

// parseOwner parses "UID:GID" or "USER:GROUP" ("" = root).
func parseOwner(s string) (uid, gid uint32, err error) {
	if s == "" {
		return 0, 0, nil
	}
	u, gr, ok := strings.Cut(s, ":")
	if !ok || u == "" || gr == "" {
		return 0, 0, fmt.Errorf("--owner %q: want UID:GID", s)
	}
	uid, err = lookupID(u, "user")
	if err != nil {
		return 0, 0, fmt.Errorf("--owner %q: %w", s, err)
	}
	gid, err = lookupID(gr, "group")
	if err != nil {
		return 0, 0, fmt.Errorf("--owner %q: %w", s, err)
	}
	return uid, gid, nil
}

// lookupID resolves a user (kind "user") or group name of the host, or
// takes a number as it is.
func lookupID(s, kind string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	file := "/etc/passwd"
	if kind == "group" {
		file = "/etc/group"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	if id, ok := idOf(string(data), s); ok {
		return id, nil
	}
	return 0, fmt.Errorf("no %s %q", kind, s)
}

// DeleteStoreRequest asks root to remove the store, undoing InitStore.
type DeleteStoreRequest struct{}

// DeleteStore removes the store from /etc/taproot/stores (after clearing
// its images' project quotas), unmounts and removes a filesystem
// InitStore made, and removes the store with everything in it (an
// --xfs-mount stays mounted, emptied). No store: nothing to do.
func (b *Builder) DeleteStore(ctx context.Context, _ DeleteStoreRequest) error {
	if os.Geteuid() != 0 {
		return errors.New("delete-store must run as root")
	}
	root, err := b.storeRoot()
	if err != nil {
		return err
	}
	// While the store is still listed: on an --xfs-mount store the
	// images' project limits would outlive it.
	b.clearStoreQuotas(ctx, root)
	if err := overlayxfs.UnregisterStore(overlayxfs.StoresListPath, root); err != nil {
		return err
	}
	if mounted, _ := overlayxfs.IsMountPoint(root); mounted {
		// Only a mount init-store made: never unmount an admin's
		// --xfs-mount.
		if _, err := os.Stat(backingFile(root)); err == nil {
			if err := os.RemoveAll(filepath.Join(root, "images")); err != nil {
				b.log.Warn("could not empty the store before unmounting", "error", err)
			}
			if err := overlayxfs.UnmountLoopXFS(ctx, root); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(backingFile(root)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if mounted, _ := overlayxfs.IsMountPoint(root); mounted {
		// An --xfs-mount store: remove what is inside, keep the mount.
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	return os.RemoveAll(root)
}

// clearStoreQuotas clears the project quota of every image dir in the
// store, as delete does. Removing an image's files frees what is charged to
// its project, but XFS keeps a project that still has a limit, so without
// this a deleted --xfs-mount store would leave one limit per image behind.
// Failures are logged: delete-store goes on.
func (b *Builder) clearStoreQuotas(ctx context.Context, root string) {
	if on, _ := overlayxfs.ProjectQuotaEnabled(root); !on {
		return
	}
	entries, err := os.ReadDir(filepath.Join(root, "images"))
	if err != nil || len(entries) == 0 {
		return
	}
	helper := b.quotaHelperPath()
	if helper == "" {
		b.log.Warn("taproot-quota is not installed: the store's images keep their project quota limits", "store", root)
		return
	}
	h := overlayxfs.QuotaHelper{Path: helper}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := h.Clear(ctx, filepath.Join(root, "images", e.Name())); err != nil {
			b.log.Warn("could not clear an image's disk limit", "image", e.Name(), "error", err)
		}
	}
}

// CapacityRequest asks for the store filesystem's size.
type CapacityRequest struct{}

// Capacity returns the size of the filesystem that holds the store.
func (b *Builder) Capacity(_ context.Context, _ CapacityRequest) (spec.Capacity, error) {
	root, err := b.storeRoot()
	if err != nil {
		return spec.Capacity{}, err
	}
	n, err := overlayxfs.Capacity(root)
	if err != nil {
		return spec.Capacity{}, fmt.Errorf("capacity of store %s: %w", root, err)
	}
	return spec.Capacity{Capacity: n}, nil
}
