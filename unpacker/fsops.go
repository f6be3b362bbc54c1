package unpacker

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// resolveFlags confine every lookup to the directory it starts from and
// refuse every symlink on the way (see the package comment for why even
// symlinks that stay inside the root are refused).
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// pathErr builds the *os.PathError that callers expect from a syscall.
func pathErr(op, path string, err error) error {
	return &os.PathError{Op: op, Path: path, Err: err}
}

// openBeneath opens rel beneath dirfd with openat2, never following a
// symlink: RESOLVE_NO_SYMLINKS makes any symlink on the way, the last
// component included, fail with ELOOP (O_NOFOLLOW is left out on purpose:
// with O_PATH it would open the symlink itself). It returns the raw errno so
// callers can tell ENOENT from an unsafe path.
func openBeneath(dirfd int, rel string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	}
	for range 16 {
		fd, err := unix.Openat2(dirfd, rel, &how)
		// EAGAIN: the kernel saw a concurrent rename and asks for a retry.
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// resolveErr turns an openat2 errno into the error we report: a symlink on
// the way (ELOOP) or an escape (EXDEV) is ErrUnsafePath.
func resolveErr(rel string, err error) error {
	switch err {
	case unix.ELOOP, unix.EXDEV:
		return fmt.Errorf("%w: %q goes through a symlink or leaves the root: %w",
			ErrUnsafePath, rel, pathErr("openat2", rel, err))
	case unix.ENOSYS:
		return fmt.Errorf("openat2 is not available (Linux >= 5.6 is required): %w", pathErr("openat2", rel, err))
	}
	return pathErr("openat2", rel, err)
}

// removeAt removes name (a single path element) from the directory dirfd,
// recursively if it is a directory, never following symlinks. A missing
// name is not an error. Memory is bounded: directories are read in batches.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	// Linux reports unlink of a directory as EISDIR.
	if err != unix.EISDIR {
		return pathErr("unlinkat", name, err)
	}
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathErr("openat", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		names, rerr := f.Readdirnames(1024)
		if rerr != nil && rerr != io.EOF {
			f.Close()
			return rerr
		}
		for _, n := range names {
			if err := removeAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		f.Close()
		if len(names) == 0 {
			break
		}
		// Reopen rather than keep reading: the directory changed under the
		// open stream.
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return pathErr("unlinkat", name, err)
	}
	return nil
}

// clearName makes room for a new non-directory entry named base in dirfd:
// an existing non-directory is unlinked, an existing directory tree removed.
func clearName(dirfd int, base string) error {
	return removeAt(dirfd, base)
}

// isWhiteoutAt says whether name in dirfd is a 0:0 character device, which
// overlay reads as a whiteout.
func isWhiteoutAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// holdsContent says whether name in dirfd is, or is a directory holding, a
// regular file with content: removing it makes the layer's tar impossible
// to rebuild from disk.
func holdsContent(dirfd int, name string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, pathErr("fstatat", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return st.Size > 0, nil
	case unix.S_IFDIR:
	default:
		return false, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, pathErr("openat", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if has, err := holdsContent(fd, n); has || err != nil {
			return has, err
		}
	}
	return false, nil
}
