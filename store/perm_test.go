package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The store's owner here is root and container root is host 200000 (see
// testStore): the shared case, where traversed dirs are 0710 root:200000.
const testRootID = 200000

func statOf(t *testing.T, p string) (fs.FileInfo, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi, fi.Sys().(*syscall.Stat_t)
}

// containerData says whether rel (relative to the store) is inside what
// the container or the image owns: a layer's diff, an upper, work or
// rootfs dir. Everything else is the store's own.
func containerData(rel string) bool {
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) >= 3 && (parts[0] == "layers" && parts[2] == "diff" ||
		parts[0] == "images" && (parts[2] == "diff" || parts[2] == "work" || parts[2] == "rootfs")) {
		return true
	}
	return false
}

func TestStoreIsPrivate(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	base := &fakeLayer{data: layerTar(t,
		entry{name: "tmp/", typ: tar.TypeDir},
		entry{name: "bin/su", body: "x", uid: 2001},
		entry{name: "secret", body: "s3cret"})}
	if _, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{base.layer()}}); err != nil {
		t.Fatal(err)
	}
	var checked int
	err := filepath.WalkDir(st.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(st.Root(), p)
		fi, stt := statOf(t, p)
		if containerData(rel) {
			if d.IsDir() && strings.Count(rel, string(filepath.Separator)) == 2 && stt.Uid != testRootID {
				t.Errorf("%s is owned by uid %d, want container root (%d)", rel, stt.Uid, testRootID)
			}
			return filepath.SkipDir
		}
		checked++
		if stt.Uid != 0 {
			t.Errorf("%s is owned by uid %d, want the store's owner (root): container root could rewrite it", rel, stt.Uid)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		perm := fi.Mode().Perm()
		if d.IsDir() {
			if perm&0o007 != 0 || perm&0o060 != 0 {
				t.Errorf("dir %s has mode %04o: others or the group could list or write it", rel, perm)
			}
			if perm&0o010 != 0 && stt.Gid != testRootID {
				t.Errorf("dir %s lets group %d search it, want only container root's group", rel, stt.Gid)
			}
		} else if perm&0o022 != 0 {
			t.Errorf("record %s has mode %04o", rel, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("walked only %d store paths", checked)
	}
	for _, d := range []string{"meta", "locks"} {
		if fi, _ := statOf(t, filepath.Join(st.Root(), d)); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %04o, want 0700 (nobody else needs it)", d, fi.Mode().Perm())
		}
	}
}

// tamperSetup makes a store with image "a" on one layer, and a file and an
// empty dir outside the store that nothing may touch.
func tamperSetup(t *testing.T) (st *Store, key, outsideFile, outsideDir string) {
	t.Helper()
	st = testStore(t)
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	rec, err := st.Create(context.Background(), CreateRequest{ID: "a", Layers: []Layer{l.layer()}})
	if err != nil {
		t.Fatal(err)
	}
	key = rec.Lowers[0]
	outsideDir = filepath.Join(filepath.Dir(st.Root()), "outside")
	if err := os.Mkdir(outsideDir, 0o755); err != nil {
		t.Fatal(err)
	}
	outsideFile = filepath.Join(filepath.Dir(st.Root()), "precious")
	if err := os.WriteFile(outsideFile, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return st, key, outsideFile, outsideDir
}

func rewriteJSON(t *testing.T, p string, change func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	data, _ = json.Marshal(m)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedRecordsTouchNothingOutside(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, st *Store, key string)
	}{
		{"layer short climbs out", func(t *testing.T, st *Store, key string) {
			rewriteJSON(t, filepath.Join(st.layerDir(key), "layer.json"), func(m map[string]any) { m["short"] = "../../precious" })
		}},
		{"layer short injects options", func(t *testing.T, st *Store, key string) {
			rewriteJSON(t, filepath.Join(st.layerDir(key), "layer.json"), func(m map[string]any) { m["short"] = "x,upperdir=/etc" })
		}},
		{"image lowers climb out", func(t *testing.T, st *Store, key string) {
			rewriteJSON(t, filepath.Join(st.imageDir("a"), "image.json"), func(m map[string]any) { m["lowers"] = []string{"../../outside"} })
		}},
		{"image id climbs out", func(t *testing.T, st *Store, key string) {
			rewriteJSON(t, filepath.Join(st.imageDir("a"), "image.json"), func(m map[string]any) { m["id"] = "../../outside" })
		}},
		{"image record undecodable", func(t *testing.T, st *Store, key string) {
			os.WriteFile(filepath.Join(st.imageDir("a"), "image.json"), nil, 0o644)
		}},
		{"link into the outside", func(t *testing.T, st *Store, key string) {
			os.Symlink("../../precious", st.linkPath("aaaaaaaaaa"))
			os.Symlink("../../outside", st.linkPath("bbbbbbbbbb"))
		}},
		{"stray layer dir", func(t *testing.T, st *Store, key string) {
			os.Mkdir(filepath.Join(st.Root(), "layers", "evil"), 0o700)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, key, outsideFile, outsideDir := tamperSetup(t)
			ctx := context.Background()
			c.tamper(t, st, key)
			rep, err := st.Check(ctx, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Healthy {
				t.Fatalf("check calls the tampered store healthy: %+v", rep)
			}
			// What a platform runs next: create on the same layer, stats,
			// delete, clean, repair; none may reach outside.
			l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
			if rec, err := st.Create(ctx, CreateRequest{ID: "b", Layers: []Layer{l.layer()}}); err == nil {
				if plan, err := st.mountPlan(rec); err == nil {
					for _, lower := range plan.Lowers {
						if filepath.Dir(lower) != filepath.Join(st.Root(), "l") {
							t.Errorf("lower %s is not a link under the store's l/", lower)
						}
					}
				}
			} else if !errors.Is(err, ErrBadRecord) {
				t.Errorf("create on a tampered layer: %v, want ErrBadRecord", err)
			}
			if rec, err := st.readImage("a"); err == nil {
				if _, err := st.mountPlan(rec); err == nil && c.name != "link into the outside" && c.name != "stray layer dir" {
					t.Errorf("mountPlan accepted the tampered image")
				}
			}
			if err := st.Delete(ctx, "a"); err != nil && !errors.Is(err, ErrImageNotFound) {
				t.Errorf("delete: %v", err)
			}
			st.removeDanglingLinks()
			if _, _, err := st.removeLayerIfUnused(ctx, key, func() (bool, error) { return true, nil }); err != nil {
				t.Errorf("remove layer: %v", err)
			}
			if _, err := st.Check(ctx, CheckOptions{Repair: true}); err != nil {
				t.Errorf("repair: %v", err)
			}
			if rep, err := st.Check(ctx, CheckOptions{}); err != nil || !rep.Healthy {
				t.Errorf("after repair: %+v %v", rep, err)
			}
			if data, err := os.ReadFile(outsideFile); err != nil || string(data) != "keep" {
				t.Errorf("file outside the store: %q %v", data, err)
			}
			if left, err := os.ReadDir(outsideDir); err != nil || len(left) != 0 {
				t.Errorf("dir outside the store: %v %v", left, err)
			}
		})
	}
}

func TestOpenRefusesUnsafeStores(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make dirs owned by others (make test runs as root)")
	}
	ctx := context.Background()
	maps := testStore(t).meta.UIDMappings
	open := func(p string) error {
		_, err := Open(ctx, p, Options{UIDMappings: maps, GIDMappings: maps})
		return err
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)

	planted := filepath.Join(dir, "planted")
	os.Mkdir(planted, 0o777)
	os.Chmod(planted, 0o777)
	if err := open(planted); !errors.Is(err, ErrStoreUnsafe) {
		t.Errorf("world-writable store dir: %v", err)
	}
	foreign := filepath.Join(dir, "foreign")
	os.Mkdir(foreign, 0o700)
	os.Chown(foreign, 12345, 12345)
	if err := open(foreign); !errors.Is(err, ErrStoreUnsafe) || !strings.Contains(err.Error(), "uid 12345") {
		t.Errorf("store dir owned by another user: %v", err)
	}
	parent := filepath.Join(dir, "theirs")
	os.Mkdir(parent, 0o755)
	os.Chown(parent, 12345, 12345)
	if err := open(filepath.Join(parent, "store")); !errors.Is(err, ErrStoreUnsafe) {
		t.Errorf("store under another user's dir: %v", err)
	}
	if err := open(filepath.Join(dir, "a,b")); err == nil || !strings.Contains(err.Error(), "overlay mount options") {
		t.Errorf("store path with a comma: %v", err)
	}
	// A sticky world-writable parent (as /tmp) is fine: others cannot
	// rename what is not theirs.
	sticky := filepath.Join(dir, "sticky")
	os.Mkdir(sticky, 0o777)
	os.Chmod(sticky, os.ModeSticky|0o777)
	if err := open(filepath.Join(sticky, "store")); err != nil {
		t.Errorf("store under a sticky dir: %v", err)
	}
	// A record naming another owner.
	st := testStore(t)
	rewriteJSON(t, st.metaPath(), func(m map[string]any) { m["owner_uid"] = 12345 })
	if err := open(st.Root()); !errors.Is(err, ErrStoreUnsafe) {
		t.Errorf("meta naming another owner: %v", err)
	}
}

func TestOldStoreIsTightenedOnce(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	rec, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{l.layer()}})
	if err != nil {
		t.Fatal(err)
	}
	key := rec.Lowers[0]
	// What taproot before the privacy fix left: 0755 dirs, the layer dir
	// and its tar-split owned by container root.
	for _, d := range layoutDirs {
		os.Chmod(filepath.Join(st.Root(), d.name), 0o755)
	}
	os.Chown(st.layerDir(key), testRootID, testRootID)
	os.Chmod(st.layerDir(key), 0o755)
	os.Chown(filepath.Join(st.layerDir(key), "tar-split.json.gz"), testRootID, testRootID)
	os.Chmod(st.imageDir("a"), 0o755)

	var logs bytes.Buffer
	reopen := func() {
		t.Helper()
		_, err := Open(ctx, st.Root(), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), UIDMappings: st.meta.UIDMappings, GIDMappings: st.meta.GIDMappings})
		if err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	if n := strings.Count(logs.String(), "tightening"); n != 1 {
		t.Fatalf("first open logged %d tightening lines:\n%s", n, logs.String())
	}
	for _, p := range []string{st.Root(), st.layerDir(key), st.imageDir("a"), filepath.Join(st.Root(), "layers")} {
		if fi, stt := statOf(t, p); fi.Mode().Perm() != 0o710 || stt.Uid != 0 || stt.Gid != testRootID {
			t.Errorf("%s: mode %04o owner %d:%d after tightening, want 0710 0:%d", p, fi.Mode().Perm(), stt.Uid, stt.Gid, testRootID)
		}
	}
	if _, stt := statOf(t, filepath.Join(st.layerDir(key), "tar-split.json.gz")); stt.Uid != 0 {
		t.Errorf("tar-split still owned by %d", stt.Uid)
	}
	logs.Reset()
	reopen()
	if strings.Contains(logs.String(), "tightening") {
		t.Errorf("second open tightened again:\n%s", logs.String())
	}
	if rep, err := st.Check(ctx, CheckOptions{}); err != nil || !rep.Healthy {
		t.Errorf("tightened store: %+v %v", rep, err)
	}
}
