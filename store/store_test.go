package store

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/flock"
	"github.com/taproot-dev/taproot/unpacker"
	"github.com/taproot-dev/taproot/worker"
)

// The test binary doubles as the user-namespace worker.
func TestMain(m *testing.M) {
	worker.Main()
	os.Exit(m.Run())
}

func testStore(t testing.TB) *Store {
	t.Helper()
	return testStoreWith(t, Options{})
}

// testStoreWith is testStore with opts (mapping and worker filled in).
func testStoreWith(t testing.TB, opts Options) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("store tests run the worker with a root-written mapping: run as root (make test does)")
	}
	// Container root maps to a plain unprivileged ID so the test sees
	// real shifting without needing sub-ID files.
	maps := []idmap.Mapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	dir := t.TempDir()
	// The namespace's root must be able to reach the store.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	opts.UIDMappings, opts.GIDMappings = maps, maps
	st, err := Open(context.Background(), filepath.Join(dir, "store"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type entry struct {
	name, body, link string
	typ              byte
	uid              int
}

func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Uid: e.uid, Gid: e.uid, Linkname: e.link}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

type fakeLayer struct {
	data  []byte
	opens atomic.Int32
}

func (f *fakeLayer) layer() Layer {
	sum := sha256.Sum256(f.data)
	d := digest.NewDigestFromBytes(digest.SHA256, sum[:])
	return Layer{BlobDigest: d, DiffID: d, Size: int64(len(f.data)), Open: func(context.Context) (io.ReadCloser, error) {
		f.opens.Add(1)
		return io.NopCloser(bytes.NewReader(f.data)), nil
	}}
}

func TestCreateSharesLayersAndDeletes(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	base := &fakeLayer{data: layerTar(t, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"}, entry{name: "home/app/f", body: "x", uid: 1000})}
	top := &fakeLayer{data: layerTar(t, entry{name: "etc/.wh.passwd", typ: tar.TypeReg})}
	rec, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{base.layer(), top.layer()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, CreateRequest{ID: "b", Layers: []Layer{base.layer()}}); err != nil {
		t.Fatal(err)
	}
	if n := base.opens.Load(); n != 1 {
		t.Fatalf("shared layer fetched %d times", n)
	}
	key, _ := layerKey(rec.Layers[0])
	fi, err := os.Lstat(filepath.Join(st.layerDir(key), "diff", "home", "app", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := statUID(fi); uid != 201000 {
		t.Fatalf("file owned by host uid %d, want 201000 (container 1000 shifted)", uid)
	}
	topKey, _ := layerKey(rec.Layers[1])
	wfi, err := os.Lstat(filepath.Join(st.layerDir(topKey), "diff", "etc", "passwd"))
	if err != nil || wfi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("whiteout not a char device: %v %v", wfi, err)
	}
	if plan, err := st.mountPlan(rec); err != nil || len(plan.Lowers) != 2 {
		t.Fatalf("lowers = %v, %v", plan.Lowers, err)
	}
	if _, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{base.layer()}}); !errors.Is(err, ErrImageExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a"); !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := os.Stat(st.layerDir(key)); err != nil {
		t.Fatal("shared layer removed by delete:", err)
	}
	left, _ := os.ReadDir(filepath.Join(st.Root(), "tmp"))
	if len(left) != 0 {
		t.Fatalf("tmp not empty: %v", left)
	}
}

func TestConcurrentCreatesFetchOnce(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "hello"})}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = st.Create(ctx, CreateRequest{ID: fmt.Sprintf("c%d", i), Layers: []Layer{l.layer()}})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := l.opens.Load(); n != 1 {
		t.Fatalf("layer fetched %d times by 6 concurrent creates", n)
	}
}

func TestBadLayerLeavesNothing(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "hello"})}
	bad := l.layer()
	bad.DiffID = digest.FromString("something else")
	bad.BlobDigest = bad.DiffID
	if _, err := st.Create(ctx, CreateRequest{ID: "x", Layers: []Layer{bad}}); err == nil {
		t.Fatal("digest mismatch accepted")
	}
	for _, d := range []string{"tmp", "images", "layers"} {
		left, _ := os.ReadDir(filepath.Join(st.Root(), d))
		if len(left) != 0 {
			t.Fatalf("%s not empty after a failed create: %v", d, left)
		}
	}
}

