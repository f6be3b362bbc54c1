package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
	"golang.org/x/sys/unix"
)

// backingFile is where init-store --store-size-bytes keeps the XFS image.
func backingFile(storePath string) string { return storePath + ".backing-store" }

type initStoreOptions struct {
	sizeBytes int64
	xfsMount  string
	owner     string
	maps      mappingFlags
}

// NewCmdInitStore returns `taproot init-store`.
func NewCmdInitStore(g *globals) *cobra.Command {
	o := &initStoreOptions{}
	cmd := &cobra.Command{
		Use:   "init-store [--store-size-bytes N | --xfs-mount DIR] [--owner UID:GID]",
		Short: "Create a store for a daemon user, on XFS with project quotas (root, once)",
		Long: `Init-store prepares a store, as root, for the user that will run taproot:

  --store-size-bytes N   make a sparse file <store>.backing-store of N bytes,
                         mkfs.xfs it and mount it at the store path with
                         loop,pquota,noatime (at least 300 MB, mkfs.xfs's minimum)
  --xfs-mount DIR        use an existing XFS mount mounted with pquota; the store
                         is DIR unless --store names a dir inside it

Without either, the store is made on whatever filesystem holds it; if that is
not XFS with project quotas, disk limits are not available (taproot says so).
The store is handed to --owner (default: root) with the owner's sub-ID
mapping (or --uid-mapping/--gid-mapping), and, with quotas, listed in
/etc/taproot/stores, the only stores the setuid taproot-quota helper acts on.
Running it again with the same arguments changes nothing. Prints
{"store":…,"quota":…,"filesystem":…} on stdout.`,
		Example: `  taproot --store /var/lib/taproot init-store --store-size-bytes 10737418240 --owner 1000:1000
  taproot --store /srv/xfs/taproot init-store --xfs-mount /srv/xfs --owner garden:garden`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInitStore(cmd.Context(), g, o, cmd.Flags().Changed("store"))
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.sizeBytes, "store-size-bytes", 0, "size of a new loop-backed XFS filesystem for the store")
	f.StringVar(&o.xfsMount, "xfs-mount", "", "existing XFS mount (with pquota) to put the store on")
	f.StringVar(&o.owner, "owner", "", "UID:GID (or USER:GROUP) that will own and use the store (default 0:0)")
	f.StringArrayVar(&o.maps.uid, "uid-mapping", nil, "container:host:size uid mapping of the store, repeatable (default: the owner's /etc/subuid range, maximus for root)")
	f.StringArrayVar(&o.maps.gid, "gid-mapping", nil, "container:host:size gid mapping of the store, repeatable")
	return cmd
}

func runInitStore(ctx context.Context, g *globals, o *initStoreOptions, storeGiven bool) error {
	if os.Geteuid() != 0 {
		return errors.New("init-store must run as root: it mounts filesystems and edits /etc/taproot/stores")
	}
	if o.sizeBytes < 0 {
		return fmt.Errorf("--store-size-bytes %d: must be positive", o.sizeBytes)
	}
	if o.sizeBytes > 0 && o.xfsMount != "" {
		return errors.New("--store-size-bytes and --xfs-mount exclude each other")
	}
	uid, gid, err := parseOwner(o.owner)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(g.storePath)
	if err != nil {
		return err
	}
	if o.xfsMount != "" {
		mnt, err := filepath.Abs(o.xfsMount)
		if err != nil {
			return err
		}
		if !storeGiven {
			root = mnt
		}
		if root != mnt && !strings.HasPrefix(root, mnt+"/") {
			return fmt.Errorf("store %s is not inside --xfs-mount %s", root, mnt)
		}
		on, err := overlayxfs.ProjectQuotaEnabled(mnt)
		if err != nil {
			return err
		}
		if !on {
			fsType, _ := overlayxfs.FilesystemType(mnt)
			return fmt.Errorf("--xfs-mount %s: project quotas are off (filesystem %s): mount it with -o pquota", mnt, fsType)
		}
	}
	if o.sizeBytes > 0 {
		quotaOn, _ := overlayxfs.ProjectQuotaEnabled(root)
		mounted, _ := overlayxfs.IsMountPoint(root)
		switch {
		case mounted && quotaOn:
			g.log.Info("store filesystem already mounted", "store", root)
		case mounted:
			return fmt.Errorf("%s is already a mount point without XFS project quotas", root)
		default:
			if _, err := os.Stat(backingFile(root)); err == nil {
				return fmt.Errorf("%s exists but is not mounted at %s: mount it (-o loop,pquota,noatime) or delete-store", backingFile(root), root)
			}
			if err := overlayxfs.MakeLoopXFS(ctx, backingFile(root), o.sizeBytes, root); err != nil {
				return fmt.Errorf("make the store's XFS filesystem: %w", err)
			}
		}
	}
	// Before anything is made: a refused store leaves nothing behind.
	if err := checkOneOwnerPerFS(overlayxfs.StoresListPath, root, uid); err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	fsType, err := overlayxfs.FilesystemType(root)
	if err != nil {
		return err
	}
	quota, err := overlayxfs.ProjectQuotaEnabled(root)
	if err != nil {
		return err
	}
	uids, gids, err := o.maps.parse(g)
	if err != nil {
		return err
	}
	if _, err := store.Init(ctx, root, store.InitOptions{
		OwnerUID: uid, OwnerGID: gid, UIDMappings: uids, GIDMappings: gids, Quota: quota, FSType: fsType,
	}); err != nil {
		return err
	}
	if quota {
		if err := overlayxfs.RegisterStore(overlayxfs.StoresListPath, root); err != nil {
			return fmt.Errorf("list the store in %s: %w", overlayxfs.StoresListPath, err)
		}
	} else {
		g.log.Warn("the store's filesystem has no XFS project quotas: images get no disk limits", "store", root, "filesystem", fsType)
	}
	return json.NewEncoder(g.streams.Out).Encode(struct {
		Store      string `json:"store"`
		Quota      bool   `json:"quota"`
		Filesystem string `json:"filesystem"`
	}{root, quota, fsType})
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
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == s {
			if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				return uint32(n), nil
			}
		}
	}
	return 0, fmt.Errorf("no %s %q", kind, s)
}

