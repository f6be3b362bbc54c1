package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The conformance table: every lower state of a path p crossed with every
// sequence of entries one layer may hold for p, each applied both ways the
// store applies layers, and the merged view checked through a real overlay
// mount (userxattr, in a user namespace, as runtimes mount the store's
// layers) against a model that applies the layers' entries one after
// another, as the image spec's changeset application does:
//
//   - per layer: every layer unpacked in overlay form into its own dir,
//     mounted as lowerdir=top:...:base;
//   - squashed: every layer applied (ApplyWhiteouts) into one dir;
//   - squashed from overlay form: the same, from each layer's unpacked dir
//     turned back into a tar by DiffTar;
//   - mixed: the lower layers squashed, the top one in overlay form above.

const (
	conformanceEnv = "TAPROOT_UNPACKER_CONFORMANCE"
	phantom        = "phantom (listed, but lstat says ENOENT)"
)

// confLowers are the states of p (and around it) before the top layer.
var confLowers = []struct {
	name   string
	layers [][]te
}{
	{"none", [][]te{{fileE("keep", "k")}}},
	{"file", [][]te{{fileE("keep", "k"), fileE("p", "lower")}}},
	{"dir", [][]te{{fileE("keep", "k"), dirE("p/"), fileE("p/old", "old"), dirE("p/olddir/"), fileE("p/olddir/deep", "deep")}}},
	{"symlink", [][]te{{fileE("keep", "k"), symE("p", "keep")}}},
	{"whiteout", [][]te{
		{fileE("keep", "k"), dirE("p/"), fileE("p/old", "old")},
		{fileE(".wh.p", "")},
	}},
	{"opaque", [][]te{
		{fileE("keep", "k"), dirE("p/"), fileE("p/old0", "old0")},
		{dirE("p/"), fileE("p/.wh..wh..opq", ""), fileE("p/old1", "old1")},
	}},
	{"hardlink", [][]te{{fileE("keep", "k"), fileE("q", "qq"), linkE("p", "q")}}},
}

// confSequences are what the top layer holds for p, in tar order.
var confSequences = []struct {
	name string
	ents []te
}{
	{"file", []te{fileE("p", "new")}},
	{"dir", []te{dirE("p/"), fileE("p/new", "n")}},
	{"symlink", []te{symE("p", "keep")}},
	{"hardlink", []te{fileE("q2", "q2"), linkE("p", "q2")}},
	{"whiteout", []te{fileE(".wh.p", "")}},
	{"opaque", []te{dirE("p/"), fileE("p/.wh..wh..opq", ""), fileE("p/new", "n")}},
	{"opaque after child", []te{dirE("p/"), fileE("p/new", "n"), fileE("p/.wh..wh..opq", "")}},
	{"dir whiting out a lower child", []te{dirE("p/"), fileE("p/.wh.old", "")}},

	{"whiteout, file", []te{fileE(".wh.p", ""), fileE("p", "new")}},
	{"whiteout, dir", []te{fileE(".wh.p", ""), dirE("p/"), fileE("p/new", "n")}},
	{"whiteout, dir, child whiteout", []te{fileE(".wh.p", ""), dirE("p/"), fileE("p/.wh.old", ""), fileE("p/new", "n")}},
	{"whiteout, implied dir", []te{fileE(".wh.p", ""), fileE("p/new", "n")}},
	{"whiteout, symlink", []te{fileE(".wh.p", ""), symE("p", "keep")}},
	{"whiteout, hardlink", []te{fileE("q2", "q2"), fileE(".wh.p", ""), linkE("p", "q2")}},
	{"whiteout, opaque", []te{fileE(".wh.p", ""), dirE("p/"), fileE("p/.wh..wh..opq", ""), fileE("p/new", "n")}},

	{"file, whiteout", []te{fileE("p", "new"), fileE(".wh.p", "")}},
	{"empty file, whiteout", []te{fileE("p", ""), fileE(".wh.p", "")}},
	{"dir, whiteout", []te{dirE("p/"), fileE("p/new", "n"), fileE(".wh.p", "")}},
	{"symlink, whiteout", []te{symE("p", "keep"), fileE(".wh.p", "")}},
	{"hardlink, whiteout", []te{fileE("q2", "q2"), linkE("p", "q2"), fileE(".wh.p", "")}},
	{"opaque, whiteout", []te{dirE("p/"), fileE("p/.wh..wh..opq", ""), fileE("p/new", "n"), fileE(".wh.p", "")}},

	{"dir, whiteout, dir", []te{dirE("p/"), fileE("p/a", "a"), fileE(".wh.p", ""), dirE("p/"), fileE("p/b", "b")}},
	{"file, dir", []te{fileE("p", "new"), dirE("p/"), fileE("p/new", "n")}},
	{"dir, file", []te{dirE("p/"), fileE("p/new", "n"), fileE("p", "new")}},
	{"symlink, dir", []te{symE("p", "keep"), dirE("p/"), fileE("p/new", "n")}},
	{"dir, symlink", []te{dirE("p/"), fileE("p/new", "n"), symE("p", "keep")}},
	{"symlink, dir, symlink", []te{symE("p", "keep"), dirE("p/"), fileE("p/new", "n"), symE("p", "q")}},
	{"whiteout, whiteout", []te{fileE(".wh.p", ""), fileE(".wh.p", "")}},
}

