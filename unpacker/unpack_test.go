package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestEntryTypes(t *testing.T) {
	root, _ := newRoot(t)
	data := mkTar(t,
		dirE("d/"),
		fileE("d/f", "hello"),
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/owned", Uid: 1234, Gid: 5678, Mode: 0o640}, body: ""},
		symE("d/abs", "/etc/passwd"),
		symE("d/dangling", "../nowhere/at/all"),
		linkE("d/hl", "d/f"),
		te{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "d/fifo", Mode: 0o600}},
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "d/null", Devmajor: 1, Devminor: 3, Mode: 0o666}},
		te{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "d/blk", Devmajor: 7, Devminor: 200, Mode: 0o660}},
		fileE("implicit/parents/f", "x"),
		te{hdr: tar.Header{Typeflag: 'V', Name: "volume-label"}},
	)
	res := mustUnpack(t, root, data, Options{})
	if res.Entries != 11 || res.Bytes != 6 {
		t.Errorf("Entries=%d Bytes=%d, want 11, 6", res.Entries, res.Bytes)
	}
	if got := readFile(t, filepath.Join(root, "d/f")); got != "hello" {
		t.Errorf("d/f = %q", got)
	}
	st := lstat(t, filepath.Join(root, "d/owned"))
	if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o640 {
		t.Errorf("d/owned: uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	for link, want := range map[string]string{"d/abs": "/etc/passwd", "d/dangling": "../nowhere/at/all"} {
		got, err := os.Readlink(filepath.Join(root, link))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	if a, b := lstat(t, filepath.Join(root, "d/f")), lstat(t, filepath.Join(root, "d/hl")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if st := lstat(t, filepath.Join(root, "d/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o600 {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "d/null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("char dev mode %o rdev %x", st.Mode, st.Rdev)
	}
	if st := lstat(t, filepath.Join(root, "d/blk")); st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(7, 200) {
		t.Errorf("block dev mode %o rdev %x", st.Mode, st.Rdev)
	}
	for _, d := range []string{"implicit", "implicit/parents"} {
		st := lstat(t, filepath.Join(root, d))
		if st.Mode&0o7777 != 0o755 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("implicit parent %s: mode %o owner %d:%d", d, st.Mode&0o7777, st.Uid, st.Gid)
		}
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "1 entries of unsupported tar types") {
		t.Errorf("warnings %q", res.Warnings)
	}
}

func TestSkipDevices(t *testing.T) {
	root, _ := newRoot(t)
	data := mkTar(t,
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}},
		te{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}},
		linkE("null2", "null"),
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "wh", Devmajor: 0, Devminor: 0}},
		fileE(".wh.gone", ""),
		te{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}},
	)
	res := mustUnpack(t, root, data, Options{SkipDevices: true})
	assertMissing(t, filepath.Join(root, "null"))
	assertMissing(t, filepath.Join(root, "sda"))
	assertMissing(t, filepath.Join(root, "null2"))
	for _, p := range []string{"wh", "gone"} {
		if st := lstat(t, filepath.Join(root, p)); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s should be a 0:0 char dev", p)
		}
	}
	lstat(t, filepath.Join(root, "fifo"))
	want := "skipped 3 device nodes: creating them needs root in the initial user namespace"
	if len(res.Warnings) != 1 || res.Warnings[0] != want {
		t.Errorf("warnings %q, want [%q]", res.Warnings, want)
	}
}

func TestOverlayWhiteouts(t *testing.T) {
	root, _ := newRoot(t)
	data := mkTar(t,
		dirE("a/"),
		fileE("a/.wh.missing", ""),
		fileE("a/.wh..wh..opq", ""),
		fileE("a/.wh.inopaque", ""),
		fileE("b/c/.wh..wh..opq", ""), // parent does not exist yet
		fileE(".wh.top", ""),
		fileE(".wh..wh.plnk", ""),
		fileE("a/f", "x"),
	)
	res := mustUnpack(t, root, data, Options{Whiteouts: OverlayWhiteouts})
	for _, p := range []string{"top"} {
		st := lstat(t, filepath.Join(root, p))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want 0:0 char dev", p, st.Mode, st.Rdev)
		}
	}
	// Whiteouts in a directory the layer makes opaque hide nothing, and
	// overlay would list them: dropped, whichever comes first.
	for _, p := range []string{"a/missing", "a/inopaque"} {
		assertMissing(t, filepath.Join(root, p))
	}
	for _, d := range []string{"a", "b/c"} {
		if v, err := getXattr(filepath.Join(root, d), "user.overlay.opaque"); err != nil || v != "y" {
			t.Errorf("%s opaque xattr = %q, %v", d, v, err)
		}
	}
	if _, err := getXattr(filepath.Join(root, "b"), "user.overlay.opaque"); err == nil {
		t.Errorf("b should not be opaque")
	}
	assertMissing(t, filepath.Join(root, "a/.wh..wh..opq"))
	assertMissing(t, filepath.Join(root, ".wh..wh.plnk"))
	if readFile(t, filepath.Join(root, "a/f")) != "x" {
		t.Error("a/f")
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "aufs") {
		t.Errorf("warnings %q", res.Warnings)
	}
}

