package acceptance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/taproot-dev/taproot/internal/rawtar"
)

const sparseApparent = 64 << 30 // 64 GiB

// sparseLayerTar writes, with GNU tar (the real writer of these formats),
// a tar of sparse/<name>.img for each format: 64 GiB apparent, data at
// 1 GiB ("hello at 1G") and in the last block ("the end").
func sparseLayerTar(t *testing.T, format []string, name string) []byte {
	t.Helper()
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("GNU tar is not installed: it writes the sparse layer")
	}
	src := testDir(t, "layouts")
	if err := os.Mkdir(filepath.Join(src, "sparse"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, "sparse", name+".img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello at 1G\n"), 1<<30); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("the end\n"), sparseApparent-8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := append([]string{"--sparse", "--owner=0", "--group=0", "--numeric-owner", "-cf", "-", "-C", src}, format...)
	out, err := exec.Command(gnutar, append(args, "sparse")...).Output()
	if err != nil {
		t.Fatalf("tar %v: %v", args, err)
	}
	if len(out) > 1<<20 {
		t.Fatalf("GNU tar wrote %d bytes: the file is not sparse in the tar", len(out))
	}
	return out
}

// duBytes is the real disk usage of dir (blocks, not apparent sizes).
func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-B1", dir).Output()
	if err != nil {
		t.Fatalf("du %s: %v", dir, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Sparse files in GNU (old 'S') and PAX 1.0 format: the container sees the
// apparent size and the content, the store spends only the data blocks,
// and check (which rebuilds each layer's exact tar) passes.
func TestSparseImage(t *testing.T) {
	need(t)
	t.Parallel()
	base, err := h.baseLayer.Tar()
	if err != nil {
		t.Fatal(err)
	}
	b := buildRaw(t, []rawLayer{
		gzLayer(t, base),
		gzLayer(t, sparseLayerTar(t, []string{"--format=gnu"}, "gnu")),
		gzLayer(t, sparseLayerTar(t, []string{"--format=pax", "--sparse-version=1.0"}, "pax")),
	}, nil)
	ref := pushRaw(t, "sparse", h.registry, b)
	store := newStore(t)
	frag := create(t, store, ref, "sparse")
	if n := duBytes(t, store); n > 16<<20 {
		t.Errorf("the store uses %d bytes for busybox and two sparse files", n)
	}
	for i, name := range []string{"gnu", "pax"} {
		p := filepath.Join(layerDir(store, b.Layers[1+i].DiffID), "sparse", name+".img")
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != sparseApparent || st.Blocks*512 > 1<<20 {
			t.Errorf("%s: apparent %d, allocated %d bytes", p, st.Size, st.Blocks*512)
		}
		script := fmt.Sprintf("f=/sparse/%s.img; stat -c %%s $f; dd if=$f bs=4096 skip=%d count=1 2>/dev/null | head -c 12; dd if=$f bs=4096 skip=%d 2>/dev/null | tail -c 8; dd if=$f bs=4096 skip=1000 count=1 2>/dev/null | tr -d '\\000' | wc -c",
			name, (1<<30)/4096, sparseApparent/4096-1)
		got := sh(t, store, frag, script)
		want := fmt.Sprintf("%d\nhello at 1G\nthe end\n0\n", int64(sparseApparent))
		// busybox wc pads its count with spaces.
		if ls := lines(got); len(ls) != 4 || strings.Join(ls[:3], "\n")+"\n"+strings.TrimSpace(ls[3])+"\n" != want {
			t.Errorf("%s in the container:\n%q\nwant\n%q", name, got, want)
		}
	}
	storeSound(t, store)
}

// sparseHead is the headers of a GNU sparse 0.1 entry (archive/tar will
// not write GNU.sparse records) whose map and payload are n bytes of data
// from offset 0: declared sparse, all dense.
func sparseHead(name string, n int64) []byte {
	return rawtar.SparsePAX01Head(name, n, [][2]int64{{0, n}}, n, rawMTime)
}

// zeroBombLayer is a gzip layer: head, n zeros, padding, end marker; the
// diffID is computed while streaming (the tar is never held). BestSpeed:
// 824x on zeros, 1.3 s per GiB to make (BestCompression: 1028x, 15 s).
func zeroBombLayer(t *testing.T, head []byte, n int64) rawLayer {
	t.Helper()
	var blob bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&blob, gzip.BestSpeed)
	sum := sha256.New()
	w := io.MultiWriter(zw, sum)
	w.Write(head)
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zeros)) {
		w.Write(zeros[:min(left, int64(len(zeros)))])
	}
	w.Write(make([]byte, int(-n&511)+1024))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return rawLayer{blob: blob.Bytes(), diffID: digest.NewDigest(digest.SHA256, sum)}
}

