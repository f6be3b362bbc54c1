package acceptance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
	"github.com/taproot-dev/taproot/internal/rawtar"
)

// Layers that try to write outside the layer dir: through a symlink to /,
// through "../" in names, through a hardlink to a host file. The host file
// must never appear; a create may fail (cleanly) or keep the write inside.
func TestHostileLayers(t *testing.T) {
	need(t)
	t.Parallel()
	// A dir the test user can write to, so only taproot's path handling
	// (not file permissions) keeps the layer out of it.
	esc := testDir(t, "layouts")
	hostTarget := filepath.Join(esc, "escaped")
	hostFile := filepath.Join(esc, "hostfile")
	if err := os.WriteFile(hostFile, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(hostFile, h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		entries []ib.Entry
		mustErr bool
		code    int // exit status when it fails
	}{
		{"symlink to root", []ib.Entry{ib.Symlink("evil", "/"), ib.File("evil"+hostTarget, "pwned\n")}, false, 2},
		{"symlink dotdot", []ib.Entry{ib.Symlink("evil", "../../../../../../../../"), ib.File("evil"+hostTarget, "pwned\n")}, false, 2},
		{"dotdot name", []ib.Entry{ib.File("../../../../../../../.."+hostTarget, "pwned\n")}, false, 2},
		{"hardlink outside", []ib.Entry{ib.Hardlink("stolen", "../../../../../../../.."+hostFile)}, true, 2},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, c.name), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushImage(t, fmt.Sprintf("hostile-%d", i), busyboxImage(layer(c.entries...)))
			store := newStore(t)
			id := fmt.Sprintf("hostile%d", i)
			r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, id)
			if exists(hostTarget) {
				t.Fatalf("layer wrote %s on the host", hostTarget)
			}
			if got := readFile(t, hostFile); got != "host secret\n" {
				t.Fatalf("host file changed: %q", got)
			}
			if c.mustErr || r.code != 0 {
				failsWithCode(t, store, r, id, "", c.code)
			}
		})
	}
}

// ---- raw images: tars written header by header, so that a test can say
// exactly what an attacker would (absolute names, device nodes, duplicate
// entries, huge PAX records, trailing garbage), and configs whose diffIDs lie.

type tarEnt struct {
	hdr  tar.Header
	body []byte
}

var rawMTime = time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)

func tReg(name, body string) tarEnt {
	return tarEnt{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: rawMTime, Format: tar.FormatPAX}, []byte(body)}
}
func tDir(name string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: rawMTime, Format: tar.FormatPAX}}
}
func tSym(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: rawMTime, Format: tar.FormatPAX}}
}
func tLink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: rawMTime, Format: tar.FormatPAX}}
}
func tDev(name string, typ byte, major, minor int64) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor, ModTime: rawMTime, Format: tar.FormatPAX}}
}

// tPAXBomb is a PAX extended header of size bytes (archive/tar's writer
// refuses to write one over 1 MiB, so the header block is made by hand).
func tPAXBomb(size int) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: 'X' /* marker for rawTar */, Size: int64(size)}}
}

func paxBombBytes(size int) []byte {
	body := rawtar.PAXRecord("comment", strings.Repeat("A", size))
	return append(rawtar.Header("PaxHeaders/p", 'x', int64(len(body)), rawMTime), rawtar.Pad([]byte(body))...)
}

func (e tarEnt) owner(uid, gid int) tarEnt { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
func (e tarEnt) mode(m int64) tarEnt       { e.hdr.Mode = m; return e }
func (e tarEnt) pax(k, v string) tarEnt {
	recs := map[string]string{}
	for a, b := range e.hdr.PAXRecords {
		recs[a] = b
	}
	recs[k] = v
	e.hdr.PAXRecords = recs
	return e
}

// rawTar writes the entries as a tar (end marker included) and appends tail.
func rawTar(t *testing.T, tail []byte, ents ...tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		if e.hdr.Typeflag == 'X' {
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			buf.Write(paxBombBytes(int(e.hdr.Size)))
			continue
		}
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), tail...)
}

