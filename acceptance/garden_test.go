package acceptance

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// These tests play Garden (cloudfoundry/guardian, package imageplugin): they
// build the exact argv Guardian's command creators build, read stdout the way
// ImagePlugin.Create/Metrics/Capacity do, and build the container's bundle
// the way rundmc's bundle rules do (root.path, prepended mounts, env).

// gardenPlugin is one configured image plugin: Garden's image_plugin (or
// privileged_image_plugin) and its image_plugin_extra_arg list.
type gardenPlugin struct {
	extraArgs []string
	// idMappings is what older Guardians (UnprivilegedCommandCreator) add to
	// create as --uid-mapping/--gid-mapping pairs; newer ones add none.
	idMappings []specs.LinuxIDMapping
	gidMap     []specs.LinuxIDMapping // gid values for the same pairs
}

// gardenRootfsSpec is the part of gardener.RootfsSpec the plugin sees.
type gardenRootfsSpec struct {
	rootFS             string // the container's rootfs URL, as the Garden client gave it
	quotaSize          int64
	exclusive          bool // garden.DiskLimitScopeExclusive
	username, password string
}

// createArgv is imageplugin.DefaultCommandCreator.CreateCommand (with the
// mapping flags of the older UnprivilegedCommandCreator when idMappings is set).
func (p gardenPlugin) createArgv(handle string, spec gardenRootfsSpec) []string {
	args := append(append([]string{}, p.extraArgs...), "create")
	for i, m := range p.idMappings {
		args = append(args, "--uid-mapping", mapping(m), "--gid-mapping", mapping(p.gidMap[i]))
	}
	if spec.quotaSize > 0 {
		args = append(args, "--disk-limit-size-bytes", strconv.FormatInt(spec.quotaSize, 10))
		if spec.exclusive {
			args = append(args, "--exclude-image-from-quota")
		}
	}
	if spec.username != "" {
		args = append(args, "--username", spec.username)
	}
	if spec.password != "" {
		args = append(args, "--password", spec.password)
	}
	rootfs := strings.Replace(spec.rootFS, "#", ":", 1)
	return append(args, rootfs, handle)
}

func (p gardenPlugin) argv(cmd ...string) []string {
	return append(append([]string{}, p.extraArgs...), cmd...)
}

func mapping(m specs.LinuxIDMapping) string {
	return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
}

// runPlugin runs taproot with exactly argv, as the test user (an unprivileged
// Garden runs its image plugin as itself), or as root for the privileged plugin.
func runPlugin(t *testing.T, privileged bool, argv []string) result {
	t.Helper()
	full := append([]string{h.taproot}, argv...)
	if !privileged {
		full = asUser(full...)
	}
	r := execute(t, 3*time.Minute, full)
	t.Logf("garden: taproot %s: exit %d in %v", strings.Join(argv, " "), r.code, r.dur.Round(time.Millisecond))
	return r
}

// gardenCreate is imageplugin.ImagePlugin.Create: run, unmarshal stdout into
// a runtime spec, default Process and Root.
func gardenCreate(t *testing.T, p gardenPlugin, handle string, spec gardenRootfsSpec) *specs.Spec {
	t.Helper()
	r := runPlugin(t, false, p.createArgv(handle, spec))
	if r.code != 0 {
		t.Fatalf("running image plugin create:\n%s", r)
	}
	var rs specs.Spec
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		t.Fatalf("parsing image plugin create: %v\n%s", err, r.stdout)
	}
	if rs.Process == nil {
		rs.Process = &specs.Process{}
	}
	if rs.Root == nil {
		rs.Root = &specs.Root{}
	}
	return &rs
}

