package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/internal/config"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/worker"
)

// TestMain serves the store's worker requests: the store re-runs this test
// binary as its worker (package worker).
func TestMain(m *testing.M) {
	worker.Main()
	os.Exit(m.Run())
}

func ptr[T any](v T) *T { return &v }

// Flag over config over default, for each optional field of a create.
func TestResolveCreate(t *testing.T) {
	cfg := config.Default()
	cfg.Create.DiskLimitSizeBytes = 1 << 30
	cfg.Create.ExcludeImageFromQuota = true
	cfg.Create.WithClean = true
	cfg.Create.UIDMappings = []string{"0:1000:1"}
	cfg.Clean.ThresholdBytes = 5 << 30
	b := New(Options{Config: cfg, Store: t.TempDir()})
	base := CreateRequest{Ref: "docker://registry.example.com/app:1", ID: "c1"}

	p, err := b.resolveCreate(base)
	if err != nil {
		t.Fatal(err)
	}
	if p.diskLimit != 1<<30 || !p.excludeBase || !p.clean || p.cleanThreshold != 5<<30 || len(p.uids) != 1 || p.uids[0].HostID != 1000 {
		t.Errorf("config values not applied: %+v", p)
	}

	req := base
	req.DiskLimitSizeBytes = ptr(int64(0))
	req.ExcludeImageFromQuota = ptr(false)
	req.WithoutClean = true
	req.UIDMappings = []string{"0:2000:1"}
	if p, err = b.resolveCreate(req); err != nil {
		t.Fatal(err)
	}
	if p.diskLimit != 0 || p.excludeBase || p.clean || p.uids[0].HostID != 2000 {
		t.Errorf("flags set to off/other did not override the config: %+v", p)
	}

	// The defaults, with an empty config.
	if p, err = New(Options{Config: config.Default(), Store: t.TempDir()}).resolveCreate(base); err != nil {
		t.Fatal(err)
	}
	if p.diskLimit != 0 || p.excludeBase || p.clean || p.mount || p.uids != nil {
		t.Errorf("defaults: %+v", p)
	}

	for what, r := range map[string]CreateRequest{
		"negative limit":          {Ref: base.Ref, ID: "c1", DiskLimitSizeBytes: ptr(int64(-1))},
		"negative inodes":         {Ref: base.Ref, ID: "c1", DiskLimitInodes: -1},
		"with and without mount":  {Ref: base.Ref, ID: "c1", WithMount: true, WithoutMount: true},
		"with and without clean":  {Ref: base.Ref, ID: "c1", WithClean: true, WithoutClean: true},
		"bad mapping":             {Ref: base.Ref, ID: "c1", GIDMappings: []string{"0:x:1"}},
		"bad id (store's class)":  {Ref: base.Ref, ID: "a/b"},
		"bad ref (fetcher class)": {Ref: "dokcer://x/y", ID: "c1"},
	} {
		_, err := b.resolveCreate(r)
		if err == nil {
			t.Errorf("%s: accepted", what)
			continue
		}
		if what == "bad id (store's class)" {
			if !errors.Is(err, store.ErrBadID) {
				t.Errorf("%s: %v is not store.ErrBadID", what, err)
			}
			continue
		}
		if what == "bad ref (fetcher class)" {
			continue
		}
		if !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v is not ErrBadInput", what, err)
		}
	}
}

// testBuilder is a Builder over a new store in a temp dir, as root (the
// store's worker needs a root-written mapping), with cfg.
func testBuilder(t *testing.T, cfg config.Config) *Builder {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real store's worker needs a root-written ID mapping: run as root (make test does)")
	}
	dir := t.TempDir()
	// Container root must reach the store and the sources.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A plain unprivileged range: real shifting without sub-ID files.
	cfg.Create.UIDMappings = []string{"0:200000:65536"}
	cfg.Create.GIDMappings = []string{"0:200000:65536"}
	cfg.Quota.Helper = "/nonexistent/taproot-quota" // no limits: the store is not on XFS
	return New(Options{Config: cfg, Store: filepath.Join(dir, "store")})
}