func TestConformance(t *testing.T) {
	if os.Getenv(conformanceEnv) != "" {
		t.Skip("already inside")
	}
	if os.Getuid() != 0 {
		// An identity map of 64 Ki IDs needs root; the table only needs
		// 0 and 7, but a single mapped ID keeps the test honest about
		// owners too, so require the real thing.
		t.Skip("needs root to map IDs 0-65535 into the user namespace")
	}
	// As root the namespace can be made: failing to is a failure.
	inUserns(t, "TestConformanceHelper", conformanceEnv, syscall.CLONE_NEWUSER|syscall.CLONE_NEWNS,
		syscall.SysProcIDMap{ContainerID: 0, HostID: 0, Size: 65536}, syscall.SysProcIDMap{ContainerID: 0, HostID: 0, Size: 65536}, t.Fatalf)
}

func TestConformanceHelper(t *testing.T) {
	base := os.Getenv(conformanceEnv)
	if base == "" {
		return // an entry point: TestConformance runs it in a user namespace
	}
	n, phantoms := 0, 0
	for li, lower := range confLowers {
		for si, seq := range confSequences {
			// Give the top layer's entries an owner and modes of their own
			// (the merged view must show them, not the lower ones).
			top := append([]te{fileE("top-marker", "t")}, seq.ents...)
			for i := range top {
				if top[i].hdr.Typeflag == tar.TypeDir {
					top[i].hdr.Mode, top[i].hdr.Uid = 0o750, 7
				}
			}
			layers := append(append([][]te(nil), lower.layers...), top)
			dir := filepath.Join(base, fmt.Sprintf("%d-%d", li, si))
			name := lower.name + " x " + seq.name
			phantoms += checkConformance(t, name, dir, layers)
			n++
		}
	}
	t.Logf("%d cases, 4 ways each; %d tolerated phantom whiteouts (whiteouts that hide nothing, in layer form)", n, phantoms)
}

