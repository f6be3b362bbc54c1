// Package storetest is the store's conformance suite: named checks of the
// lifecycle's promises (create is atomic, delete idempotent, clean keeps
// what is referenced or in flight and removes the rest, check finds damage
// and repair removes it, recovery removes what a killed create left), run
// against a factory of real stores, as containerd's snapshots/testsuite
// runs against a snapshotter.
//
// The stores are real: temp dirs, the user-namespace worker, real locks.
// The test binary that calls Run must be able to act as the worker (see
// store's TestMain) and run as root (the worker's mapping is written by
// root; tests skip otherwise, saying so).
package storetest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/store"
)

// Factory makes an empty store in a fresh dir for one check. opts carries
// what the check needs (DeferReclaim, a Limiter); the factory adds the
// mapping, the worker and its own choices (Sync). With a Limiter the store
// must record quotas as on (store.Init with Quota), so that Create uses it.
type Factory func(t *testing.T, opts store.Options) *store.Store

type check struct {
	name string
	run  func(t *testing.T, f Factory)
}

var checks = []check{
	{"CreateThenImage", createThenImage},
	{"CreateIsAtomicOnFailure", createIsAtomicOnFailure},
	{"CreateExistingIDFails", createExistingIDFails},
	{"DeleteIsIdempotent", deleteIsIdempotent},
	{"DeleteKeepsSharedLayers", deleteKeepsSharedLayers},
	{"DeferredDeleteIsReclaimed", deferredDeleteIsReclaimed},
	{"CleanKeepsReferencedLayers", cleanKeepsReferencedLayers},
	{"CleanRemovesUnreferencedLayers", cleanRemovesUnreferencedLayers},
	{"CleanSparesInFlightCreate", cleanSparesInFlightCreate},
	{"CheckFindsModifiedFile", checkFindsModifiedFile},
	{"CheckRepairRemovesDamage", checkRepairRemovesDamage},
	{"CheckIgnoresInFlightCreate", checkIgnoresInFlightCreate},
	{"RecoverRemovesKilledCreate", recoverRemovesKilledCreate},
	{"StatsOfMissingImage", statsOfMissingImage},
}

// Run runs every check against stores from f, as subtests name/<check>.
func Run(t *testing.T, name string, f Factory) {
	t.Run(name, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("the store's worker needs a root-written user namespace mapping: run as root (make test does)")
		}
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) { c.run(t, f) })
		}
	})
}

// Layer is a layer made of regular files (name, content pairs).
func Layer(t *testing.T, files ...string) store.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	data := buf.Bytes()
	d := digest.FromBytes(data)
	return store.Layer{BlobDigest: d, DiffID: d, Size: int64(len(data)), Open: func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

// gate holds a create at one step: entered is closed when the create gets
// there, and it goes on when release is closed.
type gate struct {
	once             sync.Once
	entered, release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) pass() {
	g.once.Do(func() { close(g.entered) })
	<-g.release
}

// waitEntered fails t unless the create reached the gate in time.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the create never reached the gate")
	}
}

// heldLayer is l whose download waits at g: a create using it is in
// flight, with a scratch dir under tmp/ and its locks held.
func heldLayer(l store.Layer, g *gate) store.Layer {
	open := l.Open
	l.Open = func(ctx context.Context) (io.ReadCloser, error) {
		g.pass()
		return open(ctx)
	}
	return l
}

// gateLimiter is a Limiter whose SetLimit waits at its gate: a create
// there is in flight with its image dir made and no record yet.
type gateLimiter struct{ g *gate }

func (l gateLimiter) SetLimit(ctx context.Context, dir string, bytes, inodes uint64) error {
	l.g.pass()
	return nil
}
func (gateLimiter) Usage(ctx context.Context, dir string) (uint64, uint64, error) { return 0, 0, nil }
func (gateLimiter) Clear(ctx context.Context, dir string) error                   { return nil }

// mustHealthy fails t unless Check finds nothing.
func mustHealthy(t *testing.T, st *store.Store, what string) {
	t.Helper()
	rep, err := st.Check(context.Background(), store.CheckOptions{})
	if err != nil || !rep.Healthy {
		t.Fatalf("check %s: %+v, %v", what, rep, err)
	}
}

func create(t *testing.T, st *store.Store, id string, layers ...store.Layer) store.ImageRecord {
	t.Helper()
	rec, err := st.Create(context.Background(), store.CreateRequest{ID: id, Layers: layers})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return rec
}