// NewCmdDeleteStore returns `taproot delete-store`.
func NewCmdDeleteStore(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-store",
		Short: "Remove a store and everything in it, undoing init-store (root)",
		Long: `Delete-store removes the store from /etc/taproot/stores, unmounts its
loop-backed filesystem and removes the backing file, and removes the store
directory with every image and layer in it. Containers still running from it
lose their rootfs. Deleting a store that does not exist succeeds.`,
		Example: "  taproot --store /var/lib/taproot delete-store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return errors.New("delete-store must run as root")
			}
			root, err := filepath.Abs(g.storePath)
			if err != nil {
				return err
			}
			// While the store is still listed: on an --xfs-mount store the
			// images' project limits would outlive it.
			g.clearStoreQuotas(cmd.Context(), root)
			if err := overlayxfs.UnregisterStore(overlayxfs.StoresListPath, root); err != nil {
				return err
			}
			if mounted, _ := overlayxfs.IsMountPoint(root); mounted {
				// Only a mount init-store made: never unmount an admin's
				// --xfs-mount.
				if _, err := os.Stat(backingFile(root)); err == nil {
					if err := os.RemoveAll(filepath.Join(root, "images")); err != nil {
						g.log.Warn("could not empty the store before unmounting", "error", err)
					}
					if err := overlayxfs.UnmountLoopXFS(cmd.Context(), root); err != nil {
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
		},
	}
}

// clearStoreQuotas clears the project quota of every image dir in the
// store, as delete does. Removing an image's files frees what is charged to
// its project, but XFS keeps a project that still has a limit, so without
// this a deleted --xfs-mount store would leave one limit per image behind.
// Failures are logged: delete-store goes on.
func (g *globals) clearStoreQuotas(ctx context.Context, root string) {
	if on, _ := overlayxfs.ProjectQuotaEnabled(root); !on {
		return
	}
	entries, err := os.ReadDir(filepath.Join(root, "images"))
	if err != nil || len(entries) == 0 {
		return
	}
	helper := g.quotaHelperPath()
	if helper == "" {
		g.log.Warn("taproot-quota is not installed: the store's images keep their project quota limits", "store", root)
		return
	}
	h := overlayxfs.QuotaHelper{Path: helper}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := h.Clear(ctx, filepath.Join(root, "images", e.Name())); err != nil {
			g.log.Warn("could not clear an image's disk limit", "image", e.Name(), "error", err)
		}
	}
}

// NewCmdCapacity returns `taproot capacity`.
func NewCmdCapacity(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "capacity",
		Short:   `Print the store filesystem's size as {"capacity":N}`,
		Example: "  taproot capacity",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := overlayxfs.Capacity(g.storePath)
			if err != nil {
				return fmt.Errorf("capacity of store %s: %w", g.storePath, err)
			}
			return json.NewEncoder(g.streams.Out).Encode(spec.Capacity{Capacity: n})
		},
	}
}