// checkConformance checks one case and returns how many phantom whiteouts
// it tolerated.
func checkConformance(t *testing.T, name, dir string, layers [][]te) (phantoms int) {
	t.Helper()
	tars := make([][]byte, len(layers))
	for i, l := range layers {
		tars[i] = mkTar(t, l...)
	}
	want := modelApply(t, layers)
	mk := func(p string) string {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := mk(filepath.Join(dir, "empty"))

	// Per layer, in overlay form.
	var perLayer []string // top first
	for i, data := range tars {
		d := mk(filepath.Join(dir, fmt.Sprintf("layer%d", i)))
		if _, err := unpackBytes(t, d, data, Options{}); err != nil {
			t.Fatalf("%s: layer %d: %v", name, i, err)
		}
		perLayer = append([]string{d}, perLayer...)
	}
	// All squashed.
	squash := mk(filepath.Join(dir, "squash"))
	for i, data := range tars {
		if _, err := unpackBytes(t, squash, data, Options{Whiteouts: ApplyWhiteouts}); err != nil {
			t.Fatalf("%s: squash layer %d: %v", name, i, err)
		}
	}
	// All squashed from the layers' overlay form (DiffTar), as the store
	// squashes layers whose tar cannot be rebuilt.
	squashDiff := mk(filepath.Join(dir, "squash-diff"))
	for i := range perLayer {
		var buf bytes.Buffer
		if err := DiffTar(context.Background(), perLayer[len(perLayer)-1-i], &buf); err != nil {
			t.Fatalf("%s: DiffTar layer %d: %v", name, i, err)
		}
		if _, err := unpackBytes(t, squashDiff, buf.Bytes(), Options{Whiteouts: ApplyWhiteouts}); err != nil {
			t.Fatalf("%s: squash DiffTar of layer %d: %v", name, i, err)
		}
	}
	// The lower layers squashed, the top one above.
	squashLow := mk(filepath.Join(dir, "squash-low"))
	for i, data := range tars[:len(tars)-1] {
		if _, err := unpackBytes(t, squashLow, data, Options{Whiteouts: ApplyWhiteouts}); err != nil {
			t.Fatalf("%s: squash layer %d: %v", name, i, err)
		}
	}
	// Overlay lists a whiteout that sits in a directory it does not merge
	// with a lower one (readdir has the name, stat says ENOENT). In layer
	// form that cannot be avoided where the layer does not know whether a
	// lower layer has the directory: allow such phantoms only where the
	// whiteout hides nothing, i.e. the lower layers have no directory
	// there, and never in the squashed view.
	lowerView := modelApply(t, layers[:len(layers)-1])
	for _, v := range []struct {
		how     string
		lowers  []string
		phantom bool
	}{
		{"per layer", perLayer, true},
		{"squashed", []string{squash, empty}, false},
		{"squashed from overlay form", []string{squashDiff, empty}, false},
		{"mixed", []string{perLayer[0], squashLow}, true},
	} {
		got := mountedView(t, filepath.Join(dir, "mnt-"+strings.ReplaceAll(v.how, " ", "-")), v.lowers)
		for p, n := range got.nodes {
			if n != phantom || !v.phantom {
				continue
			}
			if parent := filepath.Dir(p); !strings.HasPrefix(lowerView.nodes[parent], "dir ") && parent != "." {
				delete(got.nodes, p)
				phantoms++
			}
		}
		if diff := diffViews(want, got); diff != "" {
			t.Errorf("%s (%s): merged view differs from sequential application:\n%s", name, v.how, diff)
		}
	}
	return phantoms
}

// view is a merged tree: path -> description (type, mode, owner, content
// or target), plus the hardlink groups among regular files.
type view struct {
	nodes map[string]string
	links map[string]string // path -> key shared by the paths of one inode
}

func diffViews(want, got view) string {
	var b strings.Builder
	var paths []string
	for p := range want.nodes {
		paths = append(paths, p)
	}
	for p := range got.nodes {
		if _, ok := want.nodes[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		w, wok := want.nodes[p]
		g, gok := got.nodes[p]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  %s: missing, want %s\n", p, w)
		case !wok:
			fmt.Fprintf(&b, "  %s: %s, want nothing\n", p, g)
		case w != g:
			fmt.Fprintf(&b, "  %s: %s, want %s\n", p, g, w)
		}
	}
	// Same inode in the merged view exactly when the model linked them.
	for p, wk := range want.links {
		for q, wk2 := range want.links {
			if p < q && (wk == wk2) != (got.links[p] == got.links[q]) {
				fmt.Fprintf(&b, "  %s and %s: hardlinked %v, want %v\n", p, q, got.links[p] == got.links[q], wk == wk2)
			}
		}
	}
	return b.String()
}

func describe(typ string, mode uint32, uid, gid int, rest string) string {
	return fmt.Sprintf("%s %04o %d:%d %s", typ, mode&0o7777, uid, gid, rest)
}

// mountedView mounts lowers (top first) read-only with overlay and
// userxattr at mnt, reads the merged tree and unmounts.
func mountedView(t *testing.T, mnt string, lowers []string) view {
	t.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "userxattr,lowerdir=" + strings.Join(lowers, ":")
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	defer func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	}()
	v := view{nodes: map[string]string{}, links: map[string]string{}}
	err := WalkTree(mnt, func(rel string, _ fs.DirEntry) error {
		p := filepath.Join(mnt, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == unix.ENOENT {
			v.nodes[rel] = phantom
			return nil
		} else if err != nil {
			return pathErr("lstat", p, err)
		}
		uid, gid := int(st.Uid), int(st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			v.nodes[rel] = describe("dir", st.Mode, uid, gid, "")
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v.nodes[rel] = describe("file", st.Mode, uid, gid, string(b))
			v.links[rel] = fmt.Sprint(st.Dev, ":", st.Ino)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			v.nodes[rel] = describe("symlink", 0, uid, gid, target)
		default:
			v.nodes[rel] = describe(fmt.Sprintf("type-%o", st.Mode&unix.S_IFMT), st.Mode, uid, gid, fmt.Sprint(st.Rdev))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the merged view of %s: %v", opts, err)
	}
	return v
}

// modelNode is one path of the model tree.
type modelNode struct {
	typ     string // dir, file, symlink
	mode    uint32
	uid     int
	gid     int
	content string // file content or symlink target
	inode   int    // regular files: shared by hardlinks
}

// modelApply applies the layers' entries one after another to an
// in-memory tree, written independently of the unpacker from the image
// spec's rules: an entry replaces what is at its path (a directory over a
// directory merges), ".wh.NAME" deletes NAME whatever wrote it, and
// ".wh..wh..opq" deletes what lower layers have below its directory while
// entries of its own layer stay.
func modelApply(t *testing.T, layers [][]te) view {
	t.Helper()
	tree := map[string]*modelNode{}
	inodes := 0
	removeTree := func(p string) {
		for q := range tree {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(tree, q)
			}
		}
	}
	for _, layer := range layers {
		written := map[string]bool{} // paths this layer made (and their parents)
		mark := func(p string) {
			for ; p != "."; p = filepath.Dir(p) {
				written[p] = true
			}
		}
		for _, e := range layer {
			h := fixHdr(e.hdr)
			p := filepath.Clean(strings.TrimPrefix(h.Name, "/"))
			dir, base := filepath.Dir(p), filepath.Base(p)
			// Implied parent directories.
			for d, parts := "", strings.Split(dir, "/"); dir != "." && len(parts) > 0; parts = parts[1:] {
				d = filepath.Join(d, parts[0])
				if n, ok := tree[d]; !ok || n.typ != "dir" {
					removeTree(d)
					tree[d] = &modelNode{typ: "dir", mode: 0o755}
					written[d] = true
				}
			}
			switch {
			case base == ".wh..wh..opq":
				for q := range tree {
					if (dir == "." || strings.HasPrefix(q, dir+"/")) && !written[q] {
						delete(tree, q)
					}
				}
				continue
			case strings.HasPrefix(base, ".wh."):
				removeTree(filepath.Join(dir, strings.TrimPrefix(base, ".wh.")))
				continue
			}
			n := &modelNode{mode: uint32(h.Mode), uid: h.Uid, gid: h.Gid}
			switch h.Typeflag {
			case tar.TypeDir:
				n.typ = "dir"
				if old, ok := tree[p]; ok && old.typ == "dir" {
					*old = *n // merge: children stay, metadata is the entry's
					mark(p)
					continue
				}
			case tar.TypeReg:
				inodes++
				n.typ, n.content, n.inode = "file", e.body, inodes
			case tar.TypeSymlink:
				n.typ, n.content, n.mode = "symlink", h.Linkname, 0
			case tar.TypeLink:
				target, ok := tree[filepath.Clean(h.Linkname)]
				if !ok || target.typ == "dir" {
					t.Fatalf("model: bad hardlink %s -> %s", p, h.Linkname)
				}
				n = target
			default:
				t.Fatalf("model: type %c not modelled", h.Typeflag)
			}
			removeTree(p)
			tree[p] = n
			mark(p)
		}
	}
	v := view{nodes: map[string]string{}, links: map[string]string{}}
	for p, n := range tree {
		v.nodes[p] = describe(n.typ, n.mode, n.uid, n.gid, n.content)
		if n.typ == "file" {
			v.links[p] = fmt.Sprint(n.inode)
		}
	}
	return v
}

// TestSameLayerWhiteoutOfContent: a whiteout deleting content its own
// layer wrote leaves the tar impossible to rebuild from disk; UnpackLayer
// says so (the store then checks the layer by its file list only).
func TestSameLayerWhiteoutOfContent(t *testing.T) {
	for _, c := range []struct {
		name         string
		ents         []te
		unverifiable bool
	}{
		{"file then its whiteout", []te{fileE("p", "content"), fileE(".wh.p", "")}, true},
		{"dir of content then its whiteout", []te{dirE("d/"), dirE("d/e/"), fileE("d/e/f", "x"), fileE(".wh.d", "")}, true},
		{"empty file then its whiteout", []te{fileE("p", ""), fileE(".wh.p", "")}, false},
		{"whiteout then file", []te{fileE(".wh.p", ""), fileE("p", "content")}, false},
	} {
		dest := filepath.Join(t.TempDir(), "layer")
		data := mkTar(t, c.ents...)
		res, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Unverifiable != c.unverifiable {
			t.Errorf("%s: Unverifiable = %v, want %v", c.name, res.Unverifiable, c.unverifiable)
		}
		if !c.unverifiable {
			reassembles(t, dest, data)
		}
	}
}
