package acceptance

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// createImage pushes the busybox base plus layers and creates it in a new store.
func createImage(t *testing.T, name string, layers ...ib.Layer) (string, ib.Built, func(string) string) {
	t.Helper()
	ref, b := pushImage(t, name, busyboxImage(layers...))
	store := newStore(t)
	frag := create(t, store, ref, name)
	return store, b, func(script string) string { return sh(t, store, frag, script) }
}

func TestWhiteouts(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "whiteouts",
		layer(ib.Dir("a"), ib.File("a/gone", "1"), ib.File("a/kept", "2"), ib.Dir("b"), ib.File("b/f", "3"), ib.File("top", "4")),
		layer(ib.Dir("a"), ib.Whiteout("a/gone"), ib.Whiteout("b"), ib.Whiteout("top")),
	)
	got := run(`for p in /a/gone /a/kept /b /b/f /top; do if test -e $p; then echo "$p yes"; else echo "$p no"; fi; done; ls -a /a`)
	want := "/a/gone no\n/a/kept yes\n/b no\n/b/f no\n/top no\n.\n..\nkept\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOpaqueDir(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "opaque",
		layer(ib.Dir("d"), ib.File("d/old1", "1"), ib.Dir("d/sub"), ib.File("d/sub/old2", "2")),
		layer(ib.Dir("d"), ib.Opaque("d"), ib.File("d/new", "new\n")),
	)
	if got := run("ls -a /d; cat /d/new"); got != ".\n..\nnew\nnew\n" {
		t.Errorf("ls -a /d; cat /d/new = %q, want only new", got)
	}
}

func TestFileReplacedByDirAndBack(t *testing.T) {
	need(t)
	t.Parallel()
	l1 := layer(ib.File("x", "file-1\n"))
	l2 := layer(ib.Whiteout("x"), ib.Dir("x"), ib.File("x/inner", "inner\n"))
	l3 := layer(ib.Whiteout("x"), ib.File("x", "file-3\n"))
	_, _, run2 := createImage(t, "replace-to-dir", l1, l2)
	if got := run2("test -d /x && cat /x/inner"); got != "inner\n" {
		t.Errorf("after file→dir: %q, want x a dir holding inner", got)
	}
	_, _, run3 := createImage(t, "replace-and-back", l1, l2, l3)
	if got := run3("test -f /x && cat /x; test -e /x/inner || echo no-inner"); got != "file-3\nno-inner\n" {
		t.Errorf("after dir→file: %q, want x a file again", got)
	}
}

func TestHardlinks(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "hardlinks",
		layer(ib.Dir("h"), ib.File("h/a", "shared\n"), ib.Hardlink("h/b", "h/a"), ib.Hardlink("h/c", "h/a"),
			ib.File("h/z", "z\n"), ib.Hardlink("h/y", "h/z")),
		layer(ib.Dir("h"), ib.Whiteout("h/a")),
	)
	out := lines(run("test -e /h/a && echo a-exists; stat -c %i /h/b; stat -c %i /h/c; stat -c %i /h/z; stat -c %i /h/y; cat /h/b /h/c"))
	if len(out) != 6 {
		t.Fatalf("got %q", out)
	}
	if out[0] != out[1] {
		t.Errorf("b and c (hardlinks of the deleted a) have inodes %s and %s, want equal", out[0], out[1])
	}
	if out[2] != out[3] {
		t.Errorf("z and y have inodes %s and %s, want equal", out[2], out[3])
	}
	if out[0] == out[2] {
		t.Errorf("b and z share inode %s, want distinct", out[0])
	}
	if out[4] != "shared" || out[5] != "shared" {
		t.Errorf("content of b, c = %q, %q", out[4], out[5])
	}
}

func TestSymlinks(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "symlinks",
		layer(ib.Dir("etc"), ib.File("etc/target", "T\n"), ib.Dir("s"),
			ib.Symlink("s/rel", "../etc/target"), ib.Symlink("s/abs", "/etc/target"),
			ib.Symlink("s/dangling", "/does/not/exist"), ib.Symlink("s/dir", "/etc")),
	)
	got := run(`for l in /s/rel /s/abs /s/dangling; do readlink $l; done; cat /s/rel /s/abs /s/dir/target; test -L /s/dangling && ! test -e /s/dangling && echo dangling-ok`)
	want := "../etc/target\n/etc/target\n/does/not/exist\nT\nT\nT\ndangling-ok\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFifo(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "fifo", layer(ib.Dir("p"), ib.Fifo("p/fifo").WithMode(0o640)))
	if got := run("test -p /p/fifo && stat -c %a /p/fifo"); got != "640\n" {
		t.Errorf("got %q, want a fifo with mode 640", got)
	}
}

