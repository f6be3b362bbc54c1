package acceptance

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// TestDeepImageFidelity: an image of 520 layers (more than overlay stacks,
// so the store squashes the lowest ones) whose layers remove and recreate
// directories in one layer (whiteout then directory, directory then its
// whiteout then the directory again, a whiteout then an implied directory),
// make directories opaque, turn a symlink into a directory and back, and
// hold paths longer than PATH_MAX (4 KiB), in the squashed part and above
// it, and layers whose tar cannot be rebuilt from disk (a path with content
// twice, content its own layer whites out) in the squashed part. The
// container's view in runc must equal, file by file (type, mode, owner,
// content or target), the layers applied one after another to an in-memory
// tree; the model is written from the image spec's rules and does not share
// code with the unpacker. umoci unpack is a second, independent reference
// (owners aside, and without the long paths, which it refuses): see the end
// of the test for how its whiteout rule differs from taproot's.
func TestDeepImageFidelity(t *testing.T) {
	need(t)
	t.Parallel()
	const n = 520
	lister, listerPath := buildTreelist(t)

	// 17 names of 240 bytes (4.1 KiB) in the squashed part, 34 (8.2 KiB)
	// above it; each directory also holds a name of 255 bytes (NAME_MAX).
	longPath := func(i, comps int) string {
		var names []string
		for c := 0; c < comps; c++ {
			names = append(names, fmt.Sprintf("%03d-%s", c, strings.Repeat(string(rune('a'+i%26)), 236)))
		}
		return fmt.Sprintf("long-%d/", i) + strings.Join(names, "/")
	}
	longAt := map[int]int{100: 17, n - 8: 34}
	const unverifiableAt = n - 3
	recreates := map[int]bool{} // layers that remove and recreate a dir
	// umoci 0.4.7 refuses paths past PATH_MAX (its mkdirall gets
	// ENAMETOOLONG at the 17th component of long-100), so it unpacks the
	// same layers without the long-* entries (short); everything else,
	// the same-layer remove-and-recreate and the symlink/dir flips, is in
	// both images.
	isLong := func(e ib.Entry) bool { return strings.HasPrefix(e.Path, "long-") }
	var layers, short []ib.Layer
	for i := 1; i <= n; i++ {
		e := []ib.Entry{ib.Dir("layers"), ib.File(fmt.Sprintf("layers/%03d", i), fmt.Sprintf("%d\n", i))}
		d := fmt.Sprintf("d%d", (i/10)%4)
		o := fmt.Sprintf("o%d", (i/10)%4)
		switch i % 10 {
		case 0: // content for later layers to remove
			e = append(e, ib.Dir(d), ib.File(fmt.Sprintf("%s/from-%d", d, i), "from\n"),
				ib.Dir(d+"/sub").WithMode(0o750), ib.File(fmt.Sprintf("%s/sub/deep-%d", d, i), "deep\n"))
		case 5:
			recreates[i] = true
			if (i/10)%2 == 0 { // whiteout, then the directory
				e = append(e, ib.Whiteout(d), ib.Dir(d).WithMode(0o705).WithOwner(7, 8), ib.File(fmt.Sprintf("%s/new-%d", d, i), "new\n"))
			} else { // directory, its whiteout, the directory again
				e = append(e, ib.Dir(d), ib.File(fmt.Sprintf("%s/pre-%d", d, i), ""), ib.Whiteout(d),
					ib.Dir(d), ib.File(fmt.Sprintf("%s/post-%d", d, i), "post\n"))
			}
		case 8:
			if (i/10)%3 == 0 { // whiteout, then a directory implied by a child
				recreates[i] = true
				e = append(e, ib.Whiteout(d), ib.File(fmt.Sprintf("%s/implied-%d", d, i), "implied\n"))
			}
		case 2:
			e = append(e, ib.Dir(o), ib.File(fmt.Sprintf("%s/add-%d", o, i), "add\n"))
		case 7:
			e = append(e, ib.Dir(o), ib.Opaque(o), ib.File(fmt.Sprintf("%s/o-%d", o, i), "o\n"))
		}
		switch i % 50 {
		case 13:
			e = append(e, ib.Symlink("s", fmt.Sprintf("target-%d", i)))
		case 33:
			e = append(e, ib.Dir("s"), ib.File(fmt.Sprintf("s/in-%d", i), "in\n"))
		}
		if comps := longAt[i]; comps > 0 {
			p := longPath(i, comps)
			var dirs []ib.Entry
			for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
				dirs = append([]ib.Entry{ib.Dir(dir)}, dirs...)
			}
			e = append(append(e, dirs...), ib.Dir(p), ib.File(p+"/leaf", "leaf\n"),
				ib.File(p+"/"+strings.Repeat("n", 255), "name of 255 bytes\n"))
		}
		if i == unverifiableAt { // content its own layer whites out
			e = append(e, ib.Dir("uv"), ib.File("uv/f", "gone\n"), ib.Whiteout("uv"))
		}
		// Layers whose tar cannot be rebuilt from disk, in the squashed
		// part (the store squashes them from their overlay form): a path
		// with content twice, content whited out by its own layer, a
		// hardlink to a file then replaced.
		switch i {
		case 150:
			e = append(e, ib.Dir("dup"), ib.File("dup/f", "first\n"), ib.File("dup/f", "second\n"))
		case 160:
			e = append(e, ib.Dir("uv2"), ib.File("uv2/f", "gone\n"), ib.Whiteout("uv2"), ib.Dir("uv2"), ib.File("uv2/g", "kept\n"))
		case 170:
			e = append(e, ib.Dir("hl"), ib.File("hl/a", "A\n"), ib.Hardlink("hl/b", "hl/a"), ib.File("hl/a", "A2\n"), ib.Hardlink("hl/c", "hl/a"))
		}
		layers = append(layers, layer(e...))
		short = append(short, layer(slices.DeleteFunc(slices.Clone(e), isLong)...))
	}
	top := layer(ib.Entry{Kind: ib.KindFile, Path: "treelist", Content: lister, Mode: 0o755})
	layers, short = append(layers, top), append(short, top)

	start := time.Now()
	ref, b := pushImage(t, "fidelity", busyboxImage(layers...))
	t.Logf("built and pushed %d layers in %v", len(b.Layers), time.Since(start).Round(time.Millisecond))
	if len(b.Layers) != n+2 {
		t.Fatalf("built %d layers, want %d", len(b.Layers), n+2)
	}
	store := newStore(t)
	frag := create(t, store, ref, "fidelity")

	// Which layers did the store squash? The fragment's lowers are the
	// kept layers (top first) and one squashed layer.
	var lowers []string
	for _, m := range frag.Mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				lowers = strings.Split(v, ":")
			}
		}
	}
	total := n + 2 // busybox, the n layers, treelist
	if len(lowers) == 0 || len(lowers) >= total {
		t.Fatalf("expected the store to squash: %d lowers for %d layers", len(lowers), total)
	}
	kept := len(lowers) - 1
	firstKept := total - kept // index of the lowest kept layer, busybox = 0
	var below, above int
	for i := range recreates {
		if i < firstKept {
			below++
		} else {
			above++
		}
	}
	t.Logf("%d layers: %d squashed, %d kept; directories removed and recreated in %d squashed and %d kept layers; long paths in layers %v",
		total, firstKept, kept, below, above, []int{100, n - 8})
	if below == 0 || above == 0 || firstKept > n-8 || firstKept <= 170 || firstKept > unverifiableAt {
		t.Fatalf("the events do not straddle the squash (first kept layer %d): fix the test's layout", firstKept)
	}

	want := applySequentially(t, wholePath, layerTars(t, layers), "proc", "dev", "sys")
	got := lines(sh(t, store, frag, "/treelist / proc dev sys"))
	sort.Strings(got)
	if d := diffLines(want, got); d != "" {
		t.Errorf("the container's view differs from the layers applied in order (- want, + got):\n%s", d)
	}
	if len(got) < 500 {
		t.Errorf("only %d entries listed", len(got))
	}
	if !slices.ContainsFunc(got, func(l string) bool { return len(l) > 8192 && strings.Contains(l, `/leaf"`) }) {
		t.Errorf("the container does not show the 8 KiB path")
	}
	if r := taproot(t, store, "check"); r.code != 0 {
		t.Errorf("taproot check:\n%s", r)
	}

	// umoci as a second reference, independent of taproot and of the
	// model's code: it unpacks the image without the long paths (short).
	// Owners are left out of these comparisons (rootless umoci makes every
	// file the test user's); type, mode, content and link target are
	// compared. umoci follows the spec's wording for a whiteout after its
	// own layer's entries (lowerOnly); taproot deletes them (wholePath).
	// So umoci must equal the lowerOnly model, and runc's view must equal
	// umoci's with exactly the paths where the two rules differ swapped:
	// any other difference between umoci and taproot fails.
	ustart := time.Now()
	u := umociView(t, listerPath, busyboxImage(short...), "proc", "dev", "sys")
	t.Logf("umoci: unpacked and listed %d entries in %v", len(u), time.Since(ustart).Round(time.Millisecond))
	shortTars := layerTars(t, short)
	specLower := withoutOwners(applySequentially(t, lowerOnly, shortTars, "proc", "dev", "sys"))
	if d := diffLines(specLower, u); d != "" {
		t.Errorf("umoci's view differs from the layers (without long-*) applied in order, whiteouts hiding lower layers only (- want, + umoci):\n%s", d)
	}
	seqShort := withoutOwners(applySequentially(t, wholePath, shortTars, "proc", "dev", "sys"))
	onlyLower, onlyWhole := minus(specLower, seqShort), minus(seqShort, specLower)
	t.Logf("the whiteout rules differ on %d lines (lowerOnly keeps %q; wholePath has %q)", len(onlyLower)+len(onlyWhole), onlyLower, onlyWhole)
	// The layers that white out their own entries (495's d1/pre-495, 160's
	// uv2/f, uv and uv/f of layer unverifiableAt) must show the difference,
	// or this part tests nothing.
	if len(onlyLower) < 4 {
		t.Errorf("the whiteout rules differ on only %d lines of umoci's image: the layers no longer white out their own entries", len(onlyLower))
	}
	gotShort := withoutOwners(slices.DeleteFunc(slices.Clone(got), func(l string) bool { return strings.HasPrefix(l, `"long-`) }))
	if d := diffLines(append(minus(u, onlyLower), onlyWhole...), gotShort); d != "" {
		t.Errorf("the container's view (without long-*) differs from umoci's beyond the whiteout rule (- umoci with the rule swapped, + runc):\n%s", d)
	}
	t.Logf("the umoci comparison took %v", time.Since(ustart).Round(time.Millisecond))
}

