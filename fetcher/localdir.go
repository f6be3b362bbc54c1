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
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// openDirTar returns a reader of an uncompressed tar of the directory root,
// written on the fly by a goroutine through an io.Pipe. Entries are in
// lexical order, named relative to root ("etc/", "etc/passwd"); root itself
// is not an entry. Regular files, dirs, symlinks, hardlinks (by inode),
// fifos and devices are written with numeric owners, modes, mtimes (to the
// second) and user.* and security.capability xattrs. Sockets are skipped.
// An error while walking fails the reader; Close stops the walk.
func openDirTar(ctx context.Context, root string, log *slog.Logger) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		err := writeDirTar(ctx, root, pw, log)
		pw.CloseWithError(err) // nil closes with io.EOF
	}()
	return pr
}

type inode struct {
	dev, ino uint64
}

func writeDirTar(ctx context.Context, root string, w io.Writer, log *slog.Logger) error {
	tw := tar.NewWriter(w)
	links := map[inode]string{}
	skipped := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			skipped++
			log.Debug("local dir: skipping socket", "path", path)
			return nil
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, err = os.Readlink(path)
			if err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Numeric owners only; no atime/ctime; whole-second mtimes.
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				key := inode{dev: uint64(st.Dev), ino: st.Ino}
				if first, seen := links[key]; seen {
					hdr.Typeflag = tar.TypeLink
					hdr.Linkname = first
					hdr.Size = 0
				} else {
					links[key] = name
				}
			}
		}
		xattrs, err := readXattrs(path)
		if err != nil {
			return err
		}
		for k, v := range xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if err := copyFile(tw, path, hdr.Size); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar of %s: %w", root, err)
	}
	if skipped > 0 {
		log.Warn("local dir: skipped sockets (tar cannot hold them)", "dir", root, "count", skipped)
	}
	return tw.Close()
}

// copyFile copies exactly size bytes of path; a file that changed size
// while being read is an error rather than a corrupt tar.
func copyFile(w io.Writer, path string, size int64) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	n, err := io.Copy(w, io.LimitReader(fh, size))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if n != size {
		return fmt.Errorf("%s: file shrank while being read (%d of %d bytes)", path, n, size)
	}
	return nil
}

// readXattrs returns the user.* and security.capability xattrs of path
// (not following symlinks). Filesystems without xattr support give none.
func readXattrs(path string) (map[string]string, error) {
	buf := make([]byte, 4096)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
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
		return nil, fmt.Errorf("%s: list xattrs: %w", path, err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || !(strings.HasPrefix(name, "user.") || name == "security.capability") {
			continue
		}
		val, err := getXattr(path, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, fmt.Errorf("%s: read xattr %s: %w", path, name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val)
	}
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
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
