package acceptance

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// metricValue reads one metric of `taproot metrics`.
func metricValue(t *testing.T, store string, global []string, name string) string {
	t.Helper()
	r := tp(t, store, nil, global, "metrics")
	if r.code != 0 {
		t.Fatalf("metrics:\n%s", r)
	}
	for _, l := range lines(r.stdout) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	t.Fatalf("metrics has no %s:\n%s", name, r.stdout)
	return ""
}

// A flag given on the command line wins over the config even when it says
// "off": --disk-limit-size-bytes 0 over [create] disk_limit_size_bytes and
// --exclude-image-from-quota=false over exclude_image_from_quota = true.
// The store has no project quotas, so limits are recorded (and summed by
// metrics) but not enforced; a limit below the image size is refused
// either way (exit 6), unless the image is excluded from it.
func TestCreateFlagsOverConfig(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, uniq("precedence"), busyboxImage())
	store := newStore(t)
	cfg := []string{"--config", writeConfig(t, "[create]\ndisk_limit_size_bytes = 1\nexclude_image_from_quota = true\n")}
	mk := func(id string, flags ...string) result {
		return tp(t, store, nil, cfg, append(append([]string{"create", "--insecure-registry", h.registry}, flags...), ref, id)...)
	}

	// The config alone: a 1-byte limit the image is excluded from.
	mustCreate(t, mk("from-config"), "create with the config's limit")
	if got := metricValue(t, store, cfg, "taproot_image_disk_limit_bytes"); got != "1" {
		t.Fatalf("after a create with the config's 1-byte limit, taproot_image_disk_limit_bytes = %s, want 1", got)
	}
	// --disk-limit-size-bytes 0: no limit, not the config's.
	mustCreate(t, mk("no-limit", "--disk-limit-size-bytes", "0"), "create --disk-limit-size-bytes 0")
	if got := metricValue(t, store, cfg, "taproot_image_disk_limit_bytes"); got != "1" {
		t.Errorf("--disk-limit-size-bytes 0 did not override the config's limit: taproot_image_disk_limit_bytes = %s, want 1 (only the first image's)", got)
	}
	// --exclude-image-from-quota=false: the image counts against the
	// config's 1-byte limit, which is then too small.
	r := mk("counted", "--exclude-image-from-quota=false")
	if r.code != 6 || !strings.Contains(r.stderr, "disk limit is smaller than the image's base size") {
		t.Errorf("--exclude-image-from-quota=false with a 1-byte config limit: want exit 6 (limit below the image), got:\n%s", r)
	}
	// Both off: no limit at all.
	mustCreate(t, mk("both-off", "--disk-limit-size-bytes", "0", "--exclude-image-from-quota=false"), "create with both flags off")
	if got := metricValue(t, store, cfg, "taproot_images"); got != "3" {
		t.Errorf("taproot_images = %s, want 3", got)
	}
}

// --without-mount asks for the default (the fragment carries the overlay
// mount, nothing is mounted); with --with-mount it is a bad request.
func TestCreateWithoutMount(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, uniq("without-mount"), busyboxImage())
	store := rootStore(t)
	r := rootTaproot(t, store, "create", "--insecure-registry", h.registry, "--with-mount", "--without-mount", ref, "both")
	if r.code != 2 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--with-mount and --without-mount exclude each other") {
		t.Errorf("create --with-mount --without-mount: want exit 2 with one line, got:\n%s", r)
	}
	if r.code == 0 {
		// It mounted: undo that, or the work dir cannot be removed.
		rootTaproot(t, store, "delete", "both")
	}
	if exists(imageDir(store, "both")) {
		t.Errorf("the refused create left %s", imageDir(store, "both"))
	}
	r = rootTaproot(t, store, "create", "--insecure-registry", h.registry, "--without-mount", ref, "plain")
	frag, err := parseFragment(r.stdout)
	if r.code != 0 || err != nil {
		t.Fatalf("create --without-mount: %v\n%s", err, r)
	}
	if len(frag.Mounts) != 1 || frag.Mounts[0].Type != "overlay" || frag.Mounts[0].Destination != "/" {
		t.Errorf("create --without-mount: fragment mounts %+v, want the overlay at /", frag.Mounts)
	}
	if mounted(t, frag.Root.Path) {
		t.Errorf("create --without-mount mounted %s", frag.Root.Path)
	}
	if r := rootTaproot(t, store, "delete", "plain"); r.code != 0 {
		t.Errorf("delete:\n%s", r)
	}
}

