package store

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckFindsWhatACutLeaves damages a synced store the ways a power cut
// with sync off does (a layer file shorter than written, an empty record,
// an image dir that never reached the disk), one per case: check --quick
// and the full check must both see it, check --repair must mend it, and
// check must then pass and the next create rebuild the image.
func TestCheckFindsWhatACutLeaves(t *testing.T) {
	ctx := context.Background()
	base := &fakeLayer{data: layerTar(t, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"},
		entry{name: "big", body: strings.Repeat("b", 100000)}, entry{name: "empty", body: ""}, entry{name: "ln", typ: tar.TypeSymlink, link: "big"},
		entry{name: "hard", typ: tar.TypeLink, link: "big"})}
	// A path named twice: the last entry's size is the one on disk.
	top := &fakeLayer{data: layerTar(t, entry{name: "f", body: "first, longer"}, entry{name: "f", body: "second"}, entry{name: ".wh.empty"})}
	layers := func() []Layer { return []Layer{base.layer(), top.layer()} }
	baseKey, _ := layerKey(base.layer().DiffID)

	for _, tc := range []struct {
		name   string
		damage func(st *Store) error
		// image: the damage is the image's own (record or dirs), so its
		// layers survive the repair.
		image bool
	}{
		{"layer file shorter", func(st *Store) error {
			return os.Truncate(filepath.Join(st.layerDir(baseKey), "diff", "big"), 4096)
		}, false},
		{"layer file empty", func(st *Store) error {
			return os.Truncate(filepath.Join(st.layerDir(baseKey), "diff", "etc", "passwd"), 0)
		}, false},
		{"layer record empty", func(st *Store) error {
			return os.WriteFile(filepath.Join(st.layerDir(baseKey), "layer.json"), nil, 0o644)
		}, false},
		{"tar-split empty", func(st *Store) error {
			return os.WriteFile(filepath.Join(st.layerDir(baseKey), "tar-split.json.gz"), nil, 0o644)
		}, false},
		{"image record empty", func(st *Store) error {
			return os.WriteFile(filepath.Join(st.imageDir("img"), "image.json"), nil, 0o644)
		}, true},
		{"image record cut short", func(st *Store) error {
			p := filepath.Join(st.imageDir("img"), "image.json")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, b[:len(b)/2], 0o644)
		}, true},
		{"image upper dir gone", func(st *Store) error {
			return st.removeAll(ctx, filepath.Join(st.imageDir("img"), "diff"))
		}, true},
		{"image work dir gone", func(st *Store) error {
			return st.removeAll(ctx, filepath.Join(st.imageDir("img"), "work"))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := testStoreWith(t, Options{Sync: true})
			if _, err := st.Create(ctx, CreateRequest{ID: "img", Layers: layers()}); err != nil {
				t.Fatal(err)
			}
			for _, quick := range []bool{true, false} {
				if rep, err := st.Check(ctx, CheckOptions{Quick: quick}); err != nil || !rep.Healthy {
					t.Fatalf("check (quick %v) of an intact store: %+v, %v", quick, rep, err)
				}
			}
			if err := tc.damage(st); err != nil {
				t.Fatal(err)
			}
			if rep, err := st.Check(ctx, CheckOptions{}); err != nil || rep.Healthy {
				t.Errorf("full check missed it: %+v, %v", rep, err)
			}
			rep, err := st.Check(ctx, CheckOptions{Quick: true})
			if err != nil || rep.Healthy || len(rep.Images) != 1 || rep.Images[0].ID != "img" {
				t.Fatalf("check --quick: %+v, %v; want the image reported", rep, err)
			}
			if !tc.image && (len(rep.Layers) != 1 || rep.Layers[0].Key != baseKey) {
				t.Errorf("check --quick: layers %+v, want %s", rep.Layers, baseKey)
			}
			t.Logf("found: %+v %+v", rep.Layers, rep.Images)
			if rep, err := st.Check(ctx, CheckOptions{Quick: true, Repair: true}); err != nil || !rep.Repaired {
				t.Fatalf("check --quick --repair: %+v, %v", rep, err)
			}
			if err := st.Reclaim(ctx); err != nil {
				t.Fatal(err)
			}
			for _, quick := range []bool{true, false} {
				if rep, err := st.Check(ctx, CheckOptions{Quick: quick}); err != nil || !rep.Healthy {
					t.Fatalf("check (quick %v) after repair: %+v, %v", quick, rep, err)
				}
			}
			if _, err := st.Image(ctx, "img"); err == nil {
				t.Error("the damaged image survived the repair")
			}
			opens := base.opens.Load()
			if _, err := st.Create(ctx, CreateRequest{ID: "img", Layers: layers()}); err != nil {
				t.Fatal("create after repair:", err)
			}
			if refetched := base.opens.Load() > opens; refetched == tc.image {
				t.Errorf("base layer fetched again: %v, want %v", refetched, !tc.image)
			}
			if rep, err := st.Check(ctx, CheckOptions{}); err != nil || !rep.Healthy {
				t.Fatalf("full check after the next create: %+v, %v", rep, err)
			}
		})
	}
}