func gzipBytes(t *testing.T, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawLayer is one layer blob: the uncompressed tar, and the blob as pushed
// (gzip of the tar unless blob is set: a truncated or otherwise broken blob).
type rawLayer struct {
	tar  []byte
	blob []byte
	// diffID, if set, is the tar's digest (for a tar too big to keep).
	diffID digest.Digest
}

func gzLayer(t *testing.T, tarBytes []byte) rawLayer {
	return rawLayer{tar: tarBytes, blob: gzipBytes(t, tarBytes)}
}

// buildRaw makes an image of the layers; fixDiffIDs may change the diffIDs
// the config claims.
func buildRaw(t *testing.T, layers []rawLayer, fixDiffIDs func([]digest.Digest)) ib.Built {
	t.Helper()
	var b ib.Built
	var diffIDs []digest.Digest
	for _, l := range layers {
		blob := ib.Blob{Data: l.blob, Digest: digest.FromBytes(l.blob), DiffID: digest.FromBytes(l.tar), MediaType: v1.MediaTypeImageLayerGzip}
		if l.diffID != "" {
			blob.DiffID = l.diffID
		}
		b.Layers = append(b.Layers, blob)
		diffIDs = append(diffIDs, blob.DiffID)
		b.Manifest.Layers = append(b.Manifest.Layers, v1.Descriptor{MediaType: blob.MediaType, Digest: blob.Digest, Size: int64(len(blob.Data))})
	}
	if fixDiffIDs != nil {
		fixDiffIDs(diffIDs)
	}
	created := rawMTime
	cfg := v1.Image{
		Created:  &created,
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		Config:   v1.ImageConfig{Env: []string{"PATH=/bin"}, WorkingDir: "/"},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	var err error
	if b.ConfigBytes, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	b.ConfigDigest = digest.FromBytes(b.ConfigBytes)
	b.Manifest.Versioned = specs.Versioned{SchemaVersion: 2}
	b.Manifest.MediaType = v1.MediaTypeImageManifest
	b.Manifest.Config = v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: b.ConfigDigest, Size: int64(len(b.ConfigBytes))}
	if b.ManifestBytes, err = json.Marshal(b.Manifest); err != nil {
		t.Fatal(err)
	}
	b.ManifestDigest = digest.FromBytes(b.ManifestBytes)
	return b
}

// pushRaw pushes the layers as acceptance/<name>:latest and returns the
// reference through registry (h.registry or a fault proxy in front of it).
func pushRaw(t *testing.T, name, registry string, b ib.Built) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ib.Push(ctx, b, h.registry, "acceptance/"+name); err != nil {
		t.Fatal(err)
	}
	return "docker://" + registry + "/acceptance/" + name + ":latest"
}

// goodImage is a small valid image: what "the next create works" uses.
func goodImage(t *testing.T) ib.Built {
	return buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, tDir("etc"), tReg("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"), tReg("etc/group", "root:x:0:\n"), tReg("good", "good\n")))}, nil)
}

// ---- what every hostile case asserts

// sentinel is a tree the test user could write to, outside the store.
// Hostile layers aim at it; it must not change at all.
type sentinel struct {
	dir  string
	snap map[string]string
}

