package acceptance

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	"github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
	"github.com/taproot-dev/taproot/acceptance/internal/subids"
)

// The harness: one registry, one unprivileged user, the built binaries.
// Everything runs as that user except the harness itself (root).
var h struct {
	skip       string // reason to skip every test, if set
	fatal      error  // setup failure: every test fails with it
	taprootErr error  // no taproot binary: every test that needs one fails with it

	work      string // temp root, 0755, holds bins, stores, bundles
	taproot   string // binary, readable and executable by the test user
	quota     string // taproot-quota binary ("" if not built)
	busybox   string // static busybox on the host
	user      string
	uid, gid  int
	home      string
	subuid    uint32 // first sub-UID of the user's range
	subgid    uint32
	xdg       string // XDG_RUNTIME_DIR of the user
	skeleton  string // crun workaround root: /bin/busybox and /mnt
	registry  string // 127.0.0.1:PORT
	regLog    string // registry stdout+stderr (access log)
	regCmd    *exec.Cmd
	baseLayer imagebuilder.Layer
}

var seq atomic.Int64

func TestMain(m *testing.M) {
	setup()
	code := m.Run()
	teardown()
	os.Exit(code)
}

func setup() {
	if os.Getuid() != 0 {
		h.skip = "the acceptance tests run as root and drop to the unprivileged test user: run `make test` as root"
		return
	}
	h.user = os.Getenv("TAPROOT_TEST_USER")
	if h.user == "" {
		h.user = "taproot-test"
	}
	u, err := user.Lookup(h.user)
	if err != nil {
		h.skip = fmt.Sprintf("test user %q does not exist: run `make test` as root or scripts/test-user.sh", h.user)
		return
	}
	h.uid, _ = strconv.Atoi(u.Uid)
	h.gid, _ = strconv.Atoi(u.Gid)
	h.home = u.HomeDir
	if h.subuid, err = subids.First(h.user, false, 65536); err != nil {
		h.skip = err.Error() + ": run scripts/test-user.sh (getsubids is in uidmap: scripts/deps.sh)"
		return
	}
	if h.subgid, err = subids.First(h.user, true, 65536); err != nil {
		h.skip = err.Error() + ": run scripts/test-user.sh (getsubids is in uidmap: scripts/deps.sh)"
		return
	}
	for _, tool := range []string{"runc", "setpriv", "docker-registry", "newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			h.skip = tool + " is not installed: run scripts/deps.sh (or `make test`) as root"
			return
		}
	}
	h.busybox = os.Getenv("TAPROOT_BUSYBOX")
	if h.busybox == "" {
		h.busybox = "/bin/busybox"
	}
	if err := checkStatic(h.busybox); err != nil {
		h.skip = fmt.Sprintf("%v: install busybox-static (scripts/deps.sh)", err)
		return
	}

	h.work, err = os.MkdirTemp("", "taproot-acceptance-")
	if err != nil {
		h.fatal = err
		return
	}
	if err := os.Chmod(h.work, 0o755); err != nil {
		h.fatal = err
		return
	}
	for _, d := range []string{"bin", "stores", "bundles", "layouts", "xdg", "skeleton/bin", "skeleton/mnt", "skeleton/proc", "skeleton/dev", "skeleton/sys"} {
		if err := mkdirOwned(filepath.Join(h.work, d)); err != nil {
			h.fatal = err
			return
		}
	}
	h.xdg = filepath.Join(h.work, "xdg")
	_ = os.Chmod(h.xdg, 0o700)
	h.skeleton = filepath.Join(h.work, "skeleton")
	if err := copyFile(h.busybox, filepath.Join(h.skeleton, "bin", "busybox"), 0o755); err != nil {
		h.fatal = err
		return
	}

	if h.taproot, err = binary("TAPROOT_BIN", "taproot", "./cmd/taproot"); err != nil {
		h.taprootErr = err
	}
	if h.quota, err = binary("TAPROOT_QUOTA_BIN", "taproot-quota", "./cmd/taproot-quota"); err != nil {
		// The quota helper is not used by these tests; say so and go on.
		fmt.Fprintf(os.Stderr, "acceptance: no taproot-quota binary (%v); quota tests live in acceptance/uml\n", err)
		h.quota = ""
	}

	if h.baseLayer, err = imagebuilder.BusyboxLayer(h.busybox, imagebuilder.Gzip); err != nil {
		h.fatal = err
		return
	}
	if err := startRegistry(); err != nil {
		h.fatal = fmt.Errorf("start docker-registry: %w", err)
		return
	}
}

