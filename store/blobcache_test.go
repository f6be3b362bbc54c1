package store

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestBlobCache(t *testing.T) {
	s := testStoreWith(t, Options{Sync: true})
	data := []byte(`{"architecture":"amd64"}`)
	d := digest.FromBytes(data)
	if _, ok := s.CachedBlob(d); ok {
		t.Fatal("empty cache returned a blob")
	}
	if err := s.CacheBlob(d, []byte(`{"architecture":"arm64"}`)); err == nil {
		t.Fatal("CacheBlob took content that does not hash to the digest")
	}
	if err := s.CacheBlob("sha256:../../store.json", data); err == nil {
		t.Fatal("CacheBlob took a digest that is not sha256 hex")
	}
	if err := s.CacheBlob(d, data); err != nil {
		t.Fatal(err)
	}
	got, ok := s.CachedBlob(d)
	if !ok || string(got) != string(data) {
		t.Fatalf("CachedBlob = %q, %v; want %q", got, ok, data)
	}
	p := filepath.Join(s.Root(), "meta", "blobs", "sha256", d.Encoded())
	for _, dir := range []string{filepath.Dir(filepath.Dir(p)), filepath.Dir(p)} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %04o, want 0700", dir, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
	}
	// Records are data: a file whose content does not hash to its name is
	// a miss, and caching the blob again repairs it.
	if err := os.WriteFile(p, []byte(`{"architecture":"evil!"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.CachedBlob(d); ok {
		t.Fatalf("CachedBlob returned tampered content %q", got)
	}
	if err := s.CacheBlob(d, data); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.CachedBlob(d); !ok {
		t.Fatal("re-cached blob not found")
	}
	if left, _ := filepath.Glob(p + ".*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A write killed before its rename leaves <hex>.<pid>.tmp: debris once
	// that process is gone, left alone while it lives.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := p + "." + strconv.Itoa(dead.Process.Pid) + ".tmp"
	live := p + "." + strconv.Itoa(os.Getpid()) + ".tmp"
	for _, f := range []string{stale, live} {
		if err := os.WriteFile(f, data[:3], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := s.removeDebris(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, stale) || exists(stale) {
		t.Errorf("removeDebris = %v: %s not removed", removed, stale)
	}
	if !exists(live) || !exists(p) {
		t.Errorf("removeDebris removed a live writer's file or the blob")
	}
}

func TestRemoveUnreferencedBlobs(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	put := func(data string) digest.Digest {
		t.Helper()
		d := digest.SHA256.FromString(data)
		if err := st.CacheBlob(d, []byte(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	config := put(`{"architecture":"amd64"}`)
	manifest := put(`{"config":{"digest":"` + string(config) + `"}}`)
	index := put(`{"manifests":[{"digest":"` + string(manifest) + `"}]}`)
	orphan := put(`{"config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}}`)
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	if _, err := st.Create(ctx, CreateRequest{ID: "a", ManifestDigest: index, Layers: []Layer{l.layer()}}); err != nil {
		t.Fatal(err)
	}
	if n := st.removeUnreferencedBlobs(); n != 1 {
		t.Errorf("removed %d blobs, want the orphan only", n)
	}
	for d, want := range map[digest.Digest]bool{config: true, manifest: true, index: true, orphan: false} {
		if _, ok := st.CachedBlob(d); ok != want {
			t.Errorf("blob %s cached = %v, want %v", d, ok, want)
		}
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := st.removeUnreferencedBlobs(); n != 3 {
		t.Errorf("after the delete removed %d blobs, want 3", n)
	}
	if _, err := os.Lstat(filepath.Join(st.Root(), "meta", "blobs")); err == nil {
		t.Error("the empty cache dirs are left")
	}
}
