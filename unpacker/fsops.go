package unpacker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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

// openDir opens the directory rel beneath rootfd as an O_PATH fd without
// creating anything. The raw errno is returned for ENOENT/ENOTDIR so callers
// can decide that "missing" is fine.
func openDir(rootfd int, rel string) (int, error) {
	return openBeneath(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY)
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

// ensureDir returns an O_PATH fd of the directory rel beneath rootfd,
// creating missing directories (mode 0755, owner 0:0) on the way. created is
// called with the relative path of every directory it makes.
func ensureDir(rootfd int, rel string, created func(string)) (int, error) {
	fd, err := openDir(rootfd, rel)
	if err == nil {
		return fd, nil
	}
	if err != unix.ENOENT {
		return -1, resolveErr(rel, err)
	}
	cur, err := openDir(rootfd, ".")
	if err != nil {
		return -1, resolveErr(".", err)
	}
	prefix := ""
	for _, comp := range strings.Split(rel, "/") {
		if prefix == "" {
			prefix = comp
		} else {
			prefix += "/" + comp
		}
		err := unix.Mkdirat(cur, comp, 0o700)
		switch {
		case err == nil:
			// Set owner and mode explicitly: the process umask and a setgid
			// parent must not decide them.
			if err := unix.Fchownat(cur, comp, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				unix.Close(cur)
				return -1, pathErr("fchownat", prefix, err)
			}
			if err := unix.Fchmodat(cur, comp, 0o755, 0); err != nil {
				unix.Close(cur)
				return -1, pathErr("fchmodat", prefix, err)
			}
			if created != nil {
				created(prefix)
			}
		case errors.Is(err, unix.EEXIST):
		default:
			unix.Close(cur)
			return -1, pathErr("mkdirat", prefix, err)
		}
		next, err := openDir(cur, comp)
		unix.Close(cur)
		if err != nil {
			return -1, resolveErr(prefix, err)
		}
		cur = next
	}
	return cur, nil
}