func newSentinel(t *testing.T) *sentinel {
	t.Helper()
	s := &sentinel{dir: testDir(t, "sentinels")}
	for _, d := range []string{"sub", "sub/deeper"} {
		if err := mkdirOwned(filepath.Join(s.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"victim", "sub/victim", "sub/deeper/victim"} {
		p := filepath.Join(s.dir, f)
		if err := os.WriteFile(p, []byte("sentinel "+f+"\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, h.uid, h.gid); err != nil {
			t.Fatal(err)
		}
	}
	// World-writable, so even a process running as a sub-UID could write.
	if err := os.Chmod(s.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	s.snap = snapshotTree(t, s.dir)
	return s
}

// snapshotTree records every path's type, mode, owner, size, content,
// link target and xattrs.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d", st.Mode, st.Uid, st.Gid, st.Size)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, _ := os.ReadFile(p)
			desc += " content=" + string(data)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			desc += " target=" + target
		}
		if buf := make([]byte, 4096); true {
			if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
				desc += " xattrs=" + strings.ReplaceAll(string(buf[:n]), "\x00", ",")
			}
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *sentinel) assertUnchanged(t *testing.T) {
	t.Helper()
	now := snapshotTree(t, s.dir)
	var diffs []string
	for p, d := range now {
		if s.snap[p] != d {
			diffs = append(diffs, fmt.Sprintf("%s: was %q, now %q", p, s.snap[p], d))
		}
	}
	for p, d := range s.snap {
		if _, ok := now[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: removed (was %q)", p, d))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("the layer changed the host outside the store:\n%s", strings.Join(diffs, "\n"))
	}
}

// rootOwned lists paths under dir owned by host uid or gid 0 (find copes
// with trees deeper than PATH_MAX).
func rootOwned(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("find", dir, "(", "-uid", "0", "-o", "-gid", "0", ")", "-print").CombinedOutput()
	if err != nil {
		t.Fatalf("find %s: %v\n%s", dir, err, out)
	}
	return lines(string(out))
}

// storeSound asserts what must hold after any create, failed or not:
// nothing owned by host root, no tmp debris, no image dir of a failed id,
// no layer dir of the diffIDs in absent, and `taproot check` healthy.
func storeSound(t *testing.T, store string, absent ...digest.Digest) {
	t.Helper()
	if !exists(store) {
		return
	}
	if ro := rootOwned(t, store); len(ro) > 0 {
		t.Errorf("files in the store owned by host root: %v", ro)
	}
	if d := dirEntries(t, filepath.Join(store, "tmp")); len(d) != 0 {
		t.Errorf("tmp/ debris: %v", d)
	}
	for _, d := range absent {
		if exists(filepath.Join(store, "layers", d.Encoded())) {
			t.Errorf("layer %s was published", d)
		}
	}
	r := taproot(t, store, "check")
	if r.code != 0 {
		t.Errorf("taproot check after the create is not healthy:\n%s", r)
	}
}

// nextCreateWorks creates the good image in the store and checks its content.
func nextCreateWorks(t *testing.T, store, ref string) {
	t.Helper()
	id := fmt.Sprintf("good%d", seq.Add(1))
	frag := create(t, store, ref, id)
	var lower string
	for _, m := range frag.Mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				lower = strings.Split(v, ":")[0]
			}
		}
	}
	if lower == "" {
		t.Fatalf("no lowerdir in the fragment: %+v", frag.Mounts)
	}
	if got := readFile(t, filepath.Join(lower, "good")); got != "good\n" {
		t.Errorf("good image: /good is %q", got)
	}
}

// failsWith asserts a clean failure whose one stderr line contains want.
func failsWith(t *testing.T, store string, r result, id, want string) {
	t.Helper()
	failsCleanly(t, store, r, id)
	if want != "" && !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(want)) {
		t.Errorf("stderr should mention %q:\n%s", want, r.stderr)
	}
}

// failsWithCode is failsWith that also wants the exit status code (the
// class table in docs/troubleshooting.md): a failure inside the worker keeps
// its class across the process, so a daemon can tell a hostile image (2)
// from a bound or a full disk (6) or a cut stream (5).
func failsWithCode(t *testing.T, store string, r result, id, want string, code int) {
	t.Helper()
	failsWith(t, store, r, id, want)
	if r.code != code {
		t.Errorf("exit %d, want %d:\n%s", r.code, code, r)
	}
}

// layerPath is where a file of the image's top layer landed.
func topLayerPath(store string, b ib.Built, rel string) string {
	return filepath.Join(layerDir(store, b.Layers[len(b.Layers)-1].DiffID), rel)
}