func TestWhiteoutTraversal(t *testing.T) {
	for _, name := range []string{".wh..", ".wh...", "a/.wh.", "../.wh.x", "a/../../.wh.x"} {
		root, outside := newRoot(t)
		for _, mode := range []WhiteoutMode{OverlayWhiteouts, ApplyWhiteouts} {
			_, err := unpackBytes(t, root, mkTar(t, fileE(name, "")), Options{Whiteouts: mode})
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("%q mode %d: err %v, want ErrUnsafePath", name, mode, err)
			}
		}
		assertEmptyDir(t, outside)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	root, _ := newRoot(t)
	mustUnpack(t, root, mkTar(t,
		dirE("a/"), fileE("a/b", "1"), dirE("a/sub/"), fileE("a/sub/deep", "2"), fileE("a/sub/other", "3"),
		dirE("d/"), fileE("d/x", "4"), fileE("f", "5"), dirE("keep/"), fileE("keep/k", "6"),
	), Options{Whiteouts: ApplyWhiteouts})
	res := mustUnpack(t, root, mkTar(t,
		fileE(".wh.d", ""),          // deletes a tree
		fileE(".wh.f", ""),          // deletes a file
		fileE(".wh.nothing", ""),    // missing: fine
		fileE("nodir/.wh.x", ""),    // missing parent: fine
		fileE("a/sub/deep", "new"),  // written by this stream before the marker: stays
		fileE("a/.wh..wh..opq", ""), // empties the rest of a
		fileE("a/after", "7"),       // written after the marker: stays
		fileE("keep/.wh..wh..opq", ""),
	), Options{Whiteouts: ApplyWhiteouts})
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q", res.Warnings)
	}
	for _, p := range []string{"d", "f", "nothing", "nodir", "a/b", "a/sub/other", "keep/k"} {
		assertMissing(t, filepath.Join(root, p))
	}
	if got := readFile(t, filepath.Join(root, "a/sub/deep")); got != "new" {
		t.Errorf("a/sub/deep = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "a/after")); got != "7" {
		t.Errorf("a/after = %q", got)
	}
	assertEmptyDir(t, filepath.Join(root, "keep"))
	if _, err := getXattr(filepath.Join(root, "a"), "user.overlay.opaque"); err == nil {
		t.Errorf("apply mode must not set the opaque xattr")
	}
}

func TestReplaceSemantics(t *testing.T) {
	root, _ := newRoot(t)
	res := mustUnpack(t, root, mkTar(t,
		fileE("fd", "file"), dirE("fd/"), fileE("fd/in", "1"), // file then dir
		dirE("df/"), fileE("df/in", "1"), dirE("df/sub/"), fileE("df", "now a file"), // dir tree then file
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "dd", Mode: 0o700, Uid: 1}}, fileE("dd/x", "x"),
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "dd", Mode: 0o750, Uid: 2}}, // dir over dir merges
		fileE("ff", "one"), fileE("ff", "two"),
		fileE("sf", "file"), symE("sf", "target"),
		symE("fs", "target"), fileE("fs", "file"),
		symE("ds", "/"), dirE("ds/"), fileE("ds/x", "inside"), // dir over symlink replaces the symlink
	), Options{})
	if st := lstat(t, filepath.Join(root, "fd")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Error("fd should be a dir")
	}
	if readFile(t, filepath.Join(root, "df")) != "now a file" {
		t.Error("df")
	}
	st := lstat(t, filepath.Join(root, "dd"))
	if st.Mode&0o7777 != 0o750 || st.Uid != 2 || readFile(t, filepath.Join(root, "dd/x")) != "x" {
		t.Errorf("dd merge: mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	if readFile(t, filepath.Join(root, "ff")) != "two" {
		t.Error("ff")
	}
	if l, _ := os.Readlink(filepath.Join(root, "sf")); l != "target" {
		t.Error("sf")
	}
	if readFile(t, filepath.Join(root, "fs")) != "file" {
		t.Error("fs")
	}
	if st := lstat(t, filepath.Join(root, "ds")); st.Mode&unix.S_IFMT != unix.S_IFDIR || readFile(t, filepath.Join(root, "ds/x")) != "inside" {
		t.Error("ds")
	}
	if want := int64(len("file" + "1" + "1" + "now a file" + "x" + "one" + "two" + "file" + "file" + "inside")); res.Bytes != want {
		t.Errorf("Bytes = %d, want %d", res.Bytes, want)
	}
}