func TestManyLayersAreSquashed(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	var layers []Layer
	for i := 0; i < 160; i++ {
		l := &fakeLayer{data: layerTar(t, entry{name: fmt.Sprintf("f%03d", i), body: fmt.Sprint(i)}, entry{name: "same", body: fmt.Sprint(i)})}
		layers = append(layers, l.layer())
	}
	rec, err := st.Create(ctx, CreateRequest{ID: "many", Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := st.mountPlan(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Fits() {
		t.Fatalf("plan does not fit: %d lowers, %d bytes", len(plan.Lowers), len(plan.Data()))
	}
	if len(plan.Lowers) >= 160 {
		t.Fatalf("nothing squashed: %d lowers", len(plan.Lowers))
	}
	squashed := rec.Lowers[len(rec.Lowers)-1]
	diff := filepath.Join(st.layerDir(squashed), "diff")
	// The squashed layer holds the lowest layers' files, with the highest
	// of them winning for "same".
	n := 160 - (len(rec.Lowers) - 1)
	got, err := os.ReadFile(filepath.Join(diff, "same"))
	if err != nil || string(got) != fmt.Sprint(n-1) {
		t.Fatalf("squashed 'same' = %q, %v; want %d", got, err, n-1)
	}
	if _, err := os.Stat(filepath.Join(diff, "f000")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(diff, fmt.Sprintf("f%03d", n))); err == nil {
		t.Fatal("a kept layer's file is in the squashed layer")
	}
}

func TestDuplicatePathsAreUnpackedAndChecked(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	dirTwice := &fakeLayer{data: layerTar(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", body: "x"})}
	fileTwice := &fakeLayer{data: layerTar(t, entry{name: "f", body: "first"}, entry{name: "f", body: "second"})}
	dirThenFile := &fakeLayer{data: layerTar(t, entry{name: "y/", typ: tar.TypeDir}, entry{name: "y/in", body: "in"}, entry{name: "y", body: "file"})}
	rec, err := st.Create(ctx, CreateRequest{ID: "dup", Layers: []Layer{dirThenFile.layer(), dirTwice.layer(), fileTwice.layer()}})
	if err != nil {
		t.Fatal("layers that repeat a path:", err)
	}
	top, _ := layerKey(rec.Layers[2])
	got, err := os.ReadFile(filepath.Join(st.layerDir(top), "diff", "f"))
	if err != nil || string(got) != "second" {
		t.Fatalf("f = %q, %v; want the last entry's content", got, err)
	}
	// --quick too: the last entry of a path gives its size, and a file
	// that replaced a dir hides what the dir held.
	for _, quick := range []bool{false, true} {
		rep, err := st.Check(ctx, CheckOptions{Quick: quick})
		if err != nil || !rep.Healthy {
			t.Fatalf("check (quick %v) after duplicate paths: %+v, %v", quick, rep, err)
		}
	}
	// The file list is still checked for a layer whose bytes cannot be.
	os.WriteFile(filepath.Join(st.layerDir(top), "diff", "extra"), []byte("x"), 0o644)
	for _, quick := range []bool{false, true} {
		if rep, err := st.Check(ctx, CheckOptions{Quick: quick}); err != nil || rep.Healthy {
			t.Fatalf("check (quick %v) missed an extra file in an unverifiable layer: %+v, %v", quick, rep, err)
		}
	}
}

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, "web-1": true, "A.b_c-9": true, "0": true, strings.Repeat("x", 200): true,
		"": false, ".": false, "..": false, "-a": false, "_a": false, "a/b": false, "a b": false,
		"a\x00": false, "é": false, strings.Repeat("x", 201): false,
	} {
		if err := ValidateID(id); (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

// A layer is published as soon as it is unpacked, not when the whole image
// is: creates waiting on that layer alone need not wait for the others.
func TestLayersArePublishedOneByOne(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	first := &fakeLayer{data: layerTar(t, entry{name: "a", body: "a"})}
	second := &fakeLayer{data: layerTar(t, entry{name: "b", body: "b"})}
	l1, l2 := first.layer(), second.layer()
	key1, _ := layerKey(l1.DiffID)
	l2.Open = func(ctx context.Context) (io.ReadCloser, error) {
		for i := 0; i < 500; i++ {
			if st.layerExists(key1) {
				return io.NopCloser(bytes.NewReader(second.data)), nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil, errors.New("first layer still unpublished while the second downloads")
	}
	if _, err := st.Create(ctx, CreateRequest{ID: "x", Layers: []Layer{l1, l2}}); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableStoreIsRefused(t *testing.T) {
	st := testStore(t)
	parent := filepath.Dir(st.Root())
	os.Chmod(parent, 0o700)
	defer os.Chmod(parent, 0o755)
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	_, err := st.Create(context.Background(), CreateRequest{ID: "u", Layers: []Layer{l.layer()}})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "setfacl -m u:200000:x "+parent) {
		t.Fatalf("create in a store container root cannot reach: %v", err)
	}
	if n := l.opens.Load(); n != 0 {
		t.Fatalf("layer fetched %d times before the store was found unreachable", n)
	}
	for _, d := range []string{"images", "tmp", "layers"} {
		if left, _ := os.ReadDir(filepath.Join(st.Root(), d)); len(left) != 0 {
			t.Errorf("%s holds %v after the refused create", d, left)
		}
	}
	if _, err := os.Lstat(st.lockPath("image-u")); err == nil {
		t.Error("the refused create left its id lock file")
	}
}

func TestRemoveUnreferencedLayers(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	used := &fakeLayer{data: layerTar(t, entry{name: "used", body: "1"})}
	free := &fakeLayer{data: layerTar(t, entry{name: "free", body: "2"})}
	held := &fakeLayer{data: layerTar(t, entry{name: "held", body: "3"})}
	if _, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{used.layer()}}); err != nil {
		t.Fatal(err)
	}
	keys, err := st.Pull(ctx, []Layer{free.layer(), held.layer()})
	if err != nil {
		t.Fatal(err)
	}
	freeKey, heldKey := keys[0], keys[1]
	usedKey, _ := layerKey(used.layer().DiffID)
	// A create about to reference the layer holds its lock shared.
	lock, err := flock.Shared(ctx, st.lockPath("layer-"+heldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	n, _, err := st.removeUnreferencedLayers(ctx, []string{usedKey, freeKey, heldKey, "../../etc"})
	if err != nil || n != 1 {
		t.Fatalf("removed %d layers (%v), want only the free one", n, err)
	}
	for key, want := range map[string]bool{usedKey: true, freeKey: false, heldKey: true} {
		if st.layerExists(key) != want {
			t.Errorf("layer %s present = %v, want %v", key, !want, want)
		}
	}
}

func TestWorkerErrorsKeepTheirClass(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	unsafe := &fakeLayer{data: layerTar(t, entry{name: "../escape", body: "x"})}
	if _, err := st.Create(ctx, CreateRequest{ID: "u", Layers: []Layer{unsafe.layer()}}); !errors.Is(err, unpacker.ErrUnsafePath) {
		t.Errorf("unsafe path: %v, want errors.Is ErrUnsafePath", err)
	}
	good := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	l := good.layer()
	l.DiffID = digest.FromString("something else")
	if _, err := st.Create(ctx, CreateRequest{ID: "d", Layers: []Layer{l}}); !errors.Is(err, unpacker.ErrDigestMismatch) {
		t.Errorf("wrong diffID: %v, want errors.Is ErrDigestMismatch", err)
	}
}

func TestQuickCheckPassesLongPaths(t *testing.T) {
	st := testStore(t)
	// 20 components of 240 bytes: a path of 4.8 KiB, past PATH_MAX.
	var p string
	for i := 0; i < 20; i++ {
		p += strings.Repeat(string(rune('a'+i)), 240) + "/"
	}
	l := &fakeLayer{data: layerTar(t, entry{name: p + "f", body: "deep"})}
	checksHealthy(t, st, l, "a layer with a 4.8 KiB path")
}

// checksHealthy creates an image of layer l and fails the test unless both
// the quick and the full check find the store healthy.
func checksHealthy(t *testing.T, st *Store, l *fakeLayer, what string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Create(ctx, CreateRequest{ID: "img", Layers: []Layer{l.layer()}}); err != nil {
		t.Fatal(err)
	}
	for _, quick := range []bool{true, false} {
		rep, err := st.Check(ctx, CheckOptions{Quick: quick})
		if err != nil || !rep.Healthy {
			t.Errorf("check (quick %v) of %s: %+v %v", quick, what, rep, err)
		}
	}
}

func TestQuickCheckPassesSameLayerWhiteouts(t *testing.T) {
	st := testStore(t)
	// The layer writes a file and a dir with content, then whites both out.
	l := &fakeLayer{data: layerTar(t,
		entry{name: "a", body: "gone"},
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/f", body: "gone too"},
		entry{name: ".wh.a", typ: tar.TypeReg},
		entry{name: ".wh.d", typ: tar.TypeReg},
		entry{name: "kept", body: "here"})}
	checksHealthy(t, st, l, "a layer whiting out its own content")
}