func TestModes(t *testing.T) {
	need(t)
	t.Parallel()
	_, _, run := createImage(t, "modes", layer(
		ib.Dir("m"),
		ib.File("m/setuid", "#!/bin/sh\n").WithMode(0o4755),
		ib.File("m/setgid", "").WithMode(0o2711),
		ib.Dir("m/sticky").WithMode(0o1777),
		ib.Dir("m/private").WithMode(0o700),
		ib.File("m/ro", "").WithMode(0o400),
	))
	got := run("stat -c '%n %a' /m/setuid /m/setgid /m/sticky /m/private /m/ro")
	want := "/m/setuid 4755\n/m/setgid 2711\n/m/sticky 1777\n/m/private 700\n/m/ro 400\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOwners(t *testing.T) {
	need(t)
	t.Parallel()
	store, b, run := createImage(t, "owners", layer(
		ib.Dir("o"),
		ib.File("o/u1000", "").WithOwner(1000, 1000),
		ib.File("o/u65000", "").WithOwner(65000, 65001),
		ib.Dir("o/d1000").WithOwner(1000, 1000),
		ib.Symlink("o/l1000", "u1000").WithOwner(1000, 1000),
		ib.File("o/root", ""),
	))
	got := run("stat -c '%n %u:%g' /o/u1000 /o/u65000 /o/d1000 /o/root; ls -ln /o/l1000 | awk '{print $3\":\"$4}'")
	want := "/o/u1000 1000:1000\n/o/u65000 65000:65001\n/o/d1000 1000:1000\n/o/root 0:0\n1000:1000\n"
	if got != want {
		t.Errorf("inside: got %q, want %q", got, want)
	}
	// On the host the layer dir holds the mapped IDs: container 0 → the
	// user, container N ≥ 1 → subuid start + N - 1.
	dir := layerDir(store, b.Layers[1].DiffID)
	for _, c := range []struct {
		name     string
		uid, gid uint32
	}{
		{"o/u1000", h.subuid + 999, h.subgid + 999},
		{"o/u65000", h.subuid + 64999, h.subgid + 65000},
		{"o/root", uint32(h.uid), uint32(h.gid)},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, c.name), &st); err != nil {
			t.Errorf("host side: %v", err)
			continue
		}
		if st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("host side %s is %d:%d, want %d:%d", c.name, st.Uid, st.Gid, c.uid, c.gid)
		}
	}
}

// Busybox has no getfattr, so user xattrs are checked on the host, in the
// unpacked layer dir; inside, only that the files are there.
func TestUserXattrs(t *testing.T) {
	need(t)
	t.Parallel()
	store, b, run := createImage(t, "xattrs", layer(
		ib.Dir("x").WithXattr("user.dir", "on-dir"),
		ib.File("x/f", "f\n").WithXattr("user.foo", "bar").WithXattr("user.empty", ""),
	))
	if got := run("cat /x/f"); got != "f\n" {
		t.Errorf("cat /x/f = %q", got)
	}
	dir := layerDir(store, b.Layers[1].DiffID)
	for _, c := range []struct{ path, name, value string }{
		{"x/f", "user.foo", "bar"}, {"x/f", "user.empty", ""}, {"x", "user.dir", "on-dir"},
	} {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(dir, c.path), c.name, buf)
		if err != nil {
			t.Errorf("host side getxattr %s %s: %v", c.path, c.name, err)
			continue
		}
		if string(buf[:n]) != c.value {
			t.Errorf("host side %s %s = %q, want %q", c.path, c.name, buf[:n], c.value)
		}
	}
}

func TestCompressions(t *testing.T) {
	need(t)
	t.Parallel()
	var layers []ib.Layer
	for _, c := range []ib.Compression{ib.Gzip, ib.Zstd, ib.Uncompressed} {
		layers = append(layers, ib.Layer{Compression: c, Entries: []ib.Entry{
			ib.Dir("c"), ib.File("c/"+c.String(), strings.Repeat(c.String(), 1000)+"\n"),
		}})
	}
	_, b, run := createImage(t, "compressions", layers...)
	for i, c := range []string{"tar+gzip", "tar+zstd", "tar"} {
		if mt := b.Layers[i+1].MediaType; !strings.HasSuffix(mt, c) {
			t.Fatalf("layer %d media type %s, want …%s", i+1, mt, c)
		}
	}
	got := run("for f in gzip zstd none; do head -c 8 /c/$f; echo; wc -c < /c/$f; done")
	want := fmt.Sprintf("gzipgzip\n%d\nzstdzstd\n%d\nnonenone\n%d\n", 4001, 4001, 4001)
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManyLayers(t *testing.T) {
	need(t)
	t.Parallel()
	const n = 150
	var layers []ib.Layer
	for i := 1; i <= n; i++ {
		layers = append(layers, layer(ib.Dir("many"), ib.File(fmt.Sprintf("many/%03d", i), fmt.Sprintf("%d\n", i)), ib.File("top", fmt.Sprintf("%d\n", i))))
	}
	_, b, run := createImage(t, "many-layers", layers...)
	if len(b.Layers) != n+1 {
		t.Fatalf("built %d layers", len(b.Layers))
	}
	got := run("ls /many | wc -l; cat /many/001 /many/150 /top")
	if want := fmt.Sprintf("%d\n1\n150\n150\n", n); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
