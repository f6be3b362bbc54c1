package acceptance

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// TestHarnessRuntimes checks the harness's own real parts without taproot:
// a layer unpacked by the host's tar and a hand-written fragment run under
// runc and crun as the test user. When this fails, the other failures say
// nothing about taproot.
func TestHarnessRuntimes(t *testing.T) {
	needHarness(t)
	t.Parallel()
	dir := testDir(t, "stores")
	lower := filepath.Join(dir, "lower")
	for _, d := range []string{"lower", "rootfs", "diff", "work"} {
		if err := mkdirOwned(filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := h.baseLayer.Tar()
	if err != nil {
		t.Fatal(err)
	}
	tar := exec.Command("tar", "-x", "-C", lower, "--numeric-owner")
	tar.Stdin = strings.NewReader(string(raw))
	if out, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(lower, "etc", "x"), []byte("from-lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Container 0 is the test user: the layer's root-owned files become its.
	if out, err := exec.Command("chown", "-R", "-h", "--from=0:0", strings.Join([]string{itoa(h.uid), itoa(h.gid)}, ":"), lower).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	frag := &specs.Spec{
		Root: &specs.Root{Path: filepath.Join(dir, "rootfs")},
		Mounts: []specs.Mount{{
			Destination: "/", Type: "overlay", Source: "overlay",
			Options: []string{"userxattr", "lowerdir=" + lower, "upperdir=" + filepath.Join(dir, "diff"), "workdir=" + filepath.Join(dir, "work")},
		}},
		Process: &specs.Process{Env: []string{"PATH=/bin"}, Cwd: "/"},
	}
	for _, rt := range []runtimeKind{runc, crun} {
		t.Run(string(rt), func(t *testing.T) {
			if _, err := exec.LookPath(string(rt)); err != nil {
				t.Skipf("%s is not installed (scripts/deps.sh installs it)", rt)
			}
			r := inContainer(t, rt, dir, frag, "id; cat /etc/x; echo "+string(rt)+" > /tmp/w; cat /tmp/w")
			if r.code != 0 {
				t.Fatalf("%s:\n%s", rt, r)
			}
			// crun sets no supplementary groups, so id prints no groups=.
			out := lines(r.stdout)
			if len(out) != 3 || !strings.HasPrefix(out[0], "uid=0(root) gid=0(root)") || out[1] != "from-lower" || out[2] != string(rt) {
				t.Errorf("%s printed %q, want uid=0(root) gid=0(root)…, from-lower, %s", rt, r.stdout, rt)
			}
			got, err := os.ReadFile(filepath.Join(dir, "diff", "tmp", "w"))
			if err != nil || string(got) != string(rt)+"\n" {
				t.Errorf("write did not land in the upper dir: %q, %v", got, err)
			}
		})
	}
}

// TestHarnessRegistry checks the push path (incl. a zstd layer, which the
// registry must accept as is) and that blob GETs are counted per digest.
func TestHarnessRegistry(t *testing.T) {
	needHarness(t)
	t.Parallel()
	z := ib.Layer{Compression: ib.Zstd, Entries: []ib.Entry{ib.File("z", "zstd\n")}}
	_, b := pushImage(t, "harness-registry", busyboxImage(z))
	// distribution answers 404 for an OCI manifest unless the client accepts it.
	req, err := http.NewRequest("GET", "http://"+h.registry+"/v2/acceptance/harness-registry/manifests/"+b.ManifestDigest.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", b.Manifest.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest GET: %s", resp.Status)
	}
	d := b.Layers[1].Digest
	before := registryBlobGets(t, "acceptance/harness-registry", d)
	for i := 0; i < 2; i++ {
		resp, err := http.Get("http://" + h.registry + "/v2/acceptance/harness-registry/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || digest.FromBytes(data) != d {
			t.Fatalf("blob GET: %s, digest %s", resp.Status, digest.FromBytes(data))
		}
	}
	// The access log is written asynchronously: give it a moment.
	deadline := time.Now().Add(2 * time.Second)
	for registryBlobGets(t, "acceptance/harness-registry", d)-before != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("counted %d GETs of %s, want 2", registryBlobGets(t, "acceptance/harness-registry", d)-before, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