func createThenImage(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	rec := create(t, st, "a", Layer(t, "f", "hello"), Layer(t, "g", "world!"))
	got, err := st.Image(ctx, "a")
	if err != nil || got.ID != "a" || len(got.Layers) != 2 || got.BaseSize != int64(len("hello")+len("world!")) || !got.Created.Equal(rec.Created) {
		t.Fatalf("image after create: %+v, %v; create returned %+v", got, err, rec)
	}
	if all, err := st.Images(ctx); err != nil || len(all) != 1 || all[0].ID != "a" {
		t.Errorf("images: %+v, %v", all, err)
	}
	if u, err := st.Stats(ctx, "a"); err != nil || u.TotalBytesUsed < rec.BaseSize {
		t.Errorf("stats: %+v, %v", u, err)
	}
	mustHealthy(t, st, "after a create")
}

func createIsAtomicOnFailure(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	good := Layer(t, "f", "fine")
	bad := Layer(t, "../escape", "x")
	if _, err := st.Create(ctx, store.CreateRequest{ID: "a", Layers: []store.Layer{good, bad}}); err == nil {
		t.Fatal("create with an unsafe layer succeeded")
	}
	failing := good
	failing.BlobDigest, failing.DiffID = digest.FromString("other"), digest.FromString("other")
	failing.Open = func(context.Context) (io.ReadCloser, error) { return nil, errors.New("registry gone") }
	if _, err := st.Create(ctx, store.CreateRequest{ID: "b", Layers: []store.Layer{failing}}); err == nil {
		t.Fatal("create whose download fails succeeded")
	}
	for _, id := range []string{"a", "b"} {
		if _, err := st.Image(ctx, id); !errors.Is(err, store.ErrImageNotFound) {
			t.Errorf("image %s after a failed create: %v, want ErrImageNotFound", id, err)
		}
	}
	if all, err := st.Images(ctx); err != nil || len(all) != 0 {
		t.Errorf("images after failed creates: %+v, %v", all, err)
	}
	mustHealthy(t, st, "after failed creates")
	create(t, st, "a", good) // the id is free
}

func createExistingIDFails(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	first := create(t, st, "a", Layer(t, "f", "one"))
	if _, err := st.Create(ctx, store.CreateRequest{ID: "a", Layers: []store.Layer{Layer(t, "f", "two")}}); !errors.Is(err, store.ErrImageExists) {
		t.Fatalf("second create of one id: %v, want ErrImageExists", err)
	}
	if got, err := st.Image(ctx, "a"); err != nil || !got.Created.Equal(first.Created) || got.Layers[0] != first.Layers[0] {
		t.Errorf("the first image changed: %+v, %v", got, err)
	}
	mustHealthy(t, st, "after a refused create")
}

func deleteIsIdempotent(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	create(t, st, "a", Layer(t, "f", "x"))
	create(t, st, "keep", Layer(t, "k", "y"))
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := st.Delete(ctx, "a"); !errors.Is(err, store.ErrImageNotFound) {
			t.Fatalf("delete of a deleted image: %v, want ErrImageNotFound", err)
		}
	}
	if _, err := st.Image(ctx, "a"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("image after delete: %v", err)
	}
	if _, err := st.Image(ctx, "keep"); err != nil {
		t.Errorf("the other image after deletes: %v", err)
	}
	mustHealthy(t, st, "after deletes")
}

func deleteKeepsSharedLayers(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	shared := Layer(t, "s", "shared")
	create(t, st, "a", shared, Layer(t, "o", "only a"))
	create(t, st, "b", shared)
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	res, err := st.Clean(ctx)
	if err != nil || res.LayersRemoved != 1 || res.ReclaimedBytes != int64(len("only a")) {
		t.Fatalf("clean after deleting a: %+v, %v; want only a's own layer removed", res, err)
	}
	if _, err := st.Stats(ctx, "b"); err != nil {
		t.Errorf("stats of b: %v", err)
	}
	if u, err := st.Usage(ctx, store.UsageOptions{}); err != nil || u.Layers != 1 || u.Images != 1 || u.UnreferencedLayers != 0 {
		t.Errorf("usage: %+v, %v", u, err)
	}
	mustHealthy(t, st, "after delete and clean")
}

func deferredDeleteIsReclaimed(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{DeferReclaim: true}), context.Background()
	create(t, st, "a", Layer(t, "f", "x"))
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Image(ctx, "a"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("image after a deferred delete: %v", err)
	}
	if err := st.Reclaim(ctx); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, st, "after reclaim")
	if res, err := st.Clean(ctx); err != nil || res.LayersRemoved != 1 || res.DebrisRemoved != 0 {
		t.Errorf("clean after reclaim: %+v, %v", res, err)
	}
}