// TestHostileImages drives `taproot create` with layers an attacker wrote.
// Each case either fails with one clear line, or succeeds and puts the
// content where it belongs (check says what). In every case: the sentinel
// tree outside the store is unchanged, nothing in the store is owned by
// host root, no partial layer or image or tmp debris is left, check is
// healthy and the next good create works.
func TestHostileImages(t *testing.T) {
	need(t)
	t.Parallel()
	goodRef := pushRaw(t, "hostile-good", h.registry, goodImage(t))
	long := strings.Repeat("n", 300)
	type tc struct {
		name string
		// layers returns the image's layers; sen is the sentinel dir.
		layers func(t *testing.T, sen string) [][]tarEnt
		tail   []byte // appended to the last layer's tar
		// "" = must succeed; else the create must fail with this in stderr
		// ("*" = fail, any message) and exit code.
		wantErr string
		code    int
		// okOrErr: either outcome is fine (the checks below still apply).
		okOrErr bool
		// check runs after a successful create.
		check  func(t *testing.T, store string, b ib.Built, r result, sen string)
		config string
	}
	one := func(ents ...tarEnt) func(*testing.T, string) [][]tarEnt {
		return func(*testing.T, string) [][]tarEnt { return [][]tarEnt{ents} }
	}
	rel := func(sen string) string { return "../../../../../../../../../../.." + sen }
	cases := []tc{
		{name: "absolute name", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tReg(sen+"/victim", "pwned\n"), tReg(sen+"/new", "pwned\n")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			// Leading "/" is stripped: the file lands inside the layer.
			if got := readFile(t, topLayerPath(store, b, strings.TrimPrefix(sen, "/")+"/new")); got != "pwned\n" {
				t.Errorf("%s/new inside the layer: %q", sen, got)
			}
		}},
		{name: "dotdot name", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tReg(rel(sen)+"/victim", "pwned\n")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "dotdot inside name", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tDir("a"), tReg("a/../../../../../../../../../../.."+sen+"/new", "pwned\n")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "symlink dir then file through it", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen), tReg("esc/new", "pwned\n"), tReg("esc/victim", "pwned\n")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "relative symlink then file through it", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", rel(sen)), tReg("esc/sub/victim", "pwned\n")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "symlink across layers", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen)}, {tDir("esc"), tReg("esc/new", "pwned\n")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			// Overlay form: the upper layer's esc/ is its own dir.
			if got := readFile(t, topLayerPath(store, b, "esc/new")); got != "pwned\n" {
				t.Errorf("esc/new in the top layer: %q", got)
			}
		}},
		{name: "symlink across layers without dir entry", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen)}, {tReg("esc/victim", "pwned\n")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			if got := readFile(t, topLayerPath(store, b, "esc/victim")); got != "pwned\n" {
				t.Errorf("esc/victim in the top layer: %q", got)
			}
		}},
		{name: "symlink replaced by dir in one layer", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen), tDir("esc"), tReg("esc/new", "ok\n")}}
		}, okOrErr: true},
		{name: "hardlink to absolute host file", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tLink("stolen", sen+"/victim")}}
		}, wantErr: "*", code: 2},
		{name: "hardlink dotdot", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tLink("stolen", rel(sen)+"/victim")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "hardlink through symlink", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen), tLink("stolen", "esc/victim")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "hardlink to symlink to host", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen+"/victim"), tLink("stolen", "esc")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			// A hardlink to a symlink is a second symlink, never the target.
			fi, err := os.Lstat(topLayerPath(store, b, "stolen"))
			if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("stolen should be a symlink: %v %v", fi, err)
			}
		}},
		{name: "whiteout with dotdot", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tReg(rel(sen)+"/.wh.victim", "")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "whiteout through symlink", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen)}, {tReg("esc/.wh.victim", "")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			// In overlay form the whiteout is a 0:0 char device in the layer.
			var st unix.Stat_t
			if err := unix.Lstat(topLayerPath(store, b, "esc/victim"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("esc/victim should be a whiteout device: %+v %v", st, err)
			}
		}},
		{name: "opaque through symlink in one layer", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tSym("esc", sen), tReg("esc/.wh..wh..opq", "")}}
		}, wantErr: "unsafe path", code: 2},
		{name: "opaque at root and twice", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tReg(".wh..wh..opq", ""), tDir("d"), tReg("d/.wh..wh..opq", ""), tReg("d/.wh..wh..opq", ""), tReg("d/keep", "k\n")}}
		}, okOrErr: true, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(topLayerPath(store, b, "d"), "user.overlay.opaque", buf)
			if err != nil || string(buf[:n]) != "y" {
				t.Errorf("d should be opaque: %q %v", buf[:n], err)
			}
		}},
		{name: "opaque marker as a directory", layers: func(t *testing.T, sen string) [][]tarEnt {
			return [][]tarEnt{{tDir("d"), tDir("d/.wh..wh..opq"), tReg("d/.wh..wh..opq/x", "x\n")}}
		}, okOrErr: true},
		{name: "whiteout of missing path", layers: one(tReg(".wh.nothing-here", ""), tDir("a"), tReg("a/.wh.nope", ""), tReg("a/file", "f\n")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				var st unix.Stat_t
				if err := unix.Lstat(topLayerPath(store, b, "nothing-here"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
					t.Errorf("nothing-here should be a whiteout device: %v", err)
				}
			}},
		{name: "whiteout of the root", layers: one(tReg(".wh.", "")), okOrErr: true},
		{name: "device nodes rootless", layers: one(tDev("dev-null", tar.TypeChar, 1, 3), tDev("dev-sda", tar.TypeBlock, 8, 0), tReg("after", "a\n")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				if exists(topLayerPath(store, b, "dev-null")) || exists(topLayerPath(store, b, "dev-sda")) {
					t.Error("device nodes were created")
				}
				if !exists(topLayerPath(store, b, "after")) {
					t.Error("the entry after the devices is missing")
				}
				if !strings.Contains(r.stderr, "device") {
					t.Errorf("want a warning about skipped devices on stderr:\n%s", r.stderr)
				}
			}},
		{name: "uid outside mapping", layers: one(tReg("f", "x\n").owner(70000, 0)), wantErr: "mapping", code: 2},
		{name: "gid outside mapping", layers: one(tReg("f", "x\n").owner(0, 4000000)), wantErr: "mapping", code: 2},
		{name: "setuid root file", layers: one(tReg("suid", "#!/bin/sh\n").mode(0o4755), tReg("sgid", "x").mode(0o2755).owner(0, 0), tDir("sticky").mode(0o1777)),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				var st unix.Stat_t
				if err := unix.Lstat(topLayerPath(store, b, "suid"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != uint32(h.uid) || st.Gid != uint32(h.gid) {
					t.Errorf("setuid-root file owned by %d:%d, want the mapped root %d:%d", st.Uid, st.Gid, h.uid, h.gid)
				}
				if st.Mode&unix.S_ISUID == 0 {
					t.Errorf("setuid bit lost: %o", st.Mode)
				}
			}},
		{name: "very deep path", layers: func(t *testing.T, sen string) [][]tarEnt {
			var ents []tarEnt
			p := ""
			for i := 0; i < 1100; i++ { // 4400 bytes: beyond PATH_MAX
				p += "dep/"
				ents = append(ents, tDir(p))
			}
			return [][]tarEnt{append(ents, tReg(p+"leaf", "deep\n"))}
		}, okOrErr: true},
		{name: "very long name", layers: one(tReg(long, "x\n")), wantErr: "file name too long", code: 2},
		{name: "very long path", layers: one(tReg(strings.Repeat("abcdefgh/", 500)+"f", "x\n")), okOrErr: true},
		{name: "file then dir", layers: one(tReg("x", "first\n"), tDir("x"), tReg("x/in", "in\n")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				if got := readFile(t, topLayerPath(store, b, "x/in")); got != "in\n" {
					t.Errorf("x/in: %q", got)
				}
			}},
		{name: "dir then file", layers: one(tDir("y"), tReg("y/in", "in\n"), tReg("y", "second\n")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				if got := readFile(t, topLayerPath(store, b, "y")); got != "second\n" {
					t.Errorf("y: %q", got)
				}
			}},
		{name: "file twice", layers: one(tReg("z", "first\n"), tReg("z", "second\n")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				if got := readFile(t, topLayerPath(store, b, "z")); got != "second\n" {
					t.Errorf("z: %q", got)
				}
			}},
		{name: "huge PAX header", layers: one(tPAXBomb(4<<20), tReg("p", "x\n")), wantErr: "too long", code: 2},
		{name: "xattr bomb", layers: func(t *testing.T, sen string) [][]tarEnt {
			e := tReg("x", "x\n")
			for i := 0; i < 200; i++ {
				e = e.pax(fmt.Sprintf("SCHILY.xattr.user.bomb%03d", i), strings.Repeat("v", 1000))
			}
			return [][]tarEnt{{e}}
		}, check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
			if n, _ := unix.Llistxattr(topLayerPath(store, b, "x"), nil); n > 0 {
				t.Errorf("%d bytes of xattr names kept on the bomb", n)
			}
			if !strings.Contains(r.stderr, "xattr") {
				t.Errorf("want a warning about dropped xattrs:\n%s", r.stderr)
			}
		}},
		{name: "overlay xattr injection", layers: one(tDir("d").pax("SCHILY.xattr.user.overlay.opaque", "y").pax("SCHILY.xattr.trusted.overlay.redirect", "/etc")),
			check: func(t *testing.T, store string, b ib.Built, r result, sen string) {
				if n, err := unix.Lgetxattr(topLayerPath(store, b, "d"), "user.overlay.opaque", make([]byte, 8)); err == nil {
					t.Errorf("user.overlay.opaque injected (%d bytes)", n)
				}
			}},
		{name: "gzip bomb", config: "[create]\nmax_layer_bytes = 8388608\n",
			layers: one(tReg("bomb", string(make([]byte, 64<<20)))), wantErr: "limit", code: 6},
		{name: "padding bomb", config: "[create]\nmax_layer_bytes = 8388608\n",
			layers: one(tReg("small", "s\n")), tail: make([]byte, 64<<20), wantErr: "limit", code: 6},
		{name: "truncated tar", layers: one(tReg("t", strings.Repeat("t", 5000))), tail: []byte("TRUNCATE"), wantErr: "EOF", code: 5},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			sen := newSentinel(t)
			var layers []rawLayer
			groups := c.layers(t, sen.dir)
			for j, ents := range groups {
				var tail []byte
				if j == len(groups)-1 && string(c.tail) != "TRUNCATE" {
					tail = c.tail
				}
				raw := rawTar(t, tail, ents...)
				if string(c.tail) == "TRUNCATE" && j == len(groups)-1 {
					raw = raw[:len(raw)-2048] // cut in the last entry's body
				}
				layers = append(layers, gzLayer(t, raw))
			}
			b := buildRaw(t, layers, nil)
			ref := pushRaw(t, fmt.Sprintf("hostile-raw-%d", i), h.registry, b)
			store := newStore(t)
			storeParent := filepath.Dir(store)
			args := []string{"create", "--insecure-registry", h.registry}
			if c.config != "" {
				args = append([]string{"--config", writeConfig(t, c.config)}, args...)
			}
			id := fmt.Sprintf("hostile%d", i)
			r := taproot(t, store, append(args, ref, id)...)
			sen.assertUnchanged(t)
			if got := dirEntries(t, storeParent); len(got) != 1 || got[0] != "store" {
				t.Errorf("the store's parent dir changed: %v", got)
			}
			top := b.Layers[len(b.Layers)-1].DiffID
			switch {
			case r.code != 0 && c.wantErr != "":
				want := c.wantErr
				if want == "*" {
					want = ""
				}
				failsWithCode(t, store, r, id, want, c.code)
				storeSound(t, store, top)
			case r.code != 0 && c.okOrErr:
				failsWith(t, store, r, id, "")
				storeSound(t, store, top)
			case r.code != 0:
				t.Fatalf("create should succeed:\n%s", r)
			case c.wantErr != "":
				t.Fatalf("create should fail with %q:\n%s", c.wantErr, r)
			default:
				t.Logf("created; stderr: %s", strings.TrimSpace(r.stderr))
				if c.check != nil {
					c.check(t, store, b, r, sen.dir)
				}
				storeSound(t, store)
			}
			nextCreateWorks(t, store, goodRef)
		})
	}
}

