package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/taproot-dev/taproot/overlayxfs"
)

// Who may reach a store.
//
// Layers keep setuid/setgid bits and image-chosen owners, and in a root
// store (maximus mapping) container IDs 1..N are the very host IDs of real
// accounts. A store another local user could traverse would let that user
// run <store>/layers/<key>/diff/bin/<setuid file> from the host and act as
// someone else (moby's CVE-2021-41091). So nothing under a store is
// reachable by anyone but:
//
//   - the store owner (the caller: root for root stores), who owns every
//     directory and every record, and
//   - container root's host ID, which must traverse to the overlay's lower,
//     upper and work dirs because the runtime mounts the overlay inside the
//     container's user namespace as container root, and whose worker writes
//     layer contents.
//
// When container root is the owner (every rootless store) all store dirs
// are 0700. When it is another ID (root stores) the dirs on the mounter's
// and the worker's paths are 0710 with container root's host gid as their
// group: search, never list, read or write; the rest (meta/, locks/) stay
// 0700. Records (layer.json, image.json, tar-split metadata, store.json)
// are written by the owner into owner-owned dirs, so container root's host
// ID (a container that broke out) can change layer contents and its own
// upper dir, never a record or a link.

// access is who owns a store and who mounts its overlays.
type access struct {
	ownerUID, ownerGID uint32
	rootUID, rootGID   uint32 // container root's host IDs
}

func (s *Store) access() (access, error) {
	uid, gid, err := s.containerRoot()
	if err != nil {
		return access{}, err
	}
	return access{ownerUID: s.meta.OwnerUID, ownerGID: s.meta.OwnerGID, rootUID: uid, rootGID: gid}, nil
}

// shared says whether container root is someone other than the owner, so
// that traversed dirs need its group.
func (a access) shared() bool { return a.rootUID != a.ownerUID }

// want is the mode and group a store dir must have.
func (a access) want(traverse bool) (fs.FileMode, uint32) {
	if traverse && a.shared() {
		return 0o710, a.rootGID
	}
	return 0o700, a.ownerGID
}

// mkdir creates dir (or takes the existing one) with the owner, group and
// mode its role asks for. Chmod after mkdir: the umask must not decide.
func (a access) mkdir(dir string, traverse bool) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return a.fix(dir, traverse)
}

// fix gives an existing dir the owner, group and mode its role asks for.
func (a access) fix(dir string, traverse bool) error {
	mode, gid := a.want(traverse)
	if err := os.Lchown(dir, int(a.ownerUID), int(gid)); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// tight says whether fi has the owner and group its role asks for and no
// permission beyond its mode (fewer is the admin's choice: a store made
// read-only stays read-only).
func (a access) tight(fi fs.FileInfo, traverse bool) bool {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat || !fi.IsDir() {
		return false
	}
	_, gid := a.want(traverse)
	return st.Uid == a.ownerUID && st.Gid == gid && fi.Mode().Perm() == a.tightMode(fi.Mode().Perm(), traverse) && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) == 0
}

// tightMode is perm without what the role does not grant, plus the
// group search the mounter needs on a shared store's traversed dirs.
func (a access) tightMode(perm fs.FileMode, traverse bool) fs.FileMode {
	mode, _ := a.want(traverse)
	perm &= mode
	if traverse && a.shared() {
		perm |= 0o010
	}
	return perm
}

// tighten takes from an existing dir every permission beyond its role's
// and gives it the owner and group of that role.
func (a access) tighten(dir string, traverse bool) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	_, gid := a.want(traverse)
	if err := os.Lchown(dir, int(a.ownerUID), int(gid)); err != nil {
		return err
	}
	return os.Chmod(dir, a.tightMode(fi.Mode().Perm(), traverse))
}

// ErrStoreUnsafe reports a store path that someone other than its owner
// could have made or could change.
var ErrStoreUnsafe = errors.New("store is not safe to use")

// checkPath refuses store paths the overlay options cannot carry: the
// runtime splits mount options at ',' and lowerdir at ':', and '\' escapes
// both.
func checkPath(root string) error {
	if i := strings.IndexAny(root, ",:\\\n"); i >= 0 {
		return fmt.Errorf("store path %q contains %q, which overlay mount options cannot carry: choose another path: %w", root, root[i], overlayxfs.ErrMountPath)
	}
	return nil
}