// ociLayout writes an OCI layout of one image with one uncompressed layer
// of files (name -> content) and the config's user, tagged "v1", and
// returns its "oci:DIR:v1" reference.
func ociLayout(t *testing.T, user string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)})
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := buf.Bytes()
	cfg, _ := json.Marshal(imgspecv1.Image{
		Platform: imgspecv1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   imgspecv1.ImageConfig{User: user, Cmd: []string{"/bin/sh"}, Labels: map[string]string{"team": "roots"}},
		RootFS:   imgspecv1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	})
	m, _ := json.Marshal(imgspecv1.Manifest{
		Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest,
		Config: imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: put(cfg), Size: int64(len(cfg))},
		Layers: []imgspecv1.Descriptor{{MediaType: imgspecv1.MediaTypeImageLayer, Digest: put(layer), Size: int64(len(layer))}},
	})
	idx, _ := json.Marshal(imgspecv1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{MediaType: imgspecv1.MediaTypeImageManifest, Digest: put(m), Size: int64(len(m)),
			Annotations: map[string]string{imgspecv1.AnnotationRefName: "v1"}}}})
	os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return "oci:" + dir + ":v1"
}

// A create from an OCI layout, through every use case that reads the store
// after it: the fragment, the image user from the image's /etc/passwd and
// /etc/group, list, stats, metrics, delete, clean and check.
func TestCreateAndAfter(t *testing.T) {
	cfg := config.Default()
	cfg.Create.DiskLimitSizeBytes = 1 << 30
	b := testBuilder(t, cfg)
	ctx := context.Background()
	ref := ociLayout(t, "app:staff", map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nstaff:x:50:\n",
	})

	var resolved, layers, unpacked int
	res, err := b.Create(ctx, CreateRequest{Ref: ref, ID: "c1", Hooks: Hooks{
		Resolved: func(img Image) {
			if img.Ref == ref && len(img.Layers) == 1 {
				resolved++
			}
		},
		Layer: func(i int, l Layer, rc io.ReadCloser) io.ReadCloser {
			if l.Size > 0 {
				layers++
			}
			return rc
		},
		Event: func(e Event) {
			if e.Kind == LayerUnpacked && e.Verified {
				unpacked++
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resolved != 1 || layers != 1 || unpacked != 1 {
		t.Errorf("hooks: resolved %d times, %d layer streams, %d verified unpacks; want 1 each", resolved, layers, unpacked)
	}
	want := filepath.Join(b.StorePath(), "images", "c1", "rootfs")
	if real, err := filepath.EvalSymlinks(filepath.Dir(b.StorePath())); err == nil {
		want = filepath.Join(real, "store", "images", "c1", "rootfs")
	}
	if res.Rootfs != want || res.Fragment.Root.Path != res.Rootfs || res.Mounted {
		t.Errorf("rootfs %q (fragment %q, mounted %v), want %q", res.Rootfs, res.Fragment.Root.Path, res.Mounted, want)
	}
	if len(res.Mounts) != 1 || res.Mounts[0].Type != "overlay" || res.Mounts[0].Destination != "/" {
		t.Errorf("mounts %+v, want the overlay at /", res.Mounts)
	}
	if u := res.Fragment.Process.User; u.UID != 1000 || u.GID != 50 {
		t.Errorf("image user app:staff resolved to %d:%d, want 1000:50", u.UID, u.GID)
	}
	if m := res.Fragment.Linux.UIDMappings; len(m) != 1 || m[0].HostID != 200000 {
		t.Errorf("fragment uid mappings %+v, want the store's", m)
	}

	// A second image with --disk-limit-size-bytes 0 over the config's.
	if _, err := b.Create(ctx, CreateRequest{Ref: ref, ID: "c2", DiskLimitSizeBytes: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx, ListRequest{})
	if err != nil || len(list) != 2 || list[0].ID != "c1" || list[1].ID != "c2" || list[0].ImageRef != ref {
		t.Fatalf("list: %+v, %v", list, err)
	}
	m, err := b.Metrics(ctx, MetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Images != 2 || m.Layers != 1 || m.LayersUnreferenced != 0 || m.ImageDiskLimitBytes != 1<<30 || m.LayerBytes <= 0 || m.ImageBaseBytes != 2*list[0].BaseSize {
		t.Errorf("metrics %+v (one shared layer, the config's limit on c1 only)", m)
	}
	st, err := b.Stats(ctx, StatsRequest{ID: "c1"})
	if err != nil || st.DiskUsage.TotalBytesUsed < list[0].BaseSize {
		t.Errorf("stats: %+v, %v (base size %d)", st, err, list[0].BaseSize)
	}

	// Delete, twice; then clean takes the layer no image uses.
	for _, id := range []string{"c1", "c2"} {
		if r, err := b.Delete(ctx, DeleteRequest{ID: id}); err != nil || !r.Found {
			t.Fatalf("delete %s: %+v, %v", id, r, err)
		}
	}
	if r, err := b.Delete(ctx, DeleteRequest{ID: "c1"}); err != nil || r.Found {
		t.Errorf("second delete: %+v, %v; want success, not found", r, err)
	}
	if _, err := b.Stats(ctx, StatsRequest{ID: "c1"}); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("stats of a deleted image: %v", err)
	}
	cr, err := b.Clean(ctx, CleanRequest{})
	if err != nil || cr.LayersRemoved != 1 || cr.ReclaimedBytes <= 0 {
		t.Errorf("clean: %+v, %v; want the one layer removed", cr, err)
	}
	rep, err := b.Check(ctx, CheckRequest{})
	if err != nil || rep == nil || !rep.Healthy {
		t.Errorf("check of the cleaned store: %+v, %v", rep, err)
	}
}

// A failure after the store made the image (here: the image user is not in
// its /etc/passwd) deletes the image again.
func TestCreateRollsBack(t *testing.T) {
	b := testBuilder(t, config.Default())
	ref := ociLayout(t, "ghost", map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
	_, err := b.Create(context.Background(), CreateRequest{Ref: ref, ID: "c1"})
	if err == nil {
		t.Fatal("create with an unknown image user succeeded")
	}
	if !strings.Contains(err.Error(), `image user "ghost": no such user`) {
		t.Fatalf("create failed, but not at the image user: %v", err)
	}
	t.Logf("create: %v", err)
	list, lerr := b.List(context.Background(), ListRequest{})
	if lerr != nil || len(list) != 0 {
		t.Errorf("after the failed create the store lists %+v (%v), want no image", list, lerr)
	}
	if _, err := os.Stat(filepath.Join(b.StorePath(), "images", "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed create left its image dir: %v", err)
	}
	// The id is free again.
	ok := ociLayout(t, "", map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
	if _, err := b.Create(context.Background(), CreateRequest{Ref: ok, ID: "c1"}); err != nil {
		t.Errorf("create c1 again after the rollback: %v", err)
	}
}

// A local rootfs dir's cache key changes when the dir is touched, and only
// then.
func TestLocalVersion(t *testing.T) {
	dir := t.TempDir()
	ref, err := fetcher.ParseRef(dir)
	if err != nil {
		t.Fatal(err)
	}
	v1 := localVersion(ref)
	if v1 == "" || v1 != localVersion(ref) {
		t.Fatalf("localVersion %q is not stable", v1)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(dir, later, later); err != nil {
		t.Fatal(err)
	}
	if v2 := localVersion(ref); v2 == v1 || v2 == "" {
		t.Errorf("touching the dir left the cache key %q", v2)
	}
	reg, err := fetcher.ParseRef("docker://registry.example.com/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if v := localVersion(reg); v != "" {
		t.Errorf("a registry image has cache key %q, want none (its layers have digests)", v)
	}
}

// Use cases that read an existing store do not make one.
func TestNoStore(t *testing.T) {
	b := New(Options{Config: config.Default(), Store: filepath.Join(t.TempDir(), "none")})
	ctx := context.Background()
	if l, err := b.List(ctx, ListRequest{}); err != nil || len(l) != 0 {
		t.Errorf("list: %v, %v", l, err)
	}
	if r, err := b.Delete(ctx, DeleteRequest{ID: "x"}); err != nil || r.Found {
		t.Errorf("delete: %+v, %v", r, err)
	}
	if _, err := b.Stats(ctx, StatsRequest{ID: "x"}); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("stats: %v", err)
	}
	if _, err := b.Check(ctx, CheckRequest{}); !errors.Is(err, ErrNoStore) {
		t.Errorf("check: %v", err)
	}
	if _, err := os.Stat(b.StorePath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a read made the store: %v", err)
	}
}

// Pull brings an image's layers without an image; clean then takes them.
func TestPull(t *testing.T) {
	b := testBuilder(t, config.Default())
	ctx := context.Background()
	ref := ociLayout(t, "", map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
	var events []EventKind
	res, err := b.Pull(ctx, PullRequest{Ref: ref, Hooks: Hooks{Event: func(e Event) { events = append(events, e.Kind) }}})
	if err != nil || res.Layers != 1 || res.Ref != ref {
		t.Fatalf("pull: %+v, %v", res, err)
	}
	if len(events) != 1 || events[0] != LayerUnpacked {
		t.Errorf("pull events %v, want one LayerUnpacked", events)
	}
	m, err := b.Metrics(ctx, MetricsRequest{})
	if err != nil || m.Images != 0 || m.Layers != 1 || m.LayersUnreferenced != 1 {
		t.Errorf("metrics after pull: %+v, %v; want one unreferenced layer, no image", m, err)
	}
	// Again: the layer is cached.
	events = nil
	if _, err := b.Pull(ctx, PullRequest{Ref: ref, Hooks: Hooks{Event: func(e Event) { events = append(events, e.Kind) }}}); err != nil || len(events) != 1 || events[0] != LayerCached {
		t.Errorf("second pull: events %v, %v; want one LayerCached", events, err)
	}
}

// InitStore on a filesystem without project quotas makes the store for
// its owner, says so, and changes nothing when run again.
func TestInitStoreWithoutQuota(t *testing.T) {
	b := testBuilder(t, config.Default())
	ctx := context.Background()
	req := InitStoreRequest{Owner: "200000:200000"} // container root is the owner (testBuilder's mapping)
	res, err := b.InitStore(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Quota {
		t.Skipf("%s has XFS project quotas: this test is about a store without them", res.Store)
	}
	if res.Filesystem == "" || filepath.Base(res.Store) != "store" {
		t.Errorf("init-store: %+v", res)
	}
	meta, err := store.ReadStoreMeta(res.Store)
	if err != nil || meta.OwnerUID != 200000 || meta.OwnerGID != 200000 {
		t.Errorf("store meta %+v, %v; want owner 200000:200000", meta, err)
	}
	again, err := b.InitStore(ctx, req)
	if err != nil || again != res {
		t.Errorf("init-store again: %+v, %v; first %+v", again, err, res)
	}
	if _, err := b.InitStore(ctx, InitStoreRequest{SizeBytes: 1, XFSMount: "/x"}); err == nil {
		t.Errorf("--store-size-bytes with --xfs-mount accepted")
	}
}

// Without a store path (no --store, config store or home), every use case
// that needs one says why, and none works on "" (the current directory:
// before, delete-store emptied it and init-store made a store in it).
func TestNoStorePath(t *testing.T) {
	why := errors.New("no default store: HOME is not set")
	b := New(Options{Config: config.Default(), Store: "unused"})
	b.storePath, b.storePathErr = "", why
	// Run where a mistake shows and harms nothing.
	cwd := t.TempDir()
	keep := filepath.Join(cwd, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwd)
	ctx := context.Background()
	if _, err := b.Capacity(ctx, CapacityRequest{}); !errors.Is(err, why) {
		t.Errorf("capacity: %v, want %v", err, why)
	}
	if _, err := b.InitStore(ctx, InitStoreRequest{}); !errors.Is(err, why) {
		t.Errorf("init-store: %v, want %v", err, why)
	}
	if err := b.DeleteStore(ctx, DeleteStoreRequest{}); !errors.Is(err, why) {
		t.Errorf("delete-store: %v, want %v", err, why)
	}
	if _, err := b.List(ctx, ListRequest{}); !errors.Is(err, why) {
		t.Errorf("list: %v, want %v", err, why)
	}
	if names := dirNames(t, cwd); len(names) != 1 || names[0] != "keep" {
		t.Errorf("the current dir holds %v after the refusals, want only keep", names)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