// TestDiffIDMismatch: a config whose diffID does not match the layer, and
// a blob that is cut short in the registry (its digest matches what was
// pushed, so only unpacking can notice).
func TestCorruptImages(t *testing.T) {
	need(t)
	t.Parallel()
	goodRef := pushRaw(t, "corrupt-good", h.registry, goodImage(t))
	content := rawTar(t, nil, tReg("c", strings.Repeat("c", 10000)))
	full := gzipBytes(t, content)
	cases := []struct {
		name  string
		layer rawLayer
		fix   func([]digest.Digest)
		want  string
		code  int
	}{
		{"diffID mismatch", rawLayer{tar: content, blob: full}, func(d []digest.Digest) { d[0] = digest.FromString("not this layer") }, "digest mismatch", 2},
		{"truncated gzip blob", rawLayer{tar: content, blob: full[:len(full)/2]}, nil, "unexpected EOF", 5},
		{"garbage blob", rawLayer{tar: content, blob: []byte("this is not a tar, nor gzip, nor zstd, just garbage bytes")}, nil, "*", 5},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			b := buildRaw(t, []rawLayer{c.layer}, c.fix)
			ref := pushRaw(t, fmt.Sprintf("corrupt-%d", i), h.registry, b)
			store := newStore(t)
			id := fmt.Sprintf("corrupt%d", i)
			r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, id)
			want := c.want
			if want == "*" {
				want = ""
			}
			failsWithCode(t, store, r, id, want, c.code)
			storeSound(t, store, b.Layers[0].DiffID)
			nextCreateWorks(t, store, goodRef)
		})
	}
}