func TestHardlinks(t *testing.T) {
	root, outside := newRoot(t)
	mustUnpack(t, root, mkTar(t,
		fileE("orig", "old"),
		linkE("link", "orig"),
		fileE("orig", "new"), // replaced: link keeps the old content
		linkE("/abs-link", "/orig"),
		symE("sym", "/etc/passwd"),
		linkE("link-to-sym", "sym"), // links the symlink itself
		linkE("orig", "orig"),       // a link to itself changes nothing
		linkE("a/b/implicit", "./orig"),
	), Options{})
	if readFile(t, filepath.Join(root, "link")) != "old" || readFile(t, filepath.Join(root, "orig")) != "new" {
		t.Error("link should keep the replaced file's content")
	}
	if lstat(t, filepath.Join(root, "abs-link")).Ino != lstat(t, filepath.Join(root, "orig")).Ino {
		t.Error("abs-link")
	}
	if st := lstat(t, filepath.Join(root, "link-to-sym")); st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Ino != lstat(t, filepath.Join(root, "sym")).Ino {
		t.Error("link-to-sym should be the symlink inode")
	}
	if readFile(t, filepath.Join(root, "a/b/implicit")) != "new" {
		t.Error("a/b/implicit")
	}

	// Across deletion, in apply mode: the link survives its target's whiteout.
	mustUnpack(t, root, mkTar(t, linkE("survivor", "orig"), fileE(".wh.orig", "")), Options{Whiteouts: ApplyWhiteouts})
	assertMissing(t, filepath.Join(root, "orig"))
	if readFile(t, filepath.Join(root, "survivor")) != "new" {
		t.Error("survivor")
	}
	// A later layer may link to content of an earlier one (apply mode).
	mustUnpack(t, root, mkTar(t, linkE("later", "survivor")), Options{Whiteouts: ApplyWhiteouts})

	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	os.Symlink(outside, filepath.Join(root, "out"))
	os.Symlink(".", filepath.Join(root, "inroot"))
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	unsafe := map[string]string{
		"l1": "../outside/secret",
		"l2": "/../outside/secret",
		"l3": "out/secret",   // through a symlink leaving the root
		"l4": "inroot/later", // through a symlink even inside the root
		"l5": "a/../../x",
	}
	for name, target := range unsafe {
		_, err := unpackBytes(t, root, mkTar(t, linkE(name, target)), Options{})
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%s -> %s: err %v, want ErrUnsafePath", name, target, err)
		}
		assertMissing(t, filepath.Join(root, name))
	}
	for name, target := range map[string]string{"m1": "missing", "m2": "dir", "m3": "/", "m4": "later/x"} {
		_, err := unpackBytes(t, root, mkTar(t, linkE(name, target)), Options{})
		if err == nil || errors.Is(err, ErrUnsafePath) {
			t.Errorf("%s -> %s: err %v, want a plain error", name, target, err)
		}
	}
	if st := lstat(t, filepath.Join(outside, "secret")); st.Nlink != 1 {
		t.Errorf("outside file got linked: nlink %d", st.Nlink)
	}
}