func cleanKeepsReferencedLayers(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	create(t, st, "a", Layer(t, "f", "x"), Layer(t, "g", "y"))
	if res, err := st.Clean(ctx); err != nil || res.LayersRemoved != 0 || res.ReclaimedBytes != 0 {
		t.Fatalf("clean with every layer in use: %+v, %v", res, err)
	}
	if _, err := st.Stats(ctx, "a"); err != nil {
		t.Errorf("stats after clean: %v", err)
	}
	mustHealthy(t, st, "after clean")
}

func cleanRemovesUnreferencedLayers(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	create(t, st, "a", Layer(t, "f", "xx"), Layer(t, "g", "yyy"))
	if _, err := st.Pull(ctx, []store.Layer{Layer(t, "p", "pulled")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	res, err := st.Clean(ctx)
	if err != nil || res.LayersRemoved != 3 || res.ReclaimedBytes != int64(len("xx")+len("yyy")+len("pulled")) {
		t.Fatalf("clean of an unused store: %+v, %v", res, err)
	}
	if u, err := st.Usage(ctx, store.UsageOptions{}); err != nil || u != (store.Usage{}) {
		t.Errorf("usage after clean: %+v, %v", u, err)
	}
	if again, err := st.Clean(ctx); err != nil || again != (store.CleanResult{}) {
		t.Errorf("second clean: %+v, %v", again, err)
	}
	mustHealthy(t, st, "after clean")
}

// inFlight starts a create of id that waits at the gate: at its layer's
// download (limiter nil) or at setting its disk limit (after its image dir
// is made, before its record). It returns the create's result channel.
func inFlight(t *testing.T, st *store.Store, id string, l store.Layer, g *gate, atLimit bool) <-chan error {
	done := make(chan error, 1)
	// A limit, so that the create asks the limiter (without one it asks
	// the filesystem's size).
	req := store.CreateRequest{ID: id, Layers: []store.Layer{l}, DiskLimit: 1 << 30}
	if !atLimit {
		req.Layers[0] = heldLayer(l, g)
	}
	go func() {
		_, err := st.Create(context.Background(), req)
		done <- err
	}()
	g.waitEntered(t)
	return done
}

// stages are the two moments a create is in flight with something on disk
// that a killed create would leave too.
var stages = []struct {
	name    string
	atLimit bool
}{{"downloading", false}, {"image dir without record", true}}

func cleanSparesInFlightCreate(t *testing.T, f Factory) {
	for _, stage := range stages {
		t.Run(stage.name, func(t *testing.T) {
			g := newGate()
			st, ctx := f(t, store.Options{Limiter: gateLimiter{g}}), context.Background()
			if _, err := st.Pull(ctx, []store.Layer{Layer(t, "p", "unused")}); err != nil {
				t.Fatal(err)
			}
			done := inFlight(t, st, "a", Layer(t, "f", "in flight"), g, stage.atLimit)
			res, err := st.Clean(ctx)
			close(g.release)
			if err != nil || res.DebrisRemoved != 0 || res.LayersRemoved != 1 {
				t.Errorf("clean during a create: %+v, %v; want only the pulled layer removed", res, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the create clean ran beside: %v", err)
			}
			if _, err := st.Stats(ctx, "a"); err != nil {
				t.Errorf("stats of the image: %v", err)
			}
			mustHealthy(t, st, "after the create")
		})
	}
}

// layerFile is a file of a layer an image uses, by the documented layout
// (store doc.go: <store>/layers/<key>/diff/).
func layerFile(st *store.Store, rec store.ImageRecord, name string) string {
	return filepath.Join(st.Root(), "layers", rec.Lowers[0], "diff", name)
}

func checkFindsModifiedFile(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	rec := create(t, st, "a", Layer(t, "f", "original"))
	mustHealthy(t, st, "of an intact store")
	if err := os.WriteFile(layerFile(st, rec, "f"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := st.Check(ctx, store.CheckOptions{})
	if err != nil || rep.Healthy || rep.Repaired || len(rep.Layers) != 1 || rep.Layers[0].Key != rec.Lowers[0] || len(rep.Images) != 1 || rep.Images[0].ID != "a" {
		t.Fatalf("check of a layer changed in place: %+v, %v; want the layer and its image reported", rep, err)
	}
	if _, err := st.Image(ctx, "a"); err != nil {
		t.Errorf("check without repair removed the image: %v", err)
	}
}

func checkRepairRemovesDamage(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	l := Layer(t, "f", "original")
	rec := create(t, st, "a", l)
	if err := os.WriteFile(layerFile(st, rec, "f"), []byte("tampered, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := st.Check(ctx, store.CheckOptions{Repair: true})
	if err != nil || !rep.Repaired || len(rep.Layers) != 1 {
		t.Fatalf("check --repair: %+v, %v", rep, err)
	}
	if _, err := st.Image(ctx, "a"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("image on a damaged layer after repair: %v, want ErrImageNotFound", err)
	}
	mustHealthy(t, st, "after repair")
	rec = create(t, st, "a", l) // made again, from a fresh layer
	if data, err := os.ReadFile(layerFile(st, rec, "f")); err != nil || string(data) != "original" {
		t.Errorf("layer after repair and create: %q, %v", data, err)
	}
}

func checkIgnoresInFlightCreate(t *testing.T, f Factory) {
	for _, stage := range stages {
		t.Run(stage.name, func(t *testing.T) {
			g := newGate()
			st, ctx := f(t, store.Options{Limiter: gateLimiter{g}}), context.Background()
			done := inFlight(t, st, "a", Layer(t, "f", "in flight"), g, stage.atLimit)
			rep, err := st.Check(ctx, store.CheckOptions{})
			close(g.release)
			if err != nil || !rep.Healthy || len(rep.Debris) != 0 {
				t.Errorf("check during a create: %+v, %v; a create in flight is not debris", rep, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the create check ran beside: %v", err)
			}
			mustHealthy(t, st, "after the create")
		})
	}
}

// recoverRemovesKilledCreate lays down what a create killed while
// downloading and one killed before its record leave (doc.go's layout:
// their scratch dir, image dir and lock files, no lock held), which check
// must report and clean remove.
func recoverRemovesKilledCreate(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	keep := create(t, st, "keep", Layer(t, "k", "kept"))
	root := st.Root()
	left := []string{
		"tmp/layer-0123456789abcdef/diff/half-written",
		"tmp/layer-0123456789abcdef/tar-split.json.gz",
		"images/killed/diff/",
		"images/killed/work/",
		"images/killed/rootfs/",
		"locks/tmp-layer-0123456789abcdef.lock",
		"locks/image-killed.lock",
		"locks/fetch-" + digest.FromString("killed").Encoded() + ".lock",
	}
	for _, p := range left {
		dir, file := filepath.Split(filepath.Join(root, p))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(p, "/") {
			if err := os.WriteFile(filepath.Join(dir, file), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	rep, err := st.Check(ctx, store.CheckOptions{})
	// The scratch dir, the image dir and the fetch lock; the other two
	// lock files guard what is left, and go with it.
	if err != nil || rep.Healthy || len(rep.Debris) != 3 {
		t.Fatalf("check of a killed create's leftovers: %+v, %v; want 3 pieces of debris", rep, err)
	}
	res, err := st.Clean(ctx)
	if err != nil || res.DebrisRemoved != 2 || res.LayersRemoved != 0 {
		t.Fatalf("clean: %+v, %v; want the scratch dir and the unfinished image removed", res, err)
	}
	for _, d := range []string{"tmp", "locks"} {
		entries, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range entries {
			if d == "tmp" || e.Name() != "init.lock" && e.Name() != "layer-"+keep.Lowers[0]+".lock" && e.Name() != "image-keep.lock" {
				t.Errorf("%s/%s left after clean", d, e.Name())
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "images", "killed")); err == nil {
		t.Error("the unfinished image is left after clean")
	}
	mustHealthy(t, st, "after clean")
	if _, err := st.Image(ctx, "keep"); err != nil {
		t.Errorf("the finished image: %v", err)
	}
}

func statsOfMissingImage(t *testing.T, f Factory) {
	st, ctx := f(t, store.Options{}), context.Background()
	if _, err := st.Stats(ctx, "nope"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("stats of a missing image: %v, want ErrImageNotFound", err)
	}
	if _, err := st.Image(ctx, "nope"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("image of a missing id: %v, want ErrImageNotFound", err)
	}
	if _, err := st.Stats(ctx, "../etc"); !errors.Is(err, store.ErrBadID) {
		t.Errorf("stats of a bad id: %v, want ErrBadID", err)
	}
	if err := st.Delete(ctx, "nope"); !errors.Is(err, store.ErrImageNotFound) {
		t.Errorf("delete of a missing image: %v, want ErrImageNotFound", err)
	}
}
