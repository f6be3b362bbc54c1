package acceptance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

type checkReport struct {
	Healthy       bool   `json:"healthy"`
	Repaired      bool   `json:"repaired"`
	LayersChecked int    `json:"layers_checked"`
	Layers        []prob `json:"damaged_layers"`
	Images        []prob `json:"damaged_images"`
	DanglingLinks []string
	MissingLinks  []string `json:"missing_links"`
	Debris        []string `json:"debris"`
}

type prob struct {
	Key     string `json:"key"`
	ID      string `json:"id"`
	Problem string `json:"problem"`
}

func runCheck(t *testing.T, store string, args ...string) (checkReport, result) {
	t.Helper()
	r := taproot(t, store, append([]string{"check"}, args...)...)
	var rep checkReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check: stdout is not a JSON report: %v\n%s", err, r)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal([]byte(r.stdout), &raw)
	_ = json.Unmarshal(raw["dangling_links"], &rep.DanglingLinks)
	return rep, r
}

// TestCheckFindsAndRepairs damages a store in one way per case; check must
// exit non-zero with the damage in its JSON report, check --repair must fix
// it (removing damaged layers), the next create must fetch exactly the
// removed layers again, and check must then be healthy.
func TestCheckFindsAndRepairs(t *testing.T) {
	need(t)
	t.Parallel()
	base := rawTar(t, nil, tDir("etc"), tReg("etc/passwd", "root:x:0:0::/:/bin/sh\n"), tReg("good", "good\n"))
	top := rawTar(t, nil, tDir("app"), tReg("app/a", "alpha\n"), tReg("app/b", "bravo\n"), tSym("app/link", "a"))
	b := buildRaw(t, []rawLayer{gzLayer(t, base), gzLayer(t, top)}, nil)
	topID, topBlob := b.Layers[1].DiffID, b.Layers[1].Digest

	type tc struct {
		name    string
		damage  func(t *testing.T, store string)
		report  func(rep checkReport) bool // true when the report shows the damage
		refetch bool                       // the top layer must be fetched again
	}
	topDir := func(store string) string { return filepath.Join(store, "layers", topID.Encoded()) }
	damagedTop := func(want string) func(checkReport) bool {
		return func(rep checkReport) bool {
			for _, l := range rep.Layers {
				if l.Key == topID.Encoded() && strings.Contains(l.Problem, want) {
					return true
				}
			}
			return false
		}
	}
	hasDebris := func(prefix string) func(checkReport) bool {
		return func(rep checkReport) bool {
			for _, d := range rep.Debris {
				if strings.HasPrefix(d, prefix) {
					return true
				}
			}
			return false
		}
	}
	cases := []tc{
		{"modified file", func(t *testing.T, store string) {
			// Same size, other bytes; owner and times kept by writing in place.
			if err := os.WriteFile(filepath.Join(topDir(store), "diff/app/a"), []byte("ALPHA\n"), 0); err != nil {
				t.Fatal(err)
			}
		}, damagedTop("modified"), true},
		{"missing file", func(t *testing.T, store string) {
			if err := os.Remove(filepath.Join(topDir(store), "diff/app/b")); err != nil {
				t.Fatal(err)
			}
		}, damagedTop(""), true},
		{"extra file", func(t *testing.T, store string) {
			p := filepath.Join(topDir(store), "diff/app/intruder")
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chown(p, h.uid, h.gid)
		}, damagedTop("not in the layer"), true},
		{"layer record without its dir", func(t *testing.T, store string) {
			if err := os.RemoveAll(filepath.Join(topDir(store), "diff")); err != nil {
				t.Fatal(err)
			}
		}, damagedTop(""), true},
		{"layer dir without record", func(t *testing.T, store string) {
			if err := os.Remove(filepath.Join(topDir(store), "layer.json")); err != nil {
				t.Fatal(err)
			}
		}, damagedTop("layer.json"), true},
		{"dangling short link", func(t *testing.T, store string) {
			if err := os.Symlink("../layers/"+digest.FromString("gone").Encoded()+"/diff", filepath.Join(store, "l", "dangling00")); err != nil {
				t.Fatal(err)
			}
		}, func(rep checkReport) bool {
			return len(rep.DanglingLinks) == 1 && rep.DanglingLinks[0] == "dangling00"
		}, false},
		{"missing short link", func(t *testing.T, store string) {
			var rec struct {
				Short string `json:"short"`
			}
			data, err := os.ReadFile(filepath.Join(topDir(store), "layer.json"))
			if err == nil {
				err = json.Unmarshal(data, &rec)
			}
			if err != nil || rec.Short == "" {
				t.Fatalf("layer.json has no short link name: %v %s", err, data)
			}
			if err := os.Remove(filepath.Join(store, "l", rec.Short)); err != nil {
				t.Fatal(err)
			}
		}, func(rep checkReport) bool { return len(rep.MissingLinks) == 1 }, false},
		{"tmp debris", func(t *testing.T, store string) {
			for _, d := range []string{"layer-0123456789abcdef", "layer-0123456789abcdef/diff"} {
				if err := mkdirOwned(filepath.Join(store, "tmp", d)); err != nil {
					t.Fatal(err)
				}
			}
		}, hasDebris("tmp/layer-0123456789abcdef"), false},
		{"stale lock files", func(t *testing.T, store string) {
			for _, n := range []string{"layer-" + digest.FromString("gone").Encoded(), "image-gone", "tmp-layer-00"} {
				p := filepath.Join(store, "locks", n+".lock")
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				os.Chown(p, h.uid, h.gid)
			}
		}, hasDebris("locks/"), false},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			// One repository per case: blob GETs are counted per repository.
			repo := "acceptance/check-" + itoa(i)
			ref := pushRaw(t, "check-"+itoa(i), h.registry, b)
			store := newStore(t)
			create(t, store, ref, "first")
			if rep, r := runCheck(t, store); r.code != 0 || !rep.Healthy || rep.LayersChecked != 2 {
				t.Fatalf("fresh store is not healthy:\n%s", r)
			}
			before := registryBlobGets(t, repo, topBlob)
			c.damage(t, store)

			rep, r := runCheck(t, store)
			if r.code == 0 || rep.Healthy {
				t.Fatalf("check did not notice the damage:\n%s", r)
			}
			if !c.report(rep) {
				t.Errorf("the report does not show the damage:\n%s", r.stdout)
			}
			if l := lines(r.stderr); len(l) != 1 {
				t.Errorf("want one line on stderr, got:\n%s", r.stderr)
			}

			rep, r = runCheck(t, store, "--repair")
			if r.code != 0 || !rep.Repaired {
				t.Fatalf("check --repair:\n%s", r)
			}
			if c.refetch && exists(topDir(store)) {
				t.Errorf("the damaged layer is still there after repair")
			}
			if d := dirEntries(t, filepath.Join(store, "tmp")); len(d) != 0 {
				t.Errorf("tmp/ after repair: %v", d)
			}

			// The next create fetches the removed layer, and only it.
			frag := create(t, store, ref, "second")
			got := registryBlobGets(t, repo, topBlob) - before
			want := 0
			if c.refetch {
				want = 1
			}
			if got != want {
				t.Errorf("the top layer's blob was fetched %d times after repair, want %d", got, want)
			}
			if rep, r := runCheck(t, store); r.code != 0 || !rep.Healthy {
				t.Errorf("check after repair and create is not healthy:\n%s", r)
			}
			// The repaired layer has its content back.
			for _, m := range frag.Mounts {
				for _, o := range m.Options {
					if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
						if got := readFile(t, filepath.Join(strings.Split(v, ":")[0], "app/a")); got != "alpha\n" {
							t.Errorf("app/a after repair: %q", got)
						}
					}
				}
			}
			if ro := rootOwned(t, store); len(ro) > 0 {
				t.Errorf("files owned by host root in the store: %v", ro)
			}
		})
	}
}