func TestUnsafeNames(t *testing.T) {
	for _, name := range []string{"../x", "/../x", "a/../../x", "./../x", ".."} {
		root, outside := newRoot(t)
		_, err := unpackBytes(t, root, mkTar(t, fileE(name, "evil")), Options{})
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%q: err %v, want ErrUnsafePath", name, err)
		}
		assertEmptyDir(t, outside)
		assertEmptyDir(t, root)
	}
	root, _ := newRoot(t)
	mustUnpack(t, root, mkTar(t, fileE("/abs/x", "1"), fileE("./dot/x", "2"), fileE("a/../folded", "3"), fileE("//a//b/./c", "4")), Options{})
	for p, want := range map[string]string{"abs/x": "1", "dot/x": "2", "folded": "3", "a/b/c": "4"} {
		if got := readFile(t, filepath.Join(root, p)); got != want {
			t.Errorf("%s = %q", p, got)
		}
	}
	// A non-directory entry naming the root itself (".").
	if _, err := unpackBytes(t, root, mkTar(t, fileE(".", "")), Options{}); err == nil {
		t.Error("file named ./ should fail")
	}
}

func TestSymlinkEscape(t *testing.T) {
	cases := map[string][]te{
		"absolute":      {symE("evil", "/OUTSIDE"), fileE("evil/x", "pwned")},
		"relative":      {symE("evil", "../outside"), fileE("evil/x", "pwned")},
		"deep":          {dirE("a/"), symE("a/evil", "../../outside"), fileE("a/evil/x", "pwned")},
		"dir entry":     {symE("evil", "../outside"), dirE("evil/sub/")},
		"symlink entry": {symE("evil", "../outside"), symE("evil/s", "/")},
		"whiteout":      {symE("evil", "../outside"), fileE("evil/.wh.x", "")},
		"opaque":        {symE("evil", "../outside"), fileE("evil/.wh..wh..opq", "")},
		"in root":       {dirE("real/"), symE("alias", "real"), fileE("alias/x", "no")},
	}
	for name, ents := range cases {
		for _, mode := range []WhiteoutMode{OverlayWhiteouts, ApplyWhiteouts} {
			root, outside := newRoot(t)
			os.WriteFile(filepath.Join(outside, "x"), []byte("keep"), 0o644)
			for i := range ents {
				if ents[i].hdr.Linkname == "/OUTSIDE" {
					ents[i].hdr.Linkname = outside
				}
			}
			_, err := unpackBytes(t, root, mkTar(t, ents...), Options{Whiteouts: mode})
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("%s (mode %d): err %v, want ErrUnsafePath", name, mode, err)
			}
			ents2, _ := os.ReadDir(outside)
			if len(ents2) != 1 || readFile(t, filepath.Join(outside, "x")) != "keep" {
				t.Errorf("%s (mode %d): outside changed: %v", name, mode, ents2)
			}
		}
	}
}

func TestSymlinkEscapeAcrossStreams(t *testing.T) {
	root, outside := newRoot(t)
	os.WriteFile(filepath.Join(outside, "x"), []byte("keep"), 0o644)
	opts := Options{Whiteouts: ApplyWhiteouts}
	mustUnpack(t, root, mkTar(t, symE("evil", outside), symE("rel", "../outside"), dirE("d/"), symE("d/up", "..")), opts)
	for _, ents := range [][]te{
		{fileE("evil/x", "pwned")},
		{fileE("rel/x", "pwned")},
		{fileE("rel/.wh.x", "")},
		{fileE("evil/.wh..wh..opq", "")},
		{linkE("l", "evil/x")},
		{fileE("d/up/evil/x", "pwned")},
		{dirE("rel/newdir/")},
	} {
		_, err := unpackBytes(t, root, mkTar(t, ents...), opts)
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%s: err %v, want ErrUnsafePath", ents[0].hdr.Name, err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 || readFile(t, filepath.Join(outside, "x")) != "keep" {
		t.Errorf("outside changed: %v", ents)
	}
	// Replacing the symlink by a real directory is the legitimate way.
	mustUnpack(t, root, mkTar(t, dirE("evil/"), fileE("evil/x", "fine")), opts)
	if readFile(t, filepath.Join(root, "evil/x")) != "fine" || readFile(t, filepath.Join(outside, "x")) != "keep" {
		t.Error("dir over symlink")
	}
}

