package gc

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/worker"
)

// The test binary doubles as the store's user-namespace worker.
func TestMain(m *testing.M) {
	worker.Main()
	os.Exit(m.Run())
}

// layer is a one-file layer named by its digest.
func layer(name, body string) store.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write([]byte(body))
	tw.Close()
	data := buf.Bytes()
	d := digest.FromBytes(data)
	return store.Layer{BlobDigest: d, DiffID: d, Size: int64(len(data)), Open: func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

func TestCollect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store's worker needs a root-written user namespace mapping here: run as root (make test does)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	maps := []idmap.Mapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	st, err := store.Open(context.Background(), filepath.Join(dir, "s"), store.Options{
		UIDMappings: maps, GIDMappings: maps, DeferReclaim: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shared, onlyA := layer("s", "shared content"), layer("a", "only in a")
	if _, err := st.Create(ctx, store.CreateRequest{ID: "a", Layers: []store.Layer{shared, onlyA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, store.CreateRequest{ID: "b", Layers: []store.Layer{shared}}); err != nil {
		t.Fatal(err)
	}
	res, err := Collect(ctx, st, Options{})
	if err != nil || res.LayersRemoved != 0 {
		t.Fatalf("clean with every layer in use: %+v, %v", res, err)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Above the threshold nothing happens.
	res, err = Collect(ctx, st, Options{ThresholdBytes: 1 << 30})
	if err != nil || !res.Skipped || res.LayersRemoved != 0 {
		t.Fatalf("clean under the threshold: %+v, %v", res, err)
	}
	res, err = Collect(ctx, st, Options{ThresholdBytes: 1})
	if err != nil || res.LayersRemoved != 1 || res.ReclaimedBytes != int64(len("only in a")) {
		t.Fatalf("clean after delete: %+v, %v", res, err)
	}
	if left, _ := os.ReadDir(filepath.Join(st.Root(), "tmp")); len(left) != 0 {
		t.Fatalf("tmp holds %v after clean", left)
	}
	if err := st.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if res, err = Collect(ctx, st, Options{}); err != nil || res.LayersRemoved != 1 {
		t.Fatalf("last clean: %+v, %v", res, err)
	}
	for _, d := range []string{"layers", "l", "images", "tmp"} {
		if left, _ := os.ReadDir(filepath.Join(st.Root(), d)); len(left) != 0 {
			t.Errorf("%s holds %v after everything was deleted and cleaned", d, left)
		}
	}
	if locks, _ := os.ReadDir(filepath.Join(st.Root(), "locks")); len(locks) > 1 {
		t.Errorf("lock files leaked: %v", locks)
	}
	again, err := Collect(ctx, st, Options{})
	if err != nil || again.LayersRemoved != 0 || again.ReclaimedBytes != 0 {
		t.Fatalf("clean is not idempotent: %+v, %v", again, err)
	}
}