// minus returns the lines of a not in b.
func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, l := range b {
		in[l] = true
	}
	var out []string
	for _, l := range a {
		if !in[l] {
			out = append(out, l)
		}
	}
	return out
}

// layerTars returns the uncompressed tars of the busybox layer and layers.
func layerTars(t *testing.T, layers []ib.Layer) [][]byte {
	t.Helper()
	var tars [][]byte
	for _, l := range append([]ib.Layer{h.baseLayer}, layers...) {
		raw, err := l.Tar()
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, raw)
	}
	return tars
}

// umociView writes img as an OCI layout, unpacks it with `umoci unpack
// --rootless` as the test user and lists the rootfs with treelist, owners
// left out (withoutOwners).
func umociView(t *testing.T, treelist string, img ib.Image, skip ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Fatalf("umoci is not installed: run scripts/deps.sh")
	}
	dir := testDir(t, "layouts")
	if _, err := ib.WriteLayout(dir, "latest", img); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(testDir(t, "bundles"), "bundle")
	r := execute(t, 2*time.Minute, asUser("umoci", "unpack", "--rootless", "--image", dir+":latest", bundle))
	t.Logf("umoci unpack: exit %d in %v", r.code, r.dur.Round(time.Millisecond))
	if r.code != 0 {
		t.Fatalf("umoci unpack:\n%s", r)
	}
	r = execute(t, time.Minute, append([]string{treelist, filepath.Join(bundle, "rootfs")}, skip...))
	if r.code != 0 {
		t.Fatalf("treelist of umoci's rootfs:\n%s", r)
	}
	got := withoutOwners(lines(r.stdout))
	sort.Strings(got)
	return got
}