// TestNoSpace unpacks an image bigger than the filesystem of the store.
func TestNoSpace(t *testing.T) {
	need(t)
	t.Parallel()
	mnt := testDir(t, "stores")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the store: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	if err := os.Chown(mnt, h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	// Whiteouts and opaque dirs need user xattrs on the store's fs.
	probe := filepath.Join(mnt, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(probe, "user.taproot.probe", []byte("y"), 0); err != nil {
		t.Fatalf("tmpfs on this kernel should support user xattrs: %v", err)
	}
	os.Remove(probe)

	goodRef := pushRaw(t, "nospace-good", h.registry, goodImage(t))
	big := make([]byte, 12<<20) // random: gzip cannot shrink it below the fs size
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	b := buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, tReg("big", string(big))))}, nil)
	ref := pushRaw(t, "nospace-big", h.registry, b)
	store := filepath.Join(mnt, "store")
	r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, "big")
	failsWithCode(t, store, r, "big", "no space left on device", 6)
	storeSound(t, store, b.Layers[0].DiffID)
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if used := (sfs.Blocks - sfs.Bfree) * uint64(sfs.Bsize); used > 1<<20 {
		t.Errorf("%d bytes still used on the store fs after the failed create", used)
	}
	nextCreateWorks(t, store, goodRef)
}