// terminate stops a started command: SIGTERM, then SIGKILL if it has not
// exited 5 s later; it returns once the command has been waited for.
func terminate(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func teardown() {
	if h.regCmd != nil && h.regCmd.Process != nil {
		terminate(h.regCmd)
	}
	if h.work != "" {
		if os.Getenv("TAPROOT_KEEP") != "" {
			fmt.Fprintf(os.Stderr, "acceptance: kept %s (TAPROOT_KEEP set)\n", h.work)
			return
		}
		_ = os.RemoveAll(h.work)
	}
}

// need is the first call of every test of taproot.
func need(t *testing.T) {
	t.Helper()
	needHarness(t)
	if h.taprootErr != nil {
		t.Fatalf("no taproot binary: %v", h.taprootErr)
	}
}

// needHarness is the first call of the harness's own tests.
func needHarness(t *testing.T) {
	t.Helper()
	if h.skip != "" {
		t.Skip(h.skip)
	}
	if h.fatal != nil {
		t.Fatalf("acceptance setup: %v", h.fatal)
	}
}

// binary returns a copy, in the work dir, of $env or of `go build pkg`.
func binary(env, name, pkg string) (string, error) {
	dst := filepath.Join(h.work, "bin", name)
	if src := os.Getenv(env); src != "" {
		// go test runs in acceptance/: a path relative to the checkout
		// (TAPROOT_BIN=bin/taproot, as typed at its top) means ../bin/taproot.
		if !filepath.IsAbs(src) && !exists(src) && exists(filepath.Join("..", src)) {
			src = filepath.Join("..", src)
		}
		if err := copyFile(src, dst, 0o755); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, src, err)
		}
		return dst, nil
	}
	cmd := exec.Command("go", "build", "-tags=containers_image_openpgp", "-o", dst, pkg)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (set %s to use a built one): %v\n%s", pkg, env, err, out)
	}
	return dst, nil
}

