package fetcher

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// openDirTar returns a reader of an uncompressed tar of the directory open
// as dirfd (which it takes over), written on the fly by a goroutine through
// an io.Pipe. Entries are in lexical order, named relative to the directory
// ("etc/", "etc/passwd"); the directory itself is not an entry. Regular
// files, dirs, symlinks, hardlinks (by inode), fifos and devices are written
// with numeric owners, modes, mtimes (to the second) and user.* and
// security.capability xattrs. Sockets are skipped. An error while walking
// fails the reader (so does a regular file or directory the caller cannot
// open for reading, even an empty one: its xattrs are read through that
// fd); Close stops the walk. root names the directory in messages only: it
// is never opened by path.
//
// The walk never resolves a path: each entry is opened relative to its
// parent's fd with O_NOFOLLOW (an O_PATH fd first, so that nothing but a
// directory or a regular file is ever opened for reading, and no device's
// open routine runs), its header is taken from fstat of that fd, a regular
// file is then opened for reading relative to the same parent fd, must be
// the same inode, and is read through that fd; a symlink is read with
// readlinkat on its own O_PATH fd; a directory is walked through the fd
// that was fstat'ed. So a user who can write a directory inside the source
// and swaps an entry for a symlink (to /etc/shadow, say) gets the symlink
// itself into the tar, never what it points to, and an entry swapped
// between the O_PATH open and the read open is an error ("changed while
// being read"). What such a user can still do is put into the tree what
// they could put there anyway: their own files, and what they can move or
// hardlink in (fs.protected_hardlinks=1, the default on current
// distributions, keeps them from hardlinking files they cannot read).
func openDirTar(ctx context.Context, dirfd int, root string, log *slog.Logger) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		err := writeDirTar(ctx, dirfd, root, pw, log)
		pw.CloseWithError(err) // nil closes with io.EOF
	}()
	return pr
}

type inode struct {
	dev, ino uint64
}

// dirWalker writes the tar of one directory tree.
type dirWalker struct {
	ctx     context.Context
	tw      *tar.Writer
	root    string // for messages
	log     *slog.Logger
	links   map[inode]string
	skipped int
	dirent  []byte // getdents buffer, reused
}

func writeDirTar(ctx context.Context, dirfd int, root string, w io.Writer, log *slog.Logger) error {
	defer unix.Close(dirfd)
	dw := &dirWalker{ctx: ctx, tw: tar.NewWriter(w), root: root, log: log, links: map[inode]string{}, dirent: make([]byte, 32<<10)}
	if err := dw.walk(dirfd, ""); err != nil {
		return fmt.Errorf("tar of %s: %w", root, err)
	}
	if dw.skipped > 0 {
		log.Warn("local dir: skipped sockets (tar cannot hold them)", "dir", root, "count", dw.skipped)
	}
	return dw.tw.Close()
}

