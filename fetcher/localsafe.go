package fetcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Opening a local source (a rootfs directory or a tarball named by path),
// and, for root, checking the path of an oci:, oci-archive: or
// docker-archive: reference (checkImagePath).
//
// A root caller reads files no other user can read, and what it reads ends
// up in layers that containers (and so their users) can read. Root must
// therefore never be steered, by another user changing the file system
// under it, into reading something the caller did not name. Two rules:
//
//   - The path is resolved one component at a time from "/" with
//     O_PATH|O_NOFOLLOW; a symlink on it is read with readlinkat and
//     followed by hand (at most maxSymlinks). Every directory passed through
//     must not let another user replace the entry taken from it: owned by
//     root, and not group (unless the group is root's) or world writable --
//     except that a sticky directory (like /tmp) is fine for a root-owned
//     entry, which only root may rename or remove there. The source
//     directory itself must be writable by root alone (a sticky 1777 source
//     lets anyone add top-level entries during the walk).
//   - The object reached is opened relative to the directory fd it was found
//     in, with O_NOFOLLOW, and must be the same inode (dev, ino) that was
//     stat'ed while resolving.
//
// Directories inside the source may be writable by other users (every real
// rootfs has /tmp 1777, and home directories owned by the image's users);
// the walk (localdir.go) never follows a path through them, see there.
//
// Callers that are not root read with their own permissions: they get the
// path opened as the kernel resolves it, and only the walk's rules.

// maxSymlinks bounds the symlinks followed while resolving a source path,
// as the kernel's MAXSYMLINKS (40) bounds one path lookup.
const maxSymlinks = 40

// modeString renders a stat mode as "1777 (dtrwxrwxrwx)".
func modeString(m uint32) string {
	fm := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		fm |= fs.ModeDir
	case unix.S_IFLNK:
		fm |= fs.ModeSymlink
	}
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fmt.Sprintf("%04o (%s)", m&0o7777, fm)
}

// writableByOthers reports whether a user other than root can create,
// rename or remove entries in a directory with this stat.
func writableByOthers(st *unix.Stat_t) bool {
	return st.Uid != 0 || (st.Mode&0o020 != 0 && st.Gid != 0) || st.Mode&0o002 != 0
}

// entryReplaceable reports whether a user other than root can replace the
// entry child (its stat) of the directory dir (its stat): the sticky bit
// keeps entries owned by root in place whoever else may write the dir.
func entryReplaceable(dir, child *unix.Stat_t) bool {
	if !writableByOthers(dir) {
		return false
	}
	if dir.Uid != 0 {
		return true // the owner renames anything in its dir
	}
	return dir.Mode&unix.S_ISVTX == 0 || child.Uid != 0
}

func unsafeSource(path string, st *unix.Stat_t, what string) error {
	return fmt.Errorf("%w: %s (mode %s, uid %d, gid %d) %s; as root, taproot reads local sources only through directories that root alone can change",
		ErrUnsafeSource, path, modeString(st.Mode), st.Uid, st.Gid, what)
}

// resolved is the object a source path names: its parent directory (an
// O_PATH fd the caller closes), its name there and its stat.
type resolved struct {
	parent int
	name   string
	path   string // the resolved path, for messages
	st     unix.Stat_t
}

func (r resolved) close() { unix.Close(r.parent) }

// resolveTrusted resolves the absolute path as described at the top of this
// file. Errors name the path and wrap ErrUnsafeSource or the syscall error.
func resolveTrusted(path string) (resolved, error) {
	if !filepath.IsAbs(path) {
		return resolved{}, fmt.Errorf("%s: not an absolute path", path)
	}
	openRoot := func() (int, unix.Stat_t, error) {
		var st unix.Stat_t
		fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, st, fmt.Errorf("open /: %w", err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, st, fmt.Errorf("stat /: %w", err)
		}
		return fd, st, nil
	}
	cur, curSt, err := openRoot()
	if err != nil {
		return resolved{}, err
	}
	curPath := "/"
	rest := splitPath(path)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			// Our parent was checked on the way down (every lookup starts
			// at "/"), and only root can move the dirs between.
			next, err := unix.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				unix.Close(cur)
				return resolved{}, fmt.Errorf("%s/..: %w", curPath, err)
			}
			unix.Close(cur)
			cur, curPath = next, filepath.Dir(curPath)
			if err := unix.Fstat(cur, &curSt); err != nil {
				unix.Close(cur)
				return resolved{}, fmt.Errorf("stat %s: %w", curPath, err)
			}
			continue
		}
		p := filepath.Join(curPath, c)
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(cur)
			return resolved{}, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			unix.Close(cur)
			return resolved{}, &fs.PathError{Op: "stat", Path: p, Err: err}
		}
		if entryReplaceable(&curSt, &st) {
			unix.Close(next)
			unix.Close(cur)
			return resolved{}, unsafeSource(curPath, &curSt, fmt.Sprintf("lets another user replace its entry %q", c))
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			links++
			if links > maxSymlinks {
				unix.Close(next)
				unix.Close(cur)
				return resolved{}, &fs.PathError{Op: "resolve", Path: path, Err: unix.ELOOP}
			}
			target, err := readlinkFd(next, "")
			unix.Close(next)
			if err != nil {
				unix.Close(cur)
				return resolved{}, &fs.PathError{Op: "readlink", Path: p, Err: err}
			}
			if filepath.IsAbs(target) {
				unix.Close(cur)
				if cur, curSt, err = openRoot(); err != nil {
					return resolved{}, err
				}
				curPath = "/"
			}
			rest = append(splitPath(target), rest...)
		case len(rest) == 0:
			unix.Close(next)
			return resolved{parent: cur, name: c, path: p, st: st}, nil
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			unix.Close(cur)
			cur, curSt, curPath = next, st, p
		default:
			unix.Close(next)
			unix.Close(cur)
			return resolved{}, &fs.PathError{Op: "open", Path: p, Err: unix.ENOTDIR}
		}
	}
	// The path ended on a directory reached through ".." (or is "/").
	return resolved{parent: cur, name: ".", path: curPath, st: curSt}, nil
}

