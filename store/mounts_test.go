package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The mount is planned once at create and persisted in image.json; Image
// returns it only when it is exactly the one the record's layers give in
// this store, and computes it for a record written before mounts were
// persisted.
func TestPersistedMountIsChecked(t *testing.T) {
	ctx := context.Background()
	mkImage := func(t *testing.T) (*Store, ImageRecord) {
		st := testStore(t)
		base := &fakeLayer{data: layerTar(t, entry{name: "b", body: "b"})}
		top := &fakeLayer{data: layerTar(t, entry{name: "t", body: "t"})}
		rec, err := st.Create(ctx, CreateRequest{ID: "a", Layers: []Layer{base.layer(), top.layer()}})
		if err != nil {
			t.Fatal(err)
		}
		return st, rec
	}
	st, rec := mkImage(t)
	plan, err := st.mountPlan(rec)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plan.Mount()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Mounts) != 1 || !rec.Mounts[0].Equal(want) {
		t.Fatalf("create's mounts = %+v, want [%+v]", rec.Mounts, want)
	}
	if want.Target != filepath.Join(st.Root(), "images", "a", "rootfs") || want.Options[1] != "lowerdir="+plan.Lowers[0]+":"+plan.Lowers[1] {
		t.Fatalf("mount = %+v", want)
	}
	data, err := os.ReadFile(filepath.Join(st.imageDir("a"), "image.json"))
	if err != nil || !strings.Contains(string(data), `"mounts"`) || !strings.Contains(string(data), want.Options[1]) {
		t.Fatalf("image.json does not hold the mount: %s %v", data, err)
	}
	got, err := st.Image(context.Background(), "a")
	if err != nil || len(got.Mounts) != 1 || !got.Mounts[0].Equal(want) {
		t.Fatalf("Image = %+v, %v", got.Mounts, err)
	}

	// Another of the top layer's possible short names: a link taproot
	// could have made, but not the one its layer record names.
	otherShort := filepath.Join(st.Root(), "l", shortName(rec.Lowers[0], 16))
	tampered := map[string]func(m map[string]any){
		"lowerdir=/":    func(m map[string]any) { setOption(m, 1, "lowerdir=/") },
		"upperdir=/etc": func(m map[string]any) { setOption(m, 2, "upperdir=/etc") },
		"workdir=/tmp":  func(m map[string]any) { setOption(m, 3, "workdir=/tmp") },
		"extra option": func(m map[string]any) {
			mount := m["mounts"].([]any)[0].(map[string]any)
			mount["options"] = append(mount["options"].([]any), "x,upperdir=/etc")
		},
		"option smuggled in a lowerdir": func(m map[string]any) {
			setOption(m, 1, want.Options[1]+",upperdir=/etc")
		},
		"another short name": func(m map[string]any) {
			setOption(m, 1, "lowerdir="+otherShort+":"+plan.Lowers[1])
		},
		"lowers swapped": func(m map[string]any) {
			setOption(m, 1, "lowerdir="+plan.Lowers[1]+":"+plan.Lowers[0])
		},
		"target /etc": func(m map[string]any) { m["mounts"].([]any)[0].(map[string]any)["target"] = "/etc" },
		"type bind":   func(m map[string]any) { m["mounts"].([]any)[0].(map[string]any)["type"] = "bind" },
		"source /dev/sda": func(m map[string]any) {
			m["mounts"].([]any)[0].(map[string]any)["source"] = "/dev/sda"
		},
		"a second mount": func(m map[string]any) {
			ms := m["mounts"].([]any)
			m["mounts"] = append(ms, map[string]any{"type": "bind", "source": "/", "target": "/mnt", "options": []any{"rbind"}})
		},
		"no mounts": func(m map[string]any) { m["mounts"] = []any{} },
	}
	for name, tamper := range tampered {
		t.Run(name, func(t *testing.T) {
			st, _ := mkImage(t)
			rewriteJSON(t, filepath.Join(st.imageDir("a"), "image.json"), tamper)
			if _, err := st.Image(context.Background(), "a"); !errors.Is(err, ErrBadRecord) {
				t.Errorf("Image: %v, want ErrBadRecord", err)
			}
			if _, err := st.Stats(ctx, "a"); !errors.Is(err, ErrBadRecord) {
				t.Errorf("Stats: %v, want ErrBadRecord", err)
			}
			if imgs, err := st.Images(context.Background()); err != nil || len(imgs) != 0 {
				t.Errorf("Images lists the tampered image: %+v, %v", imgs, err)
			}
			rep, err := st.Check(ctx, CheckOptions{})
			if err != nil || rep.Healthy || len(rep.Images) != 1 || rep.Images[0].ID != "a" || !strings.Contains(rep.Images[0].Problem, ErrBadRecord.Error()) {
				t.Errorf("check: %+v, %v", rep, err)
			}
			if rep, err := st.Check(ctx, CheckOptions{Repair: true}); err != nil || !rep.Repaired {
				t.Errorf("repair: %+v, %v", rep, err)
			}
			if _, err := st.Image(context.Background(), "a"); !errors.Is(err, ErrImageNotFound) {
				t.Errorf("after repair: %v, want the image removed", err)
			}
			if rep, err := st.Check(ctx, CheckOptions{}); err != nil || !rep.Healthy {
				t.Errorf("after repair: %+v %v", rep, err)
			}
		})
	}

	t.Run("record without mounts", func(t *testing.T) {
		st, rec := mkImage(t)
		rewriteJSON(t, filepath.Join(st.imageDir("a"), "image.json"), func(m map[string]any) { delete(m, "mounts") })
		got, err := st.Image(context.Background(), "a")
		if err != nil || len(got.Mounts) != 1 || !got.Mounts[0].Equal(rec.Mounts[0]) {
			t.Fatalf("Image of an old record = %+v, %v; want %+v", got.Mounts, err, rec.Mounts)
		}
		if _, err := st.Stats(ctx, "a"); err != nil {
			t.Errorf("Stats: %v", err)
		}
		if rep, err := st.Check(ctx, CheckOptions{}); err != nil || !rep.Healthy {
			t.Errorf("check: %+v %v", rep, err)
		}
	})
}

