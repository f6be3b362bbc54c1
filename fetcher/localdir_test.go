package fetcher

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLocalDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	mtime := time.Unix(1600000000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc", "empty"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o700))
	must(os.WriteFile(filepath.Join(root, "etc", "hello"), []byte("hello\n"), 0o640))
	must(os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "tool2")))
	must(os.Symlink("../etc/hello", filepath.Join(root, "bin", "link")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(unix.Lsetxattr(filepath.Join(root, "etc", "hello"), "user.greeting", []byte("hi"), 0))
	asRoot := os.Geteuid() == 0
	if asRoot {
		must(unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(os.Lchown(filepath.Join(root, "etc", "hello"), 1234, 5678))
		must(os.Lchown(filepath.Join(root, "bin", "link"), 99, 98))
	}
	// After chown, which clears setuid.
	must(os.Chmod(filepath.Join(root, "etc", "hello"), 0o640|os.ModeSetuid))
	// A socket: tar cannot hold it, so it is skipped.
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	must(err)
	defer l.Close()
	must(os.Chtimes(filepath.Join(root, "etc", "hello"), mtime, mtime))

	f := testFetcher(t, Options{})
	src := mustOpen(t, f, root)
	img := src.Image()
	if img.Ref.Kind != LocalDir || len(img.Layers) != 1 || img.Layers[0].Size != -1 || img.Layers[0].BlobDigest != "" {
		t.Fatalf("image %+v", img)
	}
	rc, err := src.OpenLayer(context.Background(), 0)
	must(err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]*tar.Header{}
	var order []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[hdr.Name] = hdr
		order = append(order, hdr.Name)
		if hdr.Name == "etc/hello" {
			b, _ := io.ReadAll(tr)
			if string(b) != "hello\n" {
				t.Errorf("etc/hello content %q", b)
			}
		}
	}
	t.Logf("entries: %v", order)
	want := []string{"bin/", "bin/link", "bin/tool", "bin/tool2", "etc/", "etc/empty/", "etc/hello", "fifo"}
	if asRoot {
		want = []string{"bin/", "bin/link", "bin/tool", "bin/tool2", "etc/", "etc/empty/", "etc/hello", "fifo", "null"}
	}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("entries %v, want %v", order, want)
	}
	check := func(name string, ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %s: %+v", name, what, got[name])
		}
	}
	if h := got["bin/"]; h != nil {
		check("bin/", h.Typeflag == tar.TypeDir && h.Mode&0o7777 == 0o700, "dir 0700")
	}
	if h := got["etc/hello"]; h != nil {
		check("etc/hello", h.Typeflag == tar.TypeReg && h.Mode&0o7777 == 0o4640 && h.Size == 6, "setuid 0640 file of 6 bytes")
		check("etc/hello", h.ModTime.Equal(mtime), "mtime")
		check("etc/hello", h.PAXRecords["SCHILY.xattr.user.greeting"] == "hi", "user xattr")
		check("etc/hello", h.Uname == "" && h.Gname == "", "no user names")
		if asRoot {
			check("etc/hello", h.Uid == 1234 && h.Gid == 5678, "owner 1234:5678")
		}
	}
	if h := got["bin/tool"]; h != nil {
		check("bin/tool", h.Typeflag == tar.TypeReg && h.Size == 10, "regular file")
	}
	if h := got["bin/tool2"]; h != nil {
		check("bin/tool2", h.Typeflag == tar.TypeLink && h.Linkname == "bin/tool" && h.Size == 0, "hardlink to bin/tool")
	}
	if h := got["bin/link"]; h != nil {
		check("bin/link", h.Typeflag == tar.TypeSymlink && h.Linkname == "../etc/hello", "symlink")
		if asRoot {
			check("bin/link", h.Uid == 99 && h.Gid == 98, "symlink owner (lchown)")
		}
	}
	if h := got["fifo"]; h != nil {
		check("fifo", h.Typeflag == tar.TypeFifo && h.Mode&0o777 == 0o600, "fifo")
	}
	if h := got["null"]; asRoot && h != nil {
		check("null", h.Typeflag == tar.TypeChar && h.Devmajor == 1 && h.Devminor == 3, "char device 1:3")
	}
}

func TestLocalDirCloseEarlyAndErrors(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 50; i++ {
		if err := os.WriteFile(filepath.Join(root, strings.Repeat("x", i+1)), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := testFetcher(t, Options{})
	src := mustOpen(t, f, root)
	rc, err := src.OpenLayer(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil { // must not hang, the writer stops
		t.Fatal(err)
	}

	// A cancelled context fails the stream instead of ending it cleanly.
	ctx, cancel := context.WithCancel(context.Background())
	rc, err = src.OpenLayer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v, want context.Canceled", err)
	}

	// The directory vanishing between Open and OpenLayer is an error.
	gone := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(gone, 0o755)
	src = mustOpen(t, f, gone)
	os.Remove(gone)
	rc, err = src.OpenLayer(context.Background(), 0)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err == nil {
		t.Errorf("tar of a removed dir succeeded")
	}
}
