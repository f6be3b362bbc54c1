package acceptance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
	"golang.org/x/sys/unix"
)

// mountedAt says whether a mount of this process's namespace is on path.
func mountedAt(t *testing.T, path string) bool {
	t.Helper()
	return len(mountPoints(t, func(mp string) bool { return mp == path })) > 0
}

// mountsUnder lists the mount points of this namespace under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	return mountPoints(t, func(mp string) bool { return strings.HasPrefix(mp, dir+"/") })
}

// mountPoints lists the mount points of this namespace that keep says to,
// read from /proc/self/mountinfo by moby/sys/mountinfo, the parser
// overlayxfs and the quota helper use.
func mountPoints(t *testing.T, keep func(string) bool) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !keep(m.Mountpoint), false
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// editRecord decodes an image's image.json, lets edit change it and
// writes it back.
func editRecord(t *testing.T, store, id string, edit func(m map[string]any)) {
	t.Helper()
	editJSON(t, filepath.Join(imageDir(store, id), "image.json"), edit)
}

// editJSON decodes the JSON object in file p, lets edit change it and
// writes it back.
func editJSON(t *testing.T, p string, edit func(m map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// recordMounts is the persisted mounts of an image's record.
func recordMounts(t *testing.T, store, id string) []struct {
	Type, Source, Target string
	Options              []string
} {
	t.Helper()
	var rec struct {
		Mounts []struct {
			Type, Source, Target string
			Options              []string
		} `json:"mounts"`
	}
	data, err := os.ReadFile(filepath.Join(imageDir(store, id), "image.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.Mounts
}

// TestWithMount: as root, create --with-mount mounts the very mount the
// record holds and prints none; delete unmounts the persisted target, and
// only a target the store's own checks accept: a record whose mount was
// rewritten to name another mount point makes delete unmount the image's
// own rootfs, never the named one. A record written before mounts were
// persisted still mounts and unmounts.
func TestWithMount(t *testing.T) {
	need(t)
	if os.Geteuid() != 0 {
		t.Skip("--with-mount needs root; the suite runs as root (make test)")
	}
	ref, _ := pushImage(t, "withmount", busyboxImage(layer(ib.File("top", "top\n"))))
	store := rootStore(t)
	createMounted := func(id string) string {
		t.Helper()
		r := rootTaproot(t, store, "create", "--insecure-registry", h.registry, "--with-mount", ref, id)
		if r.code != 0 {
			t.Fatalf("create --with-mount:\n%s", r)
		}
		frag := mustParse(t, r.stdout)
		if len(frag.Mounts) != 0 {
			t.Errorf("create --with-mount printed mounts: %+v", frag.Mounts)
		}
		root := frag.Root.Path
		if root != filepath.Join(store, "images", id, "rootfs") || !mountedAt(t, root) {
			t.Fatalf("root.path %s is not a mounted rootfs of the store", root)
		}
		if got := readFile(t, filepath.Join(root, "top")); got != "top\n" {
			t.Errorf("%s/top = %q", root, got)
		}
		return root
	}

	root := createMounted("wm")
	ms := recordMounts(t, store, "wm")
	if len(ms) != 1 || ms[0].Type != "overlay" || ms[0].Target != root || len(ms[0].Options) != 4 || !strings.HasPrefix(ms[0].Options[1], "lowerdir="+filepath.Join(store, "l")+"/") {
		t.Errorf("persisted mounts = %+v", ms)
	}
	// What the runtime would be told is the same value: an image made
	// without --with-mount prints the record's mount at "/".
	frag := mustParse(t, rootTaproot(t, store, "create", "--insecure-registry", h.registry, ref, "printed").stdout)
	pm := recordMounts(t, store, "printed")
	if len(frag.Mounts) != 1 || len(pm) != 1 || frag.Mounts[0].Destination != "/" || frag.Mounts[0].Type != pm[0].Type ||
		strings.Join(frag.Mounts[0].Options, ",") != strings.Join(pm[0].Options, ",") || frag.Root.Path != pm[0].Target {
		t.Errorf("printed mounts %+v root %s are not the record's %+v", frag.Mounts, frag.Root.Path, pm)
	}
	if r := rootTaproot(t, store, "delete", "wm"); r.code != 0 {
		t.Fatalf("delete:\n%s", r)
	}
	if mountedAt(t, root) || len(mountsUnder(t, store)) != 0 {
		t.Errorf("delete left mounts: %v", mountsUnder(t, store))
	}

	t.Run("tampered target", func(t *testing.T) {
		// A mount point outside the store that a rewritten record names.
		victim := filepath.Join(filepath.Dir(store), "victim-mount")
		if err := os.Mkdir(victim, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", victim, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(victim, unix.MNT_DETACH)
		root := createMounted("tw")
		editRecord(t, store, "tw", func(m map[string]any) {
			m["mounts"].([]any)[0].(map[string]any)["target"] = victim
		})
		if r := rootTaproot(t, store, "stats", "tw"); r.code != 7 {
			t.Errorf("stats of the tampered record does not exit 7:\n%s", r)
		}
		if r := rootTaproot(t, store, "delete", "tw"); r.code != 0 {
			t.Errorf("delete of the tampered image:\n%s", r)
		}
		if !mountedAt(t, victim) {
			t.Errorf("delete unmounted %s, which only the tampered record names", victim)
		}
		if mountedAt(t, root) || exists(imageDir(store, "tw")) {
			t.Errorf("delete left the image or its mount: %v", mountsUnder(t, store))
		}
	})

	t.Run("record without mounts", func(t *testing.T) {
		root := createMounted("old")
		editRecord(t, store, "old", func(m map[string]any) { delete(m, "mounts") })
		if r := rootTaproot(t, store, "stats", "old"); r.code != 0 {
			t.Errorf("stats of a record without mounts:\n%s", r)
		}
		if r := rootTaproot(t, store, "check"); r.code != 0 {
			t.Errorf("check of a record without mounts:\n%s", r)
		}
		if r := rootTaproot(t, store, "delete", "old"); r.code != 0 {
			t.Errorf("delete:\n%s", r)
		}
		if mountedAt(t, root) || exists(imageDir(store, "old")) {
			t.Errorf("delete of an old record left the image or its mount: %v", mountsUnder(t, store))
		}
	})
}