// gardenBundle is what rundmc's bundle rules take from the image plugin's
// spec: RootFS → root.path, Mounts → WithPrependedMounts, Env → the image's
// env followed by the container spec's env. Nothing else (not cwd, user,
// args or mappings: Garden sets those itself).
func gardenBundle(t *testing.T, rs *specs.Spec, containerEnv []string, script string) *specs.Spec {
	t.Helper()
	seen := &specs.Spec{
		Root:    &specs.Root{Path: rs.Root.Path},
		Mounts:  rs.Mounts,
		Process: &specs.Process{Env: append(append([]string{}, rs.Process.Env...), containerEnv...)},
	}
	cfg, err := bundle.Config(seen, bundle.Options{
		Args:        []string{"/bin/sh", "-c", script},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.uid), Size: 1}, {ContainerID: 1, HostID: h.subuid, Size: 65536}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.gid), Size: 1}, {ContainerID: 1, HostID: h.subgid, Size: 65536}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writeConfig writes a taproot config file readable by the test user.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(testDir(t, "layouts"), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The whole contract with an unprivileged Garden: global flags as
// image_plugin_extra_arg, create with mappings and a registry URL in both
// Garden spellings, a local tarball as default rootfs, the bundle built from
// root.path + mounts + env run by rootless runc, stats, capacity, delete (by
// both plugins, as Garden's Destroy does), and repeated delete.
func TestGardenImagePlugin(t *testing.T) {
	need(t)
	t.Parallel()
	img := busyboxImage(layer(ib.Dir("etc"), ib.File("etc/garden", "from the registry\n")))
	img.Config.Env = []string{"PATH=/bin:/usr/bin", "IMAGE_VAR=from-image"}
	pushImage(t, "garden", img)

	store := newStore(t)
	cfg := writeConfig(t, fmt.Sprintf("log_format = \"json\"\n[create]\ninsecure_registries = [%q]\n", h.registry))
	plugin := gardenPlugin{
		extraArgs: []string{"--store", store, "--config", cfg, "--log-level", "info"},
		idMappings: []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: uint32(h.uid), Size: 1}, {ContainerID: 1, HostID: h.subuid, Size: 65536},
		},
		gidMap: []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: uint32(h.gid), Size: 1}, {ContainerID: 1, HostID: h.subgid, Size: 65536},
		},
	}

	// A local rootfs tarball, as Garden's default_rootfs usually is.
	tarball := filepath.Join(testDir(t, "layouts"), "rootfs.tar.gz")
	raw, err := layer(ib.File("etc/garden", "from the tarball\n")).Tar()
	if err != nil {
		t.Fatal(err)
	}
	base, err := h.baseLayer.Tar()
	if err != nil {
		t.Fatal(err)
	}
	writeTarGz(t, tarball, base[:len(base)-1024], raw) // busybox entries, then ours

	cases := []struct {
		handle, rootfs, want string
		wantImageEnv         bool
	}{
		// Garden replaces the first '#' with ':' before calling the plugin.
		{"garden-hash-tag", "docker://" + h.registry + "/acceptance/garden#latest", "from the registry", true},
		{"garden-colon-tag", "docker://" + h.registry + "/acceptance/garden:latest", "from the registry", true},
		{"garden-local-tarball", tarball, "from the tarball", false},
	}
	for _, c := range cases {
		rs := gardenCreate(t, plugin, c.handle, gardenRootfsSpec{rootFS: c.rootfs})
		if rs.Root.Path == "" || !filepath.IsAbs(rs.Root.Path) {
			t.Fatalf("%s: root.path = %q, want an absolute path (Garden uses it as the bundle's root)", c.handle, rs.Root.Path)
		}
		if len(rs.Mounts) == 0 {
			t.Fatalf("%s: no mounts: rootless Garden needs the overlay mount to prepend", c.handle)
		}
		if c.wantImageEnv && !contains(rs.Process.Env, "IMAGE_VAR=from-image") {
			t.Errorf("%s: process.env = %q lacks the image's IMAGE_VAR", c.handle, rs.Process.Env)
		}
		b := gardenBundle(t, rs, []string{"CONTAINER_VAR=from-garden"}, `cat /etc/garden; echo "$IMAGE_VAR/$CONTAINER_VAR"; touch /written && echo ok`)
		r := runConfig(t, runc, b)
		if r.code != 0 {
			t.Fatalf("%s: runc:\n%s", c.handle, r)
		}
		wantVar := "/from-garden"
		if c.wantImageEnv {
			wantVar = "from-image/from-garden"
		}
		if want := c.want + "\n" + wantVar + "\nok\n"; r.stdout != want {
			t.Errorf("%s: container printed %q, want %q", c.handle, r.stdout, want)
		}
	}

	// Metrics: map[string]map[string]uint64, disk_usage.{total,exclusive}_bytes_used.
	r := runPlugin(t, false, plugin.argv("stats", "garden-colon-tag"))
	if r.code != 0 {
		t.Fatalf("running image plugin metrics:\n%s", r)
	}
	var stats map[string]map[string]uint64
	if err := json.NewDecoder(strings.NewReader(r.stdout)).Decode(&stats); err != nil {
		t.Fatalf("parsing stats: %v: %q", err, r.stdout)
	}
	du, ok := stats["disk_usage"]
	if _, hasTotal := du["total_bytes_used"]; !ok || !hasTotal {
		t.Errorf("stats %q lack disk_usage.total_bytes_used", r.stdout)
	}
	if _, ok := du["exclusive_bytes_used"]; !ok {
		t.Errorf("stats %q lack disk_usage.exclusive_bytes_used", r.stdout)
	}
	if du["total_bytes_used"] < du["exclusive_bytes_used"] || du["total_bytes_used"] == 0 {
		t.Errorf("stats %q: want total ≥ exclusive and total > 0 (the image's own size)", r.stdout)
	}

	// Capacity: {"capacity": N}.
	t.Run("capacity", func(t *testing.T) {
		r := runPlugin(t, false, plugin.argv("capacity"))
		if r.code != 0 {
			t.Fatalf("running image plugin capacity:\n%s", r)
		}
		var capacity map[string]uint64
		if err := json.NewDecoder(strings.NewReader(r.stdout)).Decode(&capacity); err != nil {
			t.Fatalf("parsing capacity: %v: %q", err, r.stdout)
		}
		if capacity["capacity"] == 0 {
			t.Errorf("capacity = %q, want {\"capacity\": N} with N > 0", r.stdout)
		}
	})

	// Destroy: Garden runs delete with the unprivileged plugin, then with the
	// privileged one (here root with its own store, which never had it).
	rootStore := filepath.Join(testDir(t, "stores"), "root-store")
	privileged := gardenPlugin{extraArgs: []string{"--store", rootStore}}
	for _, handle := range []string{"garden-hash-tag", "garden-colon-tag", "garden-local-tarball"} {
		for i, pr := range []struct {
			p    gardenPlugin
			priv bool
		}{{plugin, false}, {privileged, true}, {plugin, false}} {
			r := runPlugin(t, pr.priv, pr.p.argv("delete", handle))
			if r.code != 0 {
				t.Fatalf("delete %s (call %d, privileged=%v) must succeed for Garden's Destroy:\n%s", handle, i, pr.priv, r)
			}
			if strings.TrimSpace(r.stdout) != "" {
				t.Errorf("delete printed %q on stdout", r.stdout)
			}
		}
	}
	r = runPlugin(t, false, plugin.argv("list"))
	var left []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &left); r.code != 0 || err != nil || len(left) != 0 {
		t.Errorf("after delete, list = %q (exit %d, %v), want []", r.stdout, r.code, err)
	}

	// The logs went to stderr, as JSON lines that Garden's relogger can read.
	r = runPlugin(t, false, plugin.argv("delete", "never-created"))
	if r.code != 0 {
		t.Fatalf("delete of an unknown handle:\n%s", r)
	}
	for _, l := range lines(r.stderr) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("stderr line is not JSON (log_format = \"json\" in the config): %q", l)
		}
	}
	if !strings.Contains(r.stderr, "never-created") {
		t.Errorf("delete of an unknown handle should warn naming it; stderr: %q", r.stderr)
	}
}