// splitPath splits a path into its components, dropping empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// readlinkFd is readlinkat(2) with a growing buffer; with name "" it reads
// the symlink fd itself refers to (an O_PATH|O_NOFOLLOW fd).
func readlinkFd(fd int, name string) (string, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func sameInode(a, b *unix.Stat_t) bool { return a.Dev == b.Dev && a.Ino == b.Ino }

// errChanged: an entry is not the inode it was a moment before.
var errChanged = errors.New("changed while being read")

// openSourceDir opens the rootfs directory path for reading (an O_RDONLY
// directory fd the caller closes). privileged applies the rules at the top
// of this file.
func openSourceDir(path string, privileged bool) (int, error) {
	if !privileged {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
	r, err := resolveTrusted(path)
	if err != nil {
		return -1, err
	}
	defer r.close()
	if r.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return -1, &fs.PathError{Op: "open", Path: r.path, Err: unix.ENOTDIR}
	}
	if writableByOthers(&r.st) {
		return -1, unsafeSource(r.path, &r.st, "lets another user change the source while it is read")
	}
	fd, err := unix.Openat(r.parent, r.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: r.path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || !sameInode(&st, &r.st) {
		unix.Close(fd)
		if err == nil {
			err = errChanged
		}
		return -1, &fs.PathError{Op: "open", Path: r.path, Err: err}
	}
	return fd, nil
}

// openSourceFile opens the tarball path for reading, never blocking (a FIFO
// there is refused, not waited on) and refusing anything but a regular
// file. privileged applies the rules at the top of this file to the path
// (the file itself may belong to anyone: its owner could write any bytes
// into it anyway).
func openSourceFile(path string, privileged bool) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	var fd int
	var err error
	shown := path
	if !privileged {
		if fd, err = unix.Open(path, flags, 0); err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	} else {
		r, err := resolveTrusted(path)
		if err != nil {
			return nil, err
		}
		defer r.close()
		shown = r.path
		if r.st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("%s: not a regular file (mode %s)", r.path, modeString(r.st.Mode))
		}
		if fd, err = unix.Openat(r.parent, r.name, flags|unix.O_NOFOLLOW, 0); err != nil {
			return nil, &fs.PathError{Op: "open", Path: r.path, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || !sameInode(&st, &r.st) {
			unix.Close(fd)
			if err == nil {
				err = errChanged
			}
			return nil, &fs.PathError{Op: "open", Path: r.path, Err: err}
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: shown, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: not a regular file (mode %s)", shown, modeString(st.Mode))
	}
	// O_NONBLOCK means nothing for a regular file; clear it anyway so the
	// reader sees plain blocking reads.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: shown, Err: err}
	}
	return os.NewFile(uintptr(fd), shown), nil
}

// checkImagePath applies the rules at the top of this file, for a root
// caller, to the path of an oci:, oci-archive: or docker-archive:
// reference, which containers/image then opens by path. An archive may be
// anyone's file on a trusted path (its owner could write any bytes into it
// anyway). An OCI layout is read file by file (index.json, blobs/<alg>/<hex>),
// so the layout dir, blobs/ and each blobs/<alg>/ must be writable by root
// alone too: otherwise another user could plant a blob as a symlink to a
// root-only file (another image's layer, say) that root would read and,
// its digest being right, keep. Errors wrap ErrUnsafeSource or name the
// path.
func checkImagePath(ref Reference) error {
	dirs := []string{ref.Path}
	if ref.Kind == OCILayout {
		dirs = append(dirs, filepath.Join(ref.Path, "blobs"))
		ents, err := os.ReadDir(filepath.Join(ref.Path, "blobs"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			dirs = append(dirs, filepath.Join(ref.Path, "blobs", e.Name()))
		}
	}
	for i, p := range dirs {
		r, err := resolveTrusted(p)
		if err != nil {
			if i > 0 && errors.Is(err, fs.ErrNotExist) {
				continue // containers/image will say what is missing
			}
			return err
		}
		r.close()
		if ref.Kind == OCILayout && r.st.Mode&unix.S_IFMT == unix.S_IFDIR && writableByOthers(&r.st) {
			return unsafeSource(r.path, &r.st, "lets another user change the layout while it is read")
		}
	}
	return nil
}