// withoutOwners drops the uid:gid field of treelist lines: umoci --rootless
// makes every file the unpacking user's.
func withoutOwners(in []string) []string {
	var out []string
	for _, l := range in {
		if f := strings.Split(l, "\t"); len(f) == 5 {
			l = strings.Join(append(f[:3:3], f[4:]...), "\t")
		}
		out = append(out, l)
	}
	return out
}

// buildTreelist builds acceptance/cmd/treelist as a static binary; it
// returns the binary and its path.
func buildTreelist(t *testing.T) ([]byte, string) {
	t.Helper()
	out := filepath.Join(testDir(t, "bundles"), "treelist")
	cmd := exec.Command("go", "build", "-o", out, "./acceptance/cmd/treelist")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build treelist: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data, out
}

type seqNode struct {
	typ      string
	mode     int64
	uid, gid int
	extra    string // sha256 of the content, or the symlink target
}

// whiteoutRule is what ".wh.NAME" deletes of what its own layer wrote
// before it at NAME or below.
type whiteoutRule int

const (
	// wholePath: NAME and everything below it, whichever layer wrote it
	// (taproot's rule, unpacker/doc.go: the layer applied entry by entry).
	wholePath whiteoutRule = iota
	// lowerOnly: only what lower layers have there; the layer's own
	// entries (and the parents they imply) stay. This is the image spec's
	// wording (layer.md, Whiteouts: "Whiteout files MUST only apply to
	// resources in lower/parent layers. Files that are present in the same
	// layer as a whiteout file can only be hidden by whiteout files in
	// subsequent layers.") and what umoci 0.4.7 does (its "upperPaths").
	lowerOnly
)