func TestModesAfterChown(t *testing.T) {
	root, _ := newRoot(t)
	mustUnpack(t, root, mkTar(t,
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "suid", Mode: 0o4755, Uid: 1000, Gid: 1000}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sgid", Mode: 0o2711, Uid: 0, Gid: 50}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "sticky", Mode: 0o1777, Uid: 7}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "setgiddir", Mode: 0o2775, Gid: 9}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "locked", Mode: 0o500}},
		fileE("locked/inside", "x"), // root can write into a 0500 dir
		te{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o4620, Uid: 3}},
		te{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "sym", Linkname: "suid", Uid: 11, Gid: 12}},
	), Options{})
	for p, want := range map[string]struct {
		mode     uint32
		uid, gid uint32
	}{
		"suid": {0o4755, 1000, 1000}, "sgid": {0o2711, 0, 50}, "sticky": {0o1777, 7, 0},
		"setgiddir": {0o2775, 0, 9}, "locked": {0o500, 0, 0}, "fifo": {0o4620, 3, 0},
	} {
		st := lstat(t, filepath.Join(root, p))
		if st.Mode&0o7777 != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", p, st.Mode&0o7777, st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	if st := lstat(t, filepath.Join(root, "sym")); st.Uid != 11 || st.Gid != 12 {
		t.Errorf("symlink owner %d:%d", st.Uid, st.Gid)
	}
	if st := lstat(t, filepath.Join(root, "suid")); st.Mode&0o777 != 0o755 {
		t.Errorf("symlink target mode changed: %o", st.Mode)
	}
}

func TestTimes(t *testing.T) {
	root, _ := newRoot(t)
	old := time.Date(2001, 1, 1, 0, 0, 0, 123456789, time.UTC)
	older := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	atime := time.Date(2010, 5, 5, 5, 5, 5, 0, time.UTC)
	mustUnpack(t, root, mkTar(t,
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", ModTime: older}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d", ModTime: old}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/sub", ModTime: older}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/sub/f", ModTime: old, AccessTime: atime}},
		te{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "d/s", Linkname: "nowhere", ModTime: older}},
		fileE("d/late", "written after d's header"),
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "gone", ModTime: old}},
		fileE("gone", "replaced"),
	), Options{})
	check := func(p string, want time.Time) {
		t.Helper()
		st := lstat(t, filepath.Join(root, p))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(want) {
			t.Errorf("%s mtime %v, want %v", p, got, want)
		}
	}
	check(".", older)
	check("d", old)
	check("d/sub", older)
	check("d/sub/f", old)
	check("d/s", older)
	check("gone", testTime)
	if st := lstat(t, filepath.Join(root, "d/sub/f")); !time.Unix(st.Atim.Unix()).Equal(atime) {
		t.Errorf("atime %v", time.Unix(st.Atim.Unix()))
	}
}

func TestXattrs(t *testing.T) {
	root, _ := newRoot(t)
	// A valid VFS_CAP_REVISION_2 value: cap_net_raw+ep.
	capv2 := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	x := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m["SCHILY.xattr."+kv[i]] = kv[i+1]
		}
		return m
	}
	res := mustUnpack(t, root, mkTar(t,
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "f", Uid: 5, PAXRecords: x(
			"user.keep", "v", "security.capability", capv2,
			"user.overlay.opaque", "y", "trusted.overlay.redirect", "/x", "trusted.foo", "1", "security.selinux", "l")}},
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d", PAXRecords: x("user.dir", "dv", "user.overlay.opaque", "y")}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bomb", PAXRecords: x("user.a", strings.Repeat("a", 40<<10), "user.b", strings.Repeat("b", 40<<10))}},
		te{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: "f", PAXRecords: x("user.s", "1")}},
	), Options{})
	f := filepath.Join(root, "f")
	if v, err := getXattr(f, "user.keep"); v != "v" || err != nil {
		t.Errorf("user.keep = %q, %v", v, err)
	}
	if v, err := getXattr(f, "security.capability"); v != capv2 || err != nil {
		t.Errorf("security.capability = %x, %v (chown after setting it would clear it)", v, err)
	}
	for _, k := range []string{"user.overlay.opaque", "trusted.overlay.redirect", "trusted.foo", "security.selinux"} {
		if _, err := getXattr(f, k); err == nil {
			t.Errorf("%s should be dropped", k)
		}
	}
	if v, _ := getXattr(filepath.Join(root, "d"), "user.dir"); v != "dv" {
		t.Error("user.dir")
	}
	if _, err := getXattr(filepath.Join(root, "d"), "user.overlay.opaque"); err == nil {
		t.Error("an image must not make a dir opaque through xattrs")
	}
	if _, err := getXattr(filepath.Join(root, "bomb"), "user.a"); err == nil {
		t.Error("bomb xattrs should be dropped")
	}
	got := strings.Join(res.Warnings, "\n")
	for _, w := range []string{"dropped 3 overlay xattrs", "dropped 2 xattrs other than", "1 entries whose xattrs exceed 64 KiB", "dropped 1 xattrs on symlinks"} {
		if !strings.Contains(got, w) {
			t.Errorf("warnings %q lack %q", got, w)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	root, _ := newRoot(t)
	data := mkTar(t, fileE("a", strings.Repeat("a", 600)), fileE("b", strings.Repeat("b", 600)))
	// Each file counts as the 4 KiB block it takes.
	_, err := unpackBytes(t, root, data, Options{MaxBytes: 6000})
	var le *LimitError
	if !errors.Is(err, ErrLimitExceeded) || !errors.As(err, &le) || le.Limit != "max_layer_bytes" {
		t.Fatalf("err %v, want a max_layer_bytes ErrLimitExceeded", err)
	}
	if !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("error should name the entry: %v", err)
	}
	assertMissing(t, filepath.Join(root, "b"))
	root2, _ := newRoot(t)
	if res := mustUnpack(t, root2, data, Options{MaxBytes: 8192}); res.Bytes != 1200 {
		t.Errorf("Bytes %d", res.Bytes)
	}
}