// TestCheckQuickFindsWhatACutLeaves: what a power cut leaves on a store
// without sync (a layer file shorter than written, an empty record, an
// image dir that never reached the disk) is found by check --quick, the
// boot-time check, and mended by check --quick --repair: then the full
// check passes and the next create of the image works. A file changed in
// place at the same size is what --quick does not see (the full check does).
func TestCheckQuickFindsWhatACutLeaves(t *testing.T) {
	need(t)
	t.Parallel()
	base := rawTar(t, nil, tDir("etc"), tReg("etc/passwd", "root:x:0:0::/:/bin/sh\n"))
	top := rawTar(t, nil, tDir("app"), tReg("app/a", strings.Repeat("alpha\n", 1000)), tReg("app/b", "bravo\n"))
	b := buildRaw(t, []rawLayer{gzLayer(t, base), gzLayer(t, top)}, nil)
	topDir := func(store string) string { return filepath.Join(store, "layers", b.Layers[1].DiffID.Encoded()) }
	for i, c := range []struct {
		name   string
		damage func(store string) error
		quick  bool // check --quick must see it
	}{
		{"file emptied", func(store string) error { return os.Truncate(filepath.Join(topDir(store), "diff/app/a"), 0) }, true},
		{"file cut short", func(store string) error { return os.Truncate(filepath.Join(topDir(store), "diff/app/a"), 4096) }, true},
		{"image record empty", func(store string) error {
			return os.WriteFile(filepath.Join(imageDir(store, "first"), "image.json"), nil, 0o644)
		}, true},
		{"upper dir gone", func(store string) error { return os.RemoveAll(filepath.Join(imageDir(store, "first"), "diff")) }, true},
		{"same size, other bytes", func(store string) error {
			return os.WriteFile(filepath.Join(topDir(store), "diff/app/b"), []byte("BRAVO\n"), 0)
		}, false},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			ref := pushRaw(t, "quick-"+itoa(i), h.registry, b)
			store := newStore(t)
			create(t, store, ref, "first")
			if rep, r := runCheck(t, store, "--quick"); r.code != 0 || !rep.Healthy || rep.LayersChecked != 2 {
				t.Fatalf("check --quick of a fresh store:\n%s", r)
			}
			if err := c.damage(store); err != nil {
				t.Fatal(err)
			}
			if rep, r := runCheck(t, store); r.code == 0 || rep.Healthy {
				t.Fatalf("the full check did not notice:\n%s", r)
			}
			rep, r := runCheck(t, store, "--quick")
			if !c.quick {
				if r.code != 0 || !rep.Healthy {
					t.Errorf("check --quick reads no content, yet it failed on a same-size change:\n%s", r)
				}
				return
			}
			if r.code == 0 || rep.Healthy || len(rep.Images) != 1 || rep.Images[0].ID != "first" {
				t.Fatalf("check --quick: want the image reported damaged:\n%s", r)
			}
			if rep, r := runCheck(t, store, "--quick", "--repair"); r.code != 0 || !rep.Repaired {
				t.Fatalf("check --quick --repair:\n%s", r)
			}
			if l := taproot(t, store, "list"); strings.Contains(l.stdout, `"first"`) {
				t.Errorf("the damaged image is still listed: %s", l.stdout)
			}
			create(t, store, ref, "first")
			if rep, r := runCheck(t, store); r.code != 0 || !rep.Healthy {
				t.Errorf("check after repair and create:\n%s", r)
			}
		})
	}
}