// readNames returns the names in the directory open as fd, sorted.
func (dw *dirWalker) readNames(fd int, rel string) ([]string, error) {
	var names []string
	for {
		n, err := unix.ReadDirent(fd, dw.dirent)
		if err != nil {
			return nil, fmt.Errorf("%s: read dir: %w", dw.show(rel), err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(dw.dirent[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// show is the host path of a tar name, for messages.
func (dw *dirWalker) show(rel string) string {
	if rel == "" {
		return dw.root
	}
	return filepath.Join(dw.root, rel)
}

// walk writes the entries of the directory open as fd, whose tar name is rel
// ("" for the root).
func (dw *dirWalker) walk(fd int, rel string) error {
	names, err := dw.readNames(fd, rel)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := dw.ctx.Err(); err != nil {
			return err
		}
		tarName := name
		if rel != "" {
			tarName = rel + "/" + name
		}
		if err := dw.entry(fd, name, tarName); err != nil {
			return err
		}
	}
	return nil
}

// entry writes the entry name of the directory open as parent.
func (dw *dirWalker) entry(parent int, name, tarName string) error {
	shown := dw.show(tarName)
	pfd, err := unix.Openat(parent, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: shown, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		unix.Close(pfd)
		return &fs.PathError{Op: "stat", Path: shown, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		defer unix.Close(pfd) // readlinkat below reads through it
	} else {
		unix.Close(pfd) // not held while a directory is walked: fds stay one per level
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		dw.skipped++
		dw.log.Debug("local dir: skipping socket", "path", shown)
		return nil
	case unix.S_IFDIR:
		dfd, err := dw.reopen(parent, name, shown, unix.O_RDONLY|unix.O_DIRECTORY, &st)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := dw.writeHeader(statHeader(tarName+"/", &st), dfd, shown); err != nil {
			return err
		}
		return dw.walk(dfd, tarName)
	case unix.S_IFREG:
		// O_NONBLOCK|O_NOCTTY: should the entry have been swapped for a
		// FIFO or a device since the fstat, the open returns at once and
		// the inode check refuses it. (A device node's open would still
		// run; making one takes root, and fs.protected_hardlinks keeps
		// users from hardlinking root's into the tree.)
		rfd, err := dw.reopen(parent, name, shown, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, &st)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(rfd), shown)
		defer f.Close()
		hdr := statHeader(tarName, &st)
		if st.Nlink > 1 {
			key := inode{dev: st.Dev, ino: st.Ino}
			if first, seen := dw.links[key]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				dw.links[key] = tarName
			}
		}
		if err := dw.writeHeader(hdr, rfd, shown); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			return copyFile(dw.tw, f, shown, hdr.Size)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkFd(pfd, "")
		if err != nil {
			return &fs.PathError{Op: "readlink", Path: shown, Err: err}
		}
		hdr := statHeader(tarName, &st)
		hdr.Linkname = target
		// No xattrs: user.* ones cannot be set on symlinks, and the O_PATH
		// fd cannot be asked for any.
		return dw.writeHeader(hdr, -1, shown)
	default: // fifos and devices: never opened, user.* xattrs cannot be set on them
		return dw.writeHeader(statHeader(tarName, &st), -1, shown)
	}
}

// reopen opens name in parent for reading with O_NOFOLLOW and checks that it
// is the inode st describes; st is updated to the new fstat (size and
// mtime are the ones of the fd that is read).
func (dw *dirWalker) reopen(parent int, name, shown string, flags int, st *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(parent, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			err = fmt.Errorf("%w (%w)", errChanged, err)
		}
		return -1, &fs.PathError{Op: "open", Path: shown, Err: err}
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "stat", Path: shown, Err: err}
	}
	if !sameInode(&now, st) || now.Mode&unix.S_IFMT != st.Mode&unix.S_IFMT {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "open", Path: shown, Err: errChanged}
	}
	*st = now
	return fd, nil
}

// statHeader is the tar header of an entry from its fstat: numeric owners
// only, no atime/ctime, whole-second mtime.
func statHeader(name string, st *unix.Stat_t) *tar.Header {
	h := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	return h
}

// writeHeader adds the xattrs of fd (-1: none) and writes hdr.
func (dw *dirWalker) writeHeader(hdr *tar.Header, fd int, shown string) error {
	if fd >= 0 {
		xattrs, err := readXattrs(fd, shown)
		if err != nil {
			return err
		}
		for k, v := range xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if err := dw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	return nil
}

// copyFile copies exactly size bytes of f; a file that shrank while being
// read is an error rather than a corrupt tar (one that grew is cut at size).
func copyFile(w io.Writer, f *os.File, shown string, size int64) error {
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	if n != size {
		return fmt.Errorf("%s: file shrank while being read (%d of %d bytes)", shown, n, size)
	}
	return nil
}

// readXattrs returns the user.* and security.capability xattrs of the file
// open as fd. Filesystems without xattr support give none.
func readXattrs(fd int, shown string) (map[string]string, error) {
	buf := make([]byte, 4096)
	var n int
	var err error
	for {
		n, err = unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: list xattrs: %w", shown, err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || !(strings.HasPrefix(name, "user.") || name == "security.capability") {
			continue
		}
		val, err := getXattr(fd, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, fmt.Errorf("%s: read xattr %s: %w", shown, name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val)
	}
	return out, nil
}

func getXattr(fd int, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