// applySequentially applies layer tars one after another to an in-memory
// tree: an entry replaces what is at its path (a directory over a
// directory takes the entry's metadata and keeps the children), missing
// parents are made 0755 0:0, ".wh.NAME" deletes NAME by the rule, and
// ".wh..wh..opq" deletes what lower layers have in its directory while its
// own layer's entries stay. It returns the tree in treelist's format,
// sorted, without the top-level names in skip.
func applySequentially(t *testing.T, rule whiteoutRule, tars [][]byte, skip ...string) []string {
	t.Helper()
	tree := map[string]*seqNode{}
	remove := func(p string) {
		for q := range tree {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(tree, q)
			}
		}
	}
	for li, data := range tars {
		written := map[string]bool{}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %d: %v", li, err)
			}
			p := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
			dir, base := path.Split(p)
			dir = path.Clean(dir)
			parts := strings.Split(dir, "/")
			for k := 1; dir != "." && k <= len(parts); k++ {
				d := strings.Join(parts[:k], "/")
				if n, ok := tree[d]; !ok || n.typ != "dir" {
					remove(d)
					tree[d] = &seqNode{typ: "dir", mode: 0o755}
					written[d] = true
				}
			}
			if base == ".wh..wh..opq" {
				for q := range tree {
					if strings.HasPrefix(q, dir+"/") && !written[q] {
						delete(tree, q)
					}
				}
				continue
			}
			if target, ok := strings.CutPrefix(base, ".wh."); ok {
				wp := path.Join(dir, target)
				if rule == wholePath {
					remove(wp)
					continue
				}
				for q := range tree {
					if (q == wp || strings.HasPrefix(q, wp+"/")) && !written[q] {
						delete(tree, q)
					}
				}
				continue
			}
			for q := p; q != "."; q = path.Dir(q) {
				written[q] = true
			}
			n := &seqNode{mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid}
			switch hdr.Typeflag {
			case tar.TypeDir:
				n.typ = "dir"
				if old, ok := tree[p]; ok && old.typ == "dir" {
					*old = *n
					continue
				}
			case tar.TypeReg:
				h := sha256.New()
				if _, err := io.Copy(h, tr); err != nil {
					t.Fatal(err)
				}
				n.typ, n.extra = "file", hex.EncodeToString(h.Sum(nil))
			case tar.TypeSymlink:
				n.typ, n.mode, n.extra = "symlink", 0, hdr.Linkname
			case tar.TypeLink:
				target, ok := tree[path.Clean(strings.TrimPrefix(hdr.Linkname, "/"))]
				if !ok {
					t.Fatalf("layer %d: hardlink %s to a missing %s", li, p, hdr.Linkname)
				}
				n = target
			case tar.TypeFifo:
				n.typ = "fifo"
			default:
				t.Fatalf("layer %d: %s: type %c not modelled", li, p, hdr.Typeflag)
			}
			remove(p)
			tree[p] = n
		}
	}
	var out []string
	for p, n := range tree {
		if slices.Contains(skip, strings.Split(p, "/")[0]) {
			continue
		}
		extra := n.extra
		if extra == "" {
			extra = "-"
		}
		out = append(out, fmt.Sprintf("%s\t%s\t%04o\t%d:%d\t%s", strconv.Quote(p), n.typ, n.mode, n.uid, n.gid, extra))
	}
	sort.Strings(out)
	return out
}

// diffLines lists the lines only in want (-) or only in got (+), at most 40,
// each cut to 300 bytes (paths here run to 4 KiB).
func diffLines(want, got []string) string {
	in := map[string]int{}
	for _, l := range want {
		in[l]--
	}
	for _, l := range got {
		in[l]++
	}
	var d []string
	for l, c := range in {
		switch {
		case c < 0:
			d = append(d, "- "+l)
		case c > 0:
			d = append(d, "+ "+l)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i][2:] < d[j][2:] })
	more := ""
	if len(d) > 40 {
		more = fmt.Sprintf("... and %d more\n", len(d)-40)
		d = d[:40]
	}
	for i, l := range d {
		if len(l) > 300 {
			d[i] = l[:300] + "..."
		}
	}
	if len(d) == 0 {
		return ""
	}
	return strings.Join(d, "\n") + "\n" + more
}
