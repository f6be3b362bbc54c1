// Command treelist prints every entry below / (or $1), one line each, for
// the acceptance tests to compare a container's view with the image:
//
//	path<TAB>type<TAB>mode<TAB>uid:gid<TAB>sha256 of the content | symlink target | -
//
// It walks through directory fds, one name per syscall, so trees deeper
// than PATH_MAX (4096 bytes) are listed too (busybox find cannot), and
// never follows a symlink. Top-level names given after the root (e.g. proc
// dev sys, the runtime's mounts) are left out. It is built static and put
// into the test images.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	root := "/"
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	skip := map[string]bool{}
	for _, a := range os.Args[min(2, len(os.Args)):] {
		skip[a] = true
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "treelist: open %s: %v\n", root, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	if err := walk(w, fd, "", skip); err != nil {
		fmt.Fprintf(os.Stderr, "treelist: %v\n", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		os.Exit(1)
	}
}

func walk(w io.Writer, dirfd int, rel string, skip map[string]bool) error {
	f := os.NewFile(uintptr(dirfd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("readdir %q: %w", rel, err)
	}
	for _, n := range names {
		p := n
		if rel != "" {
			p = rel + "/" + n
		} else if skip[n] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lstat %q: %w", p, err)
		}
		typ, extra := "", ""
		mode := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			typ = "dir"
		case unix.S_IFREG:
			typ = "file"
			fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open %q: %w", p, err)
			}
			h := sha256.New()
			cf := os.NewFile(uintptr(fd), p)
			_, err = io.Copy(h, cf)
			cf.Close()
			if err != nil {
				return fmt.Errorf("read %q: %w", p, err)
			}
			extra = hex.EncodeToString(h.Sum(nil))
		case unix.S_IFLNK:
			typ, mode = "symlink", 0
			buf := make([]byte, 4096)
			k, err := unix.Readlinkat(dirfd, n, buf)
			if err != nil {
				return fmt.Errorf("readlink %q: %w", p, err)
			}
			extra = string(buf[:k])
		case unix.S_IFIFO:
			typ = "fifo"
		default:
			typ = "type-" + strconv.FormatUint(uint64(st.Mode&unix.S_IFMT), 8)
			extra = strconv.FormatUint(st.Rdev, 10)
		}
		if extra == "" {
			extra = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%04o\t%d:%d\t%s\n", strconv.Quote(p), typ, mode, st.Uid, st.Gid, extra)
		if typ == "dir" {
			cfd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open %q: %w", p, err)
			}
			if err := walk(w, cfd, p, skip); err != nil {
				return err
			}
		}
	}
	return nil
}