func startRegistry() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	h.registry = fmt.Sprintf("127.0.0.1:%d", port)
	dir := filepath.Join(h.work, "registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), h.registry)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	h.regLog = filepath.Join(dir, "registry.log")
	logf, err := os.Create(h.regLog)
	if err != nil {
		return err
	}
	h.regCmd = exec.Command("docker-registry", "serve", cfgPath)
	h.regCmd.Stdout, h.regCmd.Stderr = logf, logf
	if err := h.regCmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + h.registry + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(h.regLog)
	return fmt.Errorf("registry on %s did not answer /v2/ within 15s; log:\n%s", h.registry, out)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// registryBlobGets counts successful GETs of the blob in the repository
// in the registry's access log.
func registryBlobGets(t *testing.T, repo string, d digest.Digest) int {
	t.Helper()
	data, err := os.ReadFile(h.regLog)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"GET /v2/` + regexp.QuoteMeta(repo) + `/blobs/` + regexp.QuoteMeta(d.String()) + ` HTTP/[0-9.]+" (200|206) `)
	return len(re.FindAll(data, -1))
}

func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return nil
}

func mkdirOwned(p string) error {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.Chown(p, h.uid, h.gid)
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// testDir makes a fresh dir owned by the test user under the work dir.
func testDir(t *testing.T, kind string) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	p := filepath.Join(h.work, kind, fmt.Sprintf("%s-%d", name, seq.Add(1)))
	if err := mkdirOwned(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// newStore returns the path of a store that does not exist yet, in a dir
// the test user owns; taproot creates it on first use.
func newStore(t *testing.T) string {
	return filepath.Join(testDir(t, "stores"), "store")
}

type result struct {
	stdout, stderr string
	code           int
	dur            time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.code, r.dur.Round(time.Millisecond), r.stdout, r.stderr)
}

// userEnv is the whole environment of processes run as the test user.
func userEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + h.home,
		"USER=" + h.user,
		"LOGNAME=" + h.user,
		"XDG_RUNTIME_DIR=" + h.xdg,
		"LANG=C",
	}
}

// asUser prefixes argv so that it runs as the test user.
func asUser(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=" + strconv.Itoa(h.uid), "--regid=" + strconv.Itoa(h.gid), "--init-groups", "--"}, argv...)
}

func execute(t *testing.T, timeout time.Duration, argv []string) result {
	t.Helper()
	return executeEnv(t, timeout, userEnv(), argv)
}

// rootEnv is the whole environment of taproot run as root by the tests.
func rootEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C"}
}

// executeEnv runs argv with exactly env; a run past timeout fails the test.
func executeEnv(t *testing.T, timeout time.Duration, env, argv []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), dur: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ctx.Err() != nil {
			t.Fatalf("%s: timed out after %v\n%s", strings.Join(argv, " "), timeout, r)
		}
	default:
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return r
}

// taproot runs the taproot binary as the test user against the store.
func taproot(t *testing.T, store string, args ...string) result {
	t.Helper()
	argv := asUser(append([]string{h.taproot, "--store", store}, args...)...)
	r := execute(t, 3*time.Minute, argv)
	t.Logf("taproot %s: exit %d in %v", strings.Join(args, " "), r.code, r.dur.Round(time.Millisecond))
	return r
}

// create runs `taproot create` with the test registry marked insecure and
// fails the test unless it succeeds with a fragment on stdout.
func create(t *testing.T, store, ref, id string, extra ...string) *specs.Spec {
	t.Helper()
	args := append([]string{"create", "--insecure-registry", h.registry}, extra...)
	r := taproot(t, store, append(args, ref, id)...)
	if r.code != 0 {
		t.Fatalf("taproot create %s %s failed:\n%s", ref, id, r)
	}
	frag, err := bundle.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("taproot create %s %s: %v\nstdout:\n%s", ref, id, err, r.stdout)
	}
	return frag
}

type runtimeKind string

const (
	runc runtimeKind = "runc"
	crun runtimeKind = "crun"
)

// inContainer runs `sh -c script` in a container made from the fragment,
// with the runtime, as the test user; it returns what the process printed.
func inContainer(t *testing.T, rt runtimeKind, store string, frag *specs.Spec, script string) result {
	t.Helper()
	opts := bundle.Options{
		Args:        []string{"/bin/sh", "-c", script},
		StoreDir:    store,
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.uid), Size: 1}, {ContainerID: 1, HostID: h.subuid, Size: 65536}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.gid), Size: 1}, {ContainerID: 1, HostID: h.subgid, Size: 65536}},
	}
	if rt == crun {
		opts.ChrootSkeleton = h.skeleton
	}
	cfg, err := bundle.Config(frag, opts)
	if err != nil {
		t.Fatal(err)
	}
	return runConfig(t, rt, cfg)
}

// runConfig runs a full config.json with the runtime as the test user.
func runConfig(t *testing.T, rt runtimeKind, cfg *specs.Spec) result {
	t.Helper()
	dir := testDir(t, "bundles")
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := mkdirOwned(state); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dir)
	var argv []string
	switch rt {
	case runc:
		argv = asUser("runc", "--root", state, "run", "--bundle", dir, name)
	case crun:
		// crun 1.8.1 refuses a hybrid cgroup v1/v2 host, which it detects
		// by /sys/fs/cgroup/unified: hide that in a private mount namespace.
		script := `if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi; exec "$@"`
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"},
			asUser("crun", "--root", state, "--cgroup-manager=disabled", "run", "--bundle", dir, name)...)
	}
	r := execute(t, 2*time.Minute, argv)
	t.Logf("%s run: exit %d in %v", rt, r.code, r.dur.Round(time.Millisecond))
	return r
}

// sh runs the script with runc and fails the test unless it exits 0.
func sh(t *testing.T, store string, frag *specs.Spec, script string) string {
	t.Helper()
	r := inContainer(t, runc, store, frag, script)
	if r.code != 0 {
		t.Fatalf("runc: sh -c %q:\n%s", script, r)
	}
	return r.stdout
}

// pushImage writes img as an OCI layout and pushes it to the registry as
// acceptance/<name>:latest; it returns the docker:// reference.
func pushImage(t *testing.T, name string, img imagebuilder.Image) (string, imagebuilder.Built) {
	t.Helper()
	dir := testDir(t, "layouts")
	b, err := imagebuilder.WriteLayout(dir, "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	repo := "acceptance/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := imagebuilder.Push(ctx, b, h.registry, repo); err != nil {
		t.Fatal(err)
	}
	return "docker://" + h.registry + "/" + repo + ":latest", b
}

// busyboxImage is the busybox base layer with the layers on top.
func busyboxImage(layers ...imagebuilder.Layer) imagebuilder.Image {
	return imagebuilder.Image{
		Layers: append([]imagebuilder.Layer{h.baseLayer}, layers...),
		Config: imagebuilder.Config{Env: []string{"PATH=/bin:/usr/bin"}, WorkingDir: "/", Cmd: []string{"/bin/sh"}},
	}
}

// layer is a gzip layer of the entries.
func layer(entries ...imagebuilder.Entry) imagebuilder.Layer {
	return imagebuilder.Layer{Entries: entries, Compression: imagebuilder.Gzip}
}

// layerDir is where the store keeps the unpacked layer.
func layerDir(store string, diffID digest.Digest) string {
	return filepath.Join(store, "layers", diffID.Encoded(), "diff")
}

func imageDir(store, id string) string { return filepath.Join(store, "images", id) }

// lines splits output into trimmed non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// dirEntries lists names in dir ("" entries if it does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func itoa(i int) string { return strconv.Itoa(i) }
