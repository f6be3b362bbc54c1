package unpacker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DiffTar writes the overlay-form layer in diffDir as a layer tar: a
// whiteout device becomes ".wh.NAME", an opaque directory its entry
// followed by ".wh..wh..opq", files sharing an inode hardlinks to the
// first path written. Applied (ApplyWhiteouts) over lower content it gives
// what mounting diffDir over that content shows.
//
// The store squashes with the layer's original tar, rebuilt by Reassemble:
// that is exactly sequential application. DiffTar is for layers whose tar
// cannot be rebuilt (LayerResult.Unverifiable: a path with content named
// twice, or content whited out by its own layer); it differs only where
// overlay form does (see the package comment): parent directories no entry
// named are 0755 0:0 over a lower directory's metadata.
//
// It walks through directory fds (no PATH_MAX limit) and never follows a
// symlink; memory is one directory's names per level plus the paths of
// multiply-linked files.
func DiffTar(ctx context.Context, diffDir string, w io.Writer) error {
	fd, err := unix.Open(diffDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", diffDir, err)
	}
	d := &diffTarWriter{ctx: ctx, tw: tar.NewWriter(w), links: map[[2]uint64]string{}}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	d.buf = *bp
	if err := d.dir(fd, ""); err != nil {
		return fmt.Errorf("layer tar of %s: %w", diffDir, err)
	}
	return d.tw.Close()
}

type diffTarWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	buf   []byte
	links map[[2]uint64]string // dev, ino -> first path, for nlink > 1
}

// dir writes the entries below the open directory fd (path rel, "" for the
// root) and closes fd.
func (d *diffTarWriter) dir(fd int, rel string) error {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		p := n
		if rel != "" {
			p = rel + "/" + n
		}
		if err := d.entry(fd, n, p); err != nil {
			return err
		}
	}
	return nil
}

func (d *diffTarWriter) entry(dirfd int, name, p string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("fstatat", p, err)
	}
	hdr := &tar.Header{
		Name: p, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Format: tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		cfd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathErr("openat", p, err)
		}
		hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		opaque := addXattrs(hdr, cfd)
		err = d.tw.WriteHeader(hdr)
		if err == nil && opaque {
			err = d.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p + "/" + opaqueMarker, ModTime: hdr.ModTime, Format: tar.FormatPAX})
		}
		if err != nil {
			unix.Close(cfd)
			return err
		}
		return d.dir(cfd, p)
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := d.links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeLink, first, 0
			return d.tw.WriteHeader(hdr)
		}
		if st.Nlink > 1 {
			d.links[key] = p
		}
		cfd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathErr("openat", p, err)
		}
		cf := os.NewFile(uintptr(cfd), p)
		defer cf.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		addXattrs(hdr, cfd)
		if err := d.tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.CopyBuffer(writerOnly{d.tw}, io.LimitReader(cf, st.Size), d.buf)
		if err == nil && n != st.Size {
			err = fmt.Errorf("%s: changed while being read", p)
		}
		return err
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return pathErr("readlinkat", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFCHR:
		if st.Rdev == 0 { // a whiteout
			dir, base := splitPath(p)
			wh := whiteoutPrefix + base
			if dir != "." {
				wh = dir + "/" + wh
			}
			return d.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: wh, ModTime: hdr.ModTime, Format: tar.FormatPAX})
		}
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets: never written by the unpacker
	}
	return d.tw.WriteHeader(hdr)
}

// addXattrs copies the xattrs of fd that the unpacker keeps into hdr and
// says whether fd is an opaque directory (user.overlay.opaque=y, which
// becomes the marker entry instead).
func addXattrs(hdr *tar.Header, fd int) (opaque bool) {
	sz, err := unix.Flistxattr(fd, nil)
	if err != nil || sz == 0 {
		return false
	}
	list := make([]byte, sz)
	if sz, err = unix.Flistxattr(fd, list); err != nil {
		return false
	}
	for _, key := range strings.Split(strings.TrimRight(string(list[:sz]), "\x00"), "\x00") {
		val := make([]byte, maxXattrBytes)
		n, err := unix.Fgetxattr(fd, key, val)
		if err != nil {
			continue
		}
		switch {
		case key == overlayOpaqueXattr:
			opaque = n == 1 && val[0] == 'y'
		case strings.HasPrefix(key, "user.overlay."):
		case strings.HasPrefix(key, "user.") || key == "security.capability":
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattrPrefix+key] = string(val[:n])
		}
	}
	return opaque
}