// Newer Guardians pass no mappings: the store's mapping (from its first
// create, the config or /etc/subuid) applies. Garden's quota flags are
// accepted; on a store without XFS quotas a limit is either refused with a
// clear error or accepted with a warning that names quotas.
func TestGardenNoMappingsAndQuotaFlags(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, "garden-nomap", busyboxImage(layer(ib.File("m", "nomap\n"))))
	store := newStore(t)
	cfg := writeConfig(t, fmt.Sprintf("[create]\ninsecure_registries = [%q]\n", h.registry))
	// The BOSH form: image_plugin_extra_args: ["--config=/path", …], one argv element each.
	plugin := gardenPlugin{extraArgs: []string{"--config=" + cfg, "--store=" + store}}

	rs := gardenCreate(t, plugin, "nomap", gardenRootfsSpec{rootFS: strings.TrimSuffix(ref, ":latest") + "#latest"})
	r := runConfig(t, runc, gardenBundle(t, rs, nil, "cat /m"))
	if r.code != 0 || r.stdout != "nomap\n" {
		t.Fatalf("runc: want %q:\n%s", "nomap\n", r)
	}

	// GrootFS users write #TAG themselves; Garden would have turned it into :TAG.
	r = runPlugin(t, false, plugin.argv("create", strings.TrimSuffix(ref, ":latest")+"#latest", "rawhash"))
	if r.code != 0 {
		t.Fatalf("create with a GrootFS #tag:\n%s", r)
	}

	r = runPlugin(t, false, plugin.createArgv("limited", gardenRootfsSpec{rootFS: ref, quotaSize: 64 << 20, exclusive: true}))
	if strings.Contains(r.stderr, "unknown flag") {
		t.Fatalf("Garden's quota flags are not accepted:\n%s", r)
	}
	mentionsQuota := strings.Contains(strings.ToLower(r.stderr), "quota") || strings.Contains(r.stderr, "init-store")
	if r.code == 0 {
		// This store is not on XFS with pquota: a limit it cannot enforce
		// must at least be reported, never dropped silently.
		if !mentionsQuota {
			t.Errorf("a disk limit on a store without quotas was accepted without a word:\n%s", r)
		}
		return
	}
	if !mentionsQuota {
		t.Errorf("a disk limit on a store without quotas should fail naming quotas or init-store:\n%s", r)
	}
	if exists(imageDir(store, "limited")) {
		t.Errorf("failed create left images/limited behind")
	}
}

func writeTarGz(t *testing.T, path string, parts ...[]byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, p := range parts {
		zw.Write(p)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