// fileHeader is the tar header of a regular file of n bytes.
func fileHeader(t *testing.T, name string, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := tReg(name, "")
	e.hdr.Size = n
	if err := tar.NewWriter(&buf).WriteHeader(&e.hdr); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Bombs refused by the default bounds (no config): a gzip layer of 1 GiB
// of zeros, and a sparse entry that declares 1 GiB of data (all zeros).
// Each stops early and, after clean, the store's real usage is what it
// was before the create.
func TestBombsRefusedByDefault(t *testing.T) {
	need(t)
	t.Parallel()
	goodRef := pushRaw(t, "bomb-good", h.registry, goodImage(t))
	const size = 1 << 30
	cases := []struct {
		name  string
		layer rawLayer
	}{
		{"zero bomb", zeroBombLayer(t, fileHeader(t, "zeros", size), size)},
		{"sparse declared dense", zeroBombLayer(t, sparseHead("dense", size), size)},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			b := buildRaw(t, []rawLayer{c.layer}, nil)
			ref := pushRaw(t, fmt.Sprintf("bomb-%d", i), h.registry, b)
			store := newStore(t)
			create(t, store, goodRef, "good")
			before := duBytes(t, store)
			id := fmt.Sprintf("bomb%d", i)
			start := time.Now()
			r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, id)
			t.Logf("%s (%d bytes compressed, %d GiB uncompressed) refused in %v: %s", c.name, len(c.layer.blob), size>>30, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
			failsWithCode(t, store, r, id, "max_compression_ratio", 6)
			if !strings.Contains(r.stderr, b.Layers[0].DiffID.String()) {
				t.Errorf("the error does not name the layer %s:\n%s", b.Layers[0].DiffID, r.stderr)
			}
			if r := taproot(t, store, "clean"); r.code != 0 {
				t.Fatalf("clean:\n%s", r)
			}
			if after := duBytes(t, store); after > before+64<<10 {
				t.Errorf("the store uses %d bytes after the refused create and clean, %d before", after, before)
			}
			storeSound(t, store, b.Layers[0].DiffID)
		})
	}
}

// createRSS runs taproot create as the test user under /usr/bin/time and
// returns the peak RSS of taproot and its worker (wait4 reports the
// largest of a process and the children it reaped). Not measured with
// our own wait4: Go starts children with CLONE_VM, so until exec they
// share, and are charged, the test process's memory.
func createRSS(t *testing.T, store, ref, id string) (result, int64) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("GNU time is not installed (/usr/bin/time): it measures peak RSS")
	}
	out := filepath.Join(testDir(t, "layouts"), "rss")
	argv := append([]string{"/usr/bin/time", "-f", "%M", "-o", out},
		asUser(h.taproot, "--store", store, "create", "--insecure-registry", h.registry, ref, id)...)
	r := execute(t, 5*time.Minute, argv)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(string(b))
	kib, err := strconv.ParseInt(ls[len(ls)-1], 10, 64)
	if err != nil {
		t.Fatalf("/usr/bin/time wrote %q", b)
	}
	return r, kib << 10
}