func TestTruncated(t *testing.T) {
	data := mkTar(t, fileE("a", strings.Repeat("a", 2000)), fileE("b", "b"))
	for _, n := range []int{0, 100, 512 + 700, 512 + 2048, len(data) - 1024 - 1, len(data) - 512} {
		root, _ := newRoot(t)
		if _, err := unpackBytes(t, root, data[:n], Options{}); err == nil {
			t.Errorf("cut at %d of %d: no error", n, len(data))
		}
	}
	// The 1024 zero bytes alone are a valid empty layer.
	root, _ := newRoot(t)
	mustUnpack(t, root, make([]byte, 1024), Options{})
	// Padding after the marker is read too.
	r := bytes.NewReader(append(mkTar(t, fileE("x", "1")), make([]byte, 9000)...))
	if _, err := Unpack(context.Background(), r, root, Options{}); err != nil || r.Len() != 0 {
		t.Errorf("padding: err %v, %d bytes left", err, r.Len())
	}
}

func TestContextCanceled(t *testing.T) {
	root, _ := newRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Unpack(ctx, bytes.NewReader(mkTar(t, fileE("a", "1"))), root, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

func TestDeepAndLongPaths(t *testing.T) {
	root, _ := newRoot(t)
	deep := strings.Repeat("d/", 200) + "f"
	// ~4000 bytes: PATH_MAX counts the terminating NUL.
	long := strings.Repeat(strings.Repeat("l", 250)+"/", 15) + strings.Repeat("x", 200)
	// Past PATH_MAX: 32 names of 255 bytes (NAME_MAX), 8.2 KiB, and 2100
	// components of one byte. Legal in tar and in the kernel, name by name.
	name255 := strings.Repeat("n", 255)
	over := strings.Repeat(name255+"/", 32) + "last"
	overDeep := strings.Repeat("a/", 2100) + "f"
	ents := []te{fileE(deep, "deep"), fileE(long, "long"), dirE(strings.Repeat("d/", 150)),
		fileE(over, "over"), symE(over+"-sym", "target"), dirE(over + "-dir/"), fileE(overDeep, "overdeep"),
		linkE(over+"-link", over), fileE(strings.Repeat(name255+"/", 20)+".wh.gone", "")}
	data := mkTar(t, ents...)
	mustUnpack(t, root, data, Options{})
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for p, want := range map[string]string{deep: "deep", long: "long", over: "over", overDeep: "overdeep", over + "-link": "over"} {
		ffd, err := openLong(fd, p, unix.O_RDONLY)
		if err != nil {
			t.Fatalf("open %d-byte path: %v", len(p), err)
		}
		f := os.NewFile(uintptr(ffd), "x")
		b := make([]byte, 10)
		n, _ := f.Read(b)
		f.Close()
		if string(b[:n]) != want {
			t.Errorf("%d-byte path holds %q", len(p), b[:n])
		}
	}
	// WalkTree sees every entry, the long ones included.
	seen := map[string]bool{}
	if err := WalkTree(root, func(rel string, d fs.DirEntry) error { seen[rel] = true; return nil }); err != nil {
		t.Fatalf("WalkTree: %v", err)
	}
	for _, p := range []string{over, over + "-sym", over + "-dir", overDeep, strings.Repeat(name255+"/", 20) + "gone"} {
		if !seen[p] {
			t.Errorf("WalkTree missed a %d-byte path", len(p))
		}
	}
	// UnpackLayer records them and Reassemble rebuilds the very bytes
	// (opening files past PATH_MAX one component at a time).
	dest := filepath.Join(t.TempDir(), "layer")
	if _, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{}); err != nil {
		t.Fatalf("UnpackLayer: %v", err)
	}
	reassembles(t, dest, data)
	// A single name longer than NAME_MAX: a clean error, not a crash.
	if _, err := unpackBytes(t, root, mkTar(t, fileE(strings.Repeat("a", 256), "")), Options{}); !errors.Is(err, unix.ENAMETOOLONG) {
		t.Errorf("256-byte name: err %v, want ENAMETOOLONG", err)
	}
	// os.RemoveAll (the store's removal of layers) handles such trees.
	tree := t.TempDir()
	mustUnpack(t, tree, data, Options{})
	if err := os.RemoveAll(tree); err != nil {
		t.Fatalf("RemoveAll of a tree deeper than PATH_MAX: %v", err)
	}
	// Replacing the deep trees removes them all.
	mustUnpack(t, root, mkTar(t, fileE("d", "flat"), fileE("a", "flat"), fileE(name255, "flat")), Options{})
	if readFile(t, filepath.Join(root, "d")) != "flat" || readFile(t, filepath.Join(root, "a")) != "flat" {
		t.Error("deep tree not replaced")
	}
}

func TestBadOptionsAndRoot(t *testing.T) {
	root, _ := newRoot(t)
	if _, err := unpackBytes(t, root, mkTar(t), Options{Whiteouts: 7}); err == nil {
		t.Error("bad mode accepted")
	}
	if _, err := unpackBytes(t, filepath.Join(root, "missing"), mkTar(t), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing root: %v", err)
	}
	if _, err := unpackBytes(t, root, mkTar(t, te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "x", Uid: 1 << 32}}), Options{}); err == nil {
		t.Error("uid 2^32 accepted")
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"": ".", "/": ".", "./": ".", ".": ".", "a": "a", "/a/b/": "a/b", "./a/./b": "a/b",
		"a/../b": "b", "a//b": "a/b", "././/a": "a", "a/..": ".",
	} {
		got, err := cleanPath(in)
		if err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../a", "/..", "/../a", "a/../..", "./../a", "a\x00"} {
		if got, err := cleanPath(in); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("cleanPath(%q) = %q, %v; want ErrUnsafePath", in, got, err)
		}
	}
}