// checkAncestors refuses a store whose parent dirs another user could
// rename it out of or swap: each must be owned by root or the caller and,
// if others may write it, be sticky (as /tmp). The parents need no
// permission for other users: the store itself keeps them out.
func checkAncestors(root string, caller uint32) error {
	for dir := filepath.Dir(root); ; dir = filepath.Dir(dir) {
		fi, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("store %s: %w", root, err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st == nil {
			return fmt.Errorf("store %s: %s: no owner", root, dir)
		}
		if st.Uid != 0 && st.Uid != caller {
			return fmt.Errorf("store %s: %w: its parent %s is owned by uid %d (want root or %d), who could swap the store", root, ErrStoreUnsafe, dir, st.Uid, caller)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("store %s: %w: its parent %s has mode %04o: others could rename the store away (chmod go-w %s)", root, ErrStoreUnsafe, dir, fi.Mode().Perm(), dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// checkRoot refuses a store dir that is not the caller's or that others
// can write: someone else may have made it first to plant content.
func checkRoot(root string, fi fs.FileInfo, caller uint32) error {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st == nil {
		return fmt.Errorf("store %s: %w: not a directory", root, ErrStoreUnsafe)
	}
	if st.Uid != caller {
		return fmt.Errorf("store %s: %w: owned by uid %d, not by the caller (uid %d); run taproot as its owner or choose another --store", root, ErrStoreUnsafe, st.Uid, caller)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("store %s: %w: mode %04o lets others write it (someone else may have created it): remove it or choose another --store", root, ErrStoreUnsafe, fi.Mode().Perm())
	}
	return nil
}

// ensureLayout creates the fixed dirs, and when any of them does not have
// the owner and mode it should (a store made by an earlier taproot, whose
// dirs were 0755), tightens the whole store once: the fixed dirs last, so a
// killed tightening is redone by the next open. With adopt (root running
// init-store for another owner), dirs owned by root are handed over too.
func (s *Store) ensureLayout(adopt bool) error {
	a, err := s.access()
	if err != nil {
		return fmt.Errorf("store %s: %w", s.root, err)
	}
	tight := true
	for _, d := range layoutDirs {
		p := s.path(d.name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if err := a.mkdir(p, d.traverse); err != nil {
				return fmt.Errorf("create store layout: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("store %s: %w", s.root, err)
		}
		if st, _ := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || st == nil || (st.Uid != a.ownerUID && !(adopt && st.Uid == 0)) {
			return fmt.Errorf("store %s: %w: %s is not a directory owned by the store's owner (uid %d)", s.root, ErrStoreUnsafe, p, a.ownerUID)
		}
		if !a.tight(fi, d.traverse) {
			tight = false
		}
	}
	if tight {
		return nil
	}
	s.log.Info("tightening the permissions of a store made by an earlier taproot: only its owner and container root may reach it", "store", s.root)
	if err := s.tighten(a); err != nil {
		return fmt.Errorf("store %s: tighten permissions: %w", s.root, err)
	}
	return nil
}

// tighten gives every dir and record under the store the owner and mode
// it should have. Contents of layers and upper dirs are container data
// and are left as they are: the dirs above them keep others out.
func (s *Store) tighten(a access) error {
	for _, parent := range []string{layersDirName, imagesDirName, tmpDirName} {
		entries, err := os.ReadDir(s.path(parent))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			dir := s.path(parent, e.Name())
			if err := a.tighten(dir, true); err != nil {
				return err
			}
			if parent == tmpDirName {
				continue
			}
			for _, rec := range recordFiles {
				p := filepath.Join(dir, rec)
				if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
					if err := os.Lchown(p, int(a.ownerUID), int(a.ownerGID)); err != nil {
						return err
					}
					if err := os.Chmod(p, fi.Mode().Perm()&0o644); err != nil {
						return err
					}
				}
			}
		}
	}
	for i := len(layoutDirs) - 1; i >= 0; i-- {
		d := layoutDirs[i]
		if err := a.tighten(s.path(d.name), d.traverse); err != nil {
			return err
		}
	}
	return nil
}