func randomName(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// Peak memory of a create stays under 100 MiB on layers built to make the
// unpacker hold things: huge PAX headers, xattrs, long names, directories
// with long names (kept to the end for their times), many hardlinks.
// Random text keeps them under the compression-ratio bound.
func TestHostileMemory(t *testing.T) {
	need(t)
	t.Parallel()
	longPath := func() string {
		var parts []string
		for i := 0; i < 19; i++ {
			parts = append(parts, randomName(200))
		}
		return strings.Join(parts, "/")
	}
	cases := []struct {
		name string
		ents func() []tarEnt
	}{
		{"PAX headers", func() []tarEnt {
			var e []tarEnt
			for i := 0; i < 60; i++ {
				e = append(e, tReg(fmt.Sprintf("p%d", i), "x").pax("comment", randomName(1000<<10)))
			}
			return e
		}},
		{"xattrs", func() []tarEnt {
			var e []tarEnt
			for i := 0; i < 2000; i++ {
				f := tReg(fmt.Sprintf("x%d", i), "x")
				for j := 0; j < 60; j++ {
					f = f.pax(fmt.Sprintf("SCHILY.xattr.user.a%02d", j), randomName(1000))
				}
				e = append(e, f)
			}
			return e
		}},
		{"long names", func() []tarEnt {
			var e []tarEnt
			for i := 0; i < 10000; i++ {
				e = append(e, tReg(longPath(), ""))
			}
			return e
		}},
		{"long directory names", func() []tarEnt {
			var e []tarEnt
			// 15 MB of paths, under the 16 MiB the unpacker keeps.
			for i := 0; i < 4000; i++ {
				e = append(e, tDir(longPath()))
			}
			return e
		}},
		{"hardlinks", func() []tarEnt {
			// ext4 allows 65,000 links per inode: two targets.
			e := []tarEnt{tReg("t0", "shared\n"), tReg("t1", "shared\n")}
			for i := 0; i < 100000; i++ {
				e = append(e, tLink(fmt.Sprintf("l/%06d", i), fmt.Sprintf("t%d", i%2)))
			}
			return e
		}},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			b := buildRaw(t, []rawLayer{gzLayer(t, rawTar(t, nil, c.ents()...))}, nil)
			ref := pushRaw(t, fmt.Sprintf("memory-%d", i), h.registry, b)
			store := newStore(t)
			r, rss := createRSS(t, store, ref, "m")
			t.Logf("%s: %d compressed bytes, exit %d in %v, peak RSS %.1f MiB %s", c.name, len(b.Layers[0].Data), r.code, r.dur.Round(time.Millisecond), float64(rss)/(1<<20), strings.TrimSpace(r.stderr))
			if r.code != 0 {
				t.Errorf("create failed:\n%s", r)
			}
			if rss > 100<<20 {
				t.Errorf("peak RSS %d MiB", rss>>20)
			}
		})
	}
}

// max_image_bytes spans the layers of one create: two layers of 3 MiB under
// a 5 MiB bound fail, and once clean has run (a layer may have been
// published before the other hit the bound) the store is back as it was.
func TestImageBoundRefused(t *testing.T) {
	need(t)
	t.Parallel()
	goodRef := pushRaw(t, "imagebound-good", h.registry, goodImage(t))
	var layers []rawLayer
	for i := 0; i < 2; i++ {
		data := make([]byte, 3<<20)
		rand.Read(data)
		layers = append(layers, gzLayer(t, rawTar(t, nil, tReg(fmt.Sprintf("r%d", i), string(data)))))
	}
	b := buildRaw(t, layers, nil)
	ref := pushRaw(t, "imagebound", h.registry, b)
	store := newStore(t)
	create(t, store, goodRef, "good")
	before := duBytes(t, store)
	cfg := writeConfig(t, "[create]\nmax_image_bytes = 5242880\n")
	r := taproot(t, store, "--config", cfg, "create", "--insecure-registry", h.registry, ref, "big")
	failsWithCode(t, store, r, "big", "max_image_bytes", 6)
	if r := taproot(t, store, "clean"); r.code != 0 {
		t.Fatalf("clean:\n%s", r)
	}
	if after := duBytes(t, store); after > before+64<<10 {
		t.Errorf("the store uses %d bytes after the refused create and clean, %d before", after, before)
	}
	storeSound(t, store)
}