// ---- registry faults: a reverse proxy in front of the test registry that
// breaks chosen requests.

type faultProxy struct {
	addr string
	mu   sync.Mutex
	hits map[string]int // "GET /v2/…" → count
	// fault handles a request itself (and returns true) or lets it through.
	fault func(w http.ResponseWriter, r *http.Request, hit int) bool
}

func newFaultProxy(t *testing.T, fault func(w http.ResponseWriter, r *http.Request, hit int) bool) *faultProxy {
	t.Helper()
	p := &faultProxy{hits: map[string]int{}, fault: fault}
	target, _ := url.Parse("http://" + h.registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		p.mu.Lock()
		p.hits[key]++
		n := p.hits[key]
		p.mu.Unlock()
		if p.fault != nil && p.fault(w, r, n) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *faultProxy) count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[method+" "+path]
}

func isBlob(r *http.Request, d digest.Digest) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String())
}

// TestRegistryFaults: 500s, hangs, slow and broken bodies, with the
// timeout and retries set in the config.
func TestRegistryFaults(t *testing.T) {
	need(t)
	t.Parallel()
	content := make([]byte, 256<<10)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	b := buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, tReg("etc/passwd", "root:x:0:0::/:/bin/sh\n"), tReg("good", "good\n"), tReg("payload", string(content))))}, nil)
	pushRaw(t, "faults", h.registry, b)
	blob := b.Layers[0].Digest
	blobPath := "/v2/acceptance/faults/blobs/" + blob.String()
	manifestPath := "/v2/acceptance/faults/manifests/latest"

	// A valid layer, but not the one the manifest names.
	replaced := gzipBytes(t, rawTar(t, nil, tReg("good", "evil\n")))
	type tc struct {
		name   string
		config string
		fault  func(w http.ResponseWriter, r *http.Request, hit int) bool
		want   string // "" = must succeed
		// maxDur bounds the whole create (timeouts must fire).
		maxDur time.Duration
		after  func(t *testing.T, p *faultProxy)
	}
	fail500 := func(w http.ResponseWriter, r *http.Request, hit int) bool {
		if isBlob(r, blob) {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return true
		}
		return false
	}
	// blobHead answers a blob GET with the real headers and 200; the
	// caller sends what it likes of the body it returns.
	blobHead := func(w http.ResponseWriter) []byte {
		data := b.Layers[0].Data
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Docker-Content-Digest", blob.String())
		w.WriteHeader(http.StatusOK)
		return data
	}
	cases := []tc{
		{name: "blob 500 with retries", config: "[registry]\nretries = 2\n", fault: fail500, want: "500",
			after: func(t *testing.T, p *faultProxy) {
				if n := p.count("GET", blobPath); n != 3 {
					t.Errorf("blob GETs: %d, want 3 (1 + 2 retries)", n)
				}
			}},
		{name: "blob 500 without retries", config: "[registry]\nretries = -1\n", fault: fail500, want: "500",
			after: func(t *testing.T, p *faultProxy) {
				if n := p.count("GET", blobPath); n != 1 {
					t.Errorf("blob GETs: %d, want 1 (retries = -1)", n)
				}
			}},
		{name: "transient 500 then ok", config: "[registry]\nretries = 3\n",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if (isBlob(r, blob) || r.URL.Path == manifestPath) && hit <= 2 {
					http.Error(w, "injected failure", http.StatusServiceUnavailable)
					return true
				}
				return false
			},
			after: func(t *testing.T, p *faultProxy) {
				if n := p.count("GET", blobPath); n != 3 {
					t.Errorf("blob GETs: %d, want 3 (2 failures, then success)", n)
				}
			}},
		{name: "manifest hangs", config: "[registry]\ntimeout = \"2s\"\nretries = 1\n", maxDur: 30 * time.Second, want: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if strings.Contains(r.URL.Path, "/manifests/") {
					<-r.Context().Done()
					return true
				}
				return false
			}},
		{name: "blob hangs before headers", config: "[registry]\ntimeout = \"2s\"\nretries = 1\n", maxDur: 30 * time.Second, want: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if isBlob(r, blob) {
					<-r.Context().Done()
					return true
				}
				return false
			}},
		{name: "blob stalls mid-body", config: "[registry]\ntimeout = \"2s\"\nretries = 1\n", maxDur: 40 * time.Second, want: "stalled",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if !isBlob(r, blob) {
					return false
				}
				data := blobHead(w)
				w.Write(data[:len(data)/3])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return true
			}},
		{name: "blob slow but steady", config: "[registry]\ntimeout = \"1s\"\n", maxDur: 40 * time.Second,
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if !isBlob(r, blob) {
					return false
				}
				data := blobHead(w)
				// 8 chunks, 400 ms apart: 3.2 s in all, more than the
				// timeout, but never a stall of 1 s.
				step := len(data)/8 + 1
				for i := 0; i < len(data); i += step {
					time.Sleep(400 * time.Millisecond)
					w.Write(data[i:min(i+step, len(data))])
					w.(http.Flusher).Flush()
				}
				return true
			}},
		{name: "blob body cut short", config: "[registry]\nretries = 1\n", want: "",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if !isBlob(r, blob) {
					return false
				}
				data := b.Layers[0].Data
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.WriteHeader(http.StatusOK)
				w.Write(data[:len(data)/2])
				w.(http.Flusher).Flush()
				// Drop the connection mid-body.
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			}},
		{name: "blob corrupted", want: "gzip",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if !isBlob(r, blob) {
					return false
				}
				data := append([]byte(nil), b.Layers[0].Data...)
				data[len(data)/2] ^= 0xff
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.WriteHeader(http.StatusOK)
				w.Write(data)
				return true
			}},
		{name: "blob replaced", want: "digest mismatch",
			fault: func(w http.ResponseWriter, r *http.Request, hit int) bool {
				if !isBlob(r, blob) {
					return false
				}
				data := replaced
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.WriteHeader(http.StatusOK)
				w.Write(data)
				return true
			}},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			p := newFaultProxy(t, c.fault)
			store := newStore(t)
			args := []string{"create", "--insecure-registry", p.addr}
			if c.config != "" {
				args = append([]string{"--config", writeConfig(t, c.config)}, args...)
			}
			id := fmt.Sprintf("fault%d", i)
			ref := "docker://" + p.addr + "/acceptance/faults:latest"
			r := taproot(t, store, append(args, ref, id)...)
			if c.maxDur > 0 && r.dur > c.maxDur {
				t.Errorf("create took %v, want under %v: the timeout did not fire", r.dur, c.maxDur)
			}
			if c.want == "" && c.name != "blob body cut short" {
				if r.code != 0 {
					t.Fatalf("create should succeed:\n%s", r)
				}
				storeSound(t, store)
			} else if r.code == 0 && c.name == "blob body cut short" {
				t.Fatalf("create succeeded though every blob response was cut short:\n%s", r)
			} else {
				failsWith(t, store, r, id, c.want)
				storeSound(t, store, b.Layers[0].DiffID)
			}
			if c.after != nil {
				c.after(t, p)
			}
			// The registry itself, without the faults: the next create works.
			nextCreateWorks(t, store, "docker://"+h.registry+"/acceptance/faults:latest")
		})
	}
}