func setOption(m map[string]any, i int, opt string) {
	m["mounts"].([]any)[0].(map[string]any)["options"].([]any)[i] = opt
}

// A store reached by another path (moved, or bind-mounted elsewhere) has
// records whose mounts name the old path: the image gets this store's
// mount, and a record that is more than moved is still refused.
func TestMovedStoreMountsFollowTheStore(t *testing.T) {
	st := testStore(t)
	l := &fakeLayer{data: layerTar(t, entry{name: "f", body: "x"})}
	for _, id := range []string{"a", "b"} {
		if _, err := st.Create(context.Background(), CreateRequest{ID: id, Layers: []Layer{l.layer()}}); err != nil {
			t.Fatal(err)
		}
	}
	old := st.Root()
	moved := filepath.Join(filepath.Dir(old), "moved")
	if err := os.Rename(old, moved); err != nil {
		t.Fatal(err)
	}
	// b's record is moved and also given an upperdir outside.
	path := filepath.Join(moved, "images", "b", "image.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "upperdir="+old+"/images/b/diff", "upperdir="+old+"/images/a/diff", 1))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(context.Background(), moved, st.opts)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st2.Image(context.Background(), "a")
	if err != nil {
		t.Fatalf("Image in the moved store: %v", err)
	}
	if m := rec.Mounts[0]; m.Target != filepath.Join(moved, "images", "a", "rootfs") || strings.Contains(m.Data(), old+"/") {
		t.Errorf("moved store's mount: %+v, want it in %s only", m, moved)
	}
	if _, err := st2.Image(context.Background(), "b"); !errors.Is(err, ErrBadRecord) {
		t.Errorf("moved and tampered record: %v, want ErrBadRecord", err)
	}
}