// TestOwnerAndModeWithoutChown: a file whose entry names the process's own
// IDs skips the fchown and one whose mode survives the umask skips the
// fchmod (setFileMeta, createMode), but never where that would leave the
// wrong owner or mode: in a setgid directory (an entry's or the layer
// root) a new file takes the directory's group, so the chown must happen;
// modes the umask cuts or with special bits still get their fchmod.
func TestOwnerAndModeWithoutChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the setgid directory is given another group")
	}
	root, _ := newRoot(t)
	mustUnpack(t, root, mkTar(t,
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "sg/", Mode: 0o2775, Gid: 9}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sg/own", Mode: 0o644}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "plain", Mode: 0o644}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "groupw", Mode: 0o664}},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "none", Mode: 0o400}},
	), Options{})
	for p, want := range map[string]struct{ mode, uid, gid uint32 }{
		"sg/own": {0o644, 0, 0}, "plain": {0o644, 0, 0}, "groupw": {0o664, 0, 0}, "none": {0o400, 0, 0},
	} {
		st := lstat(t, filepath.Join(root, p))
		if st.Mode&0o7777 != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", p, st.Mode&0o7777, st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	// A setgid layer root.
	root2, _ := newRoot(t)
	if err := os.Chown(root2, 0, 9); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root2, 0o2755); err != nil {
		t.Fatal(err)
	}
	mustUnpack(t, root2, mkTar(t, te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644}}), Options{})
	if st := lstat(t, filepath.Join(root2, "f")); st.Gid != 0 {
		t.Errorf("f in a setgid root: gid %d, want 0", st.Gid)
	}
}