// mounted reports whether dir is a mount point (util-linux mountpoint).
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	return executeEnv(t, 10*time.Second, rootEnv(), []string{"mountpoint", "-q", dir}).code == 0
}

// [create] with_clean (or --with-clean) makes create clean first, with
// [clean] threshold_bytes as the threshold; threshold_bytes alone does
// not; --without-clean overrides with_clean.
func TestCreateWithClean(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("withclean")
	refB, bb := pushImage(t, name+"-b", busyboxImage(randomLayer(name+"-b", "b", 256<<10)))
	refC, _ := pushImage(t, name+"-c", busyboxImage(randomLayer(name+"-c", "c", 256<<10)))
	store := newStore(t)
	bTop := layerDir(store, bb.Layers[1].DiffID)
	unusedB := func() {
		t.Helper()
		create(t, store, refB, "b")
		if r := taproot(t, store, "delete", "b"); r.code != 0 {
			t.Fatalf("delete b:\n%s", r)
		}
		if !exists(bTop) {
			t.Fatalf("b's layer %s is gone after delete", bTop)
		}
	}
	n := 0
	mk := func(config string, flags ...string) result {
		n++
		args := append(append([]string{"create", "--insecure-registry", h.registry}, flags...), refC, fmt.Sprintf("c%d", n))
		return tp(t, store, nil, []string{"--config", writeConfig(t, config)}, args...)
	}
	unusedB()
	for _, tc := range []struct {
		what, config string
		flags        []string
	}{
		{"threshold_bytes alone", "[clean]\nthreshold_bytes = 1\n", nil},
		{"with_clean under the threshold", fmt.Sprintf("[create]\nwith_clean = true\n[clean]\nthreshold_bytes = %d\n", committedSize(t, store)+(1<<20)), nil},
		{"--without-clean over with_clean", "[create]\nwith_clean = true\n[clean]\nthreshold_bytes = 1\n", []string{"--without-clean"}},
	} {
		mustCreate(t, mk(tc.config, tc.flags...), "create with "+tc.what)
		if !exists(bTop) {
			t.Fatalf("create with %s cleaned the store: b's unused layer is gone", tc.what)
		}
	}
	r := mk("", "--with-clean", "--without-clean")
	if r.code != 2 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--with-clean and --without-clean exclude each other") {
		t.Errorf("create --with-clean --without-clean: want exit 2 with one line, got:\n%s", r)
	}

	mustCreate(t, mk("[create]\nwith_clean = true\n[clean]\nthreshold_bytes = 1\n"), "create with with_clean over the threshold")
	if exists(bTop) {
		t.Errorf("create with with_clean over threshold_bytes did not clean first: b's unused layer is still there")
	}
	unusedB()
	mustCreate(t, mk("[clean]\nthreshold_bytes = 1\n", "--with-clean"), "create --with-clean")
	if exists(bTop) {
		t.Errorf("create --with-clean over threshold_bytes did not clean first: b's unused layer is still there")
	}
	// The c images' layers survive every clean.
	if got := metricValue(t, store, nil, "taproot_layers_unreferenced"); got != "0" {
		t.Errorf("taproot_layers_unreferenced = %s after the cleans, want 0", got)
	}
	if r := taproot(t, store, "list"); r.code != 0 || strings.Count(r.stdout, `"id"`) != n-1 {
		t.Errorf("list: want the %d c images:\n%s", n-1, r)
	}
}
