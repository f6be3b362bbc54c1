package quotahelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSharedFilesystem reports a listed store on the same filesystem as a
// listed store of another owner: XFS project quotas cannot keep two owners
// apart there (see doc.go), so the helper acts on neither. taproot
// init-store refuses the same with overlayxfs.ErrSharedFilesystem, in the
// same words (TestClientAgrees).
var ErrSharedFilesystem = errors.New("one filesystem holds the quota stores of two owners: the owner of a file can give it any project ID, so each can fill the other's limits; give each owner its own XFS (taproot init-store --store-size-bytes makes one)")

// ErrBadMeta reports a store meta file the helper does not trust or cannot
// read.
var ErrBadMeta = errors.New("bad store meta")

// maxMetaSize bounds <store>/meta/store.json as the helper reads it (a real
// one is well under 1 KiB).
const maxMetaSize = 64 << 10

// containerRoot is the host uid that container uid 0 maps to in a store,
// as its meta says; ok is false when the mapping does not map uid 0 (no
// image dir can then be container root's).
type containerRoot struct {
	uid uint32
	ok  bool
}

func (c containerRoot) String() string {
	if !c.ok {
		return "none: the store's uid mapping does not map container uid 0"
	}
	return fmt.Sprintf("uid %d", c.uid)
}

// storeMeta is the part of <store>/meta/store.json the helper reads. The
// field names are the store's (store.Meta, idmap.Mapping); the helper does
// not import them, to stay standard library and x/sys only.
type storeMeta struct {
	OwnerUID    *uint32 `json:"owner_uid"`
	UIDMappings []struct {
		ContainerID uint32 `json:"container_id"`
		HostID      uint32 `json:"host_id"`
		Size        uint32 `json:"size"`
	} `json:"uid_mappings"`
}

// readContainerRoot reads container root's host uid from the store's meta,
// <store>/meta/store.json, opened from the store's fd with no symlink and
// no mount crossing. meta/ and the file must be on the store's filesystem,
// owned by the store's owner and writable by no one else; the file must be
// a regular file of at most maxMetaSize bytes whose owner_uid is the
// store's owner. See doc.go for why this is enough.
func readContainerRoot(store *os.File, sst *unix.Stat_t) (containerRoot, error) {
	check := func(name string, st *unix.Stat_t, typ uint32, typName string) error {
		switch {
		case st.Mode&unix.S_IFMT != typ:
			return fmt.Errorf("%w: %s is not a %s", ErrBadMeta, name, typName)
		case st.Dev != sst.Dev:
			return fmt.Errorf("%w: %s is not on the store's filesystem", ErrBadMeta, name)
		case st.Uid != sst.Uid:
			return fmt.Errorf("%w: %s is owned by uid %d, not by the store's owner (uid %d)", ErrBadMeta, name, st.Uid, sst.Uid)
		case st.Mode&0o022 != 0:
			return fmt.Errorf("%w: %s is writable by group or others (mode %#o)", ErrBadMeta, name, st.Mode&0o7777)
		}
		return nil
	}
	dir, err := openat2Dir(int(store.Fd()), store.Name(), "meta", unix.O_PATH, true)
	if err != nil {
		return containerRoot{}, fmt.Errorf("%w: %w", ErrBadMeta, err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		return containerRoot{}, &os.PathError{Op: "fstat", Path: dir.Name(), Err: err}
	}
	if err := check(dir.Name(), &st, unix.S_IFDIR, "directory"); err != nil {
		return containerRoot{}, err
	}
	f, err := openat2File(int(dir.Fd()), dir.Name(), "store.json")
	if err != nil {
		return containerRoot{}, fmt.Errorf("%w: %w", ErrBadMeta, err)
	}
	defer f.Close()
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return containerRoot{}, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if err := check(f.Name(), &st, unix.S_IFREG, "regular file"); err != nil {
		return containerRoot{}, err
	}
	if st.Size > maxMetaSize {
		return containerRoot{}, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrBadMeta, f.Name(), st.Size, maxMetaSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return containerRoot{}, &os.PathError{Op: "read", Path: f.Name(), Err: err}
	}
	if len(data) > maxMetaSize {
		return containerRoot{}, fmt.Errorf("%w: %s is more than %d bytes", ErrBadMeta, f.Name(), maxMetaSize)
	}
	var m storeMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return containerRoot{}, fmt.Errorf("%w: %s: %w", ErrBadMeta, f.Name(), err)
	}
	if m.OwnerUID == nil || *m.OwnerUID != sst.Uid {
		return containerRoot{}, fmt.Errorf("%w: %s does not name the store's owner (uid %d) as owner_uid", ErrBadMeta, f.Name(), sst.Uid)
	}
	var cr containerRoot
	for _, mp := range m.UIDMappings {
		if mp.ContainerID != 0 || mp.Size == 0 {
			continue
		}
		if cr.ok {
			return containerRoot{}, fmt.Errorf("%w: %s maps container uid 0 twice", ErrBadMeta, f.Name())
		}
		cr = containerRoot{uid: mp.HostID, ok: true}
	}
	if cr.ok && (cr.uid == 0 || cr.uid == ^uint32(0)) && sst.Uid != 0 {
		// Host root for a store that is not root's is no mapping newuidmap
		// would allow; (uid_t)-1 is no ID. Accept neither.
		cr.ok = false
	}
	return cr, nil
}

// checkOneOwner refuses to act on a store when another listed store on the
// same filesystem (st_dev) has another owner (the uid owning its dir). The
// other stores are opened as root, O_PATH (nothing is read), from / with no
// symlink anywhere on their path, so that an owner who can rename a
// directory above its own listed store cannot make that path name another
// filesystem's directory. A listed path that cannot be opened so (missing,
// through a symlink) is not a store and is skipped.
func (p *privs) checkOneOwner(stores map[string]bool, storeDir string, sst *unix.Stat_t) error {
	for other := range stores {
		if other == storeDir {
			continue
		}
		var st unix.Stat_t
		err := p.asRoot(func() error { return statNoSymlinks(other, &st) })
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if st.Dev == sst.Dev && st.Uid != sst.Uid {
			return fmt.Errorf("store %s (uid %d) and store %s (uid %d): %w", storeDir, sst.Uid, other, st.Uid, ErrSharedFilesystem)
		}
	}
	return nil
}

// statNoSymlinks fstats the clean absolute path p opened O_PATH with
// openat2 and RESOLVE_NO_SYMLINKS. Before Linux 5.6 (no openat2) it falls
// back to lstat, which follows symlinks above the last component.
func statNoSymlinks(p string, st *unix.Stat_t) error {
	if err := checkCleanAbs(p); err != nil {
		return err
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC, // no O_NOFOLLOW: a trailing symlink fails too
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		return unix.Lstat(p, st)
	}
	if err != nil {
		return &os.PathError{Op: "openat2", Path: p, Err: err}
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// openat2File opens name (one path component) beneath dirfd read-only,
// with no symlinks, no magic links, on the same mount, and O_NONBLOCK so
// that a FIFO planted there cannot hang the helper. Before Linux 5.6 it
// falls back to openat with O_NOFOLLOW.
func openat2File(dirfd int, dirName, name string) (*os.File, error) {
	full := dirName + "/" + name
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, &os.PathError{Op: "openat2", Path: full, Err: errors.New("not a single path component")}
	}
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: uint64(flags),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: full, Err: err}
	}
	return os.NewFile(uintptr(fd), full), nil
}
