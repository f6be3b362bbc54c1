package acceptance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// The thin path: a busybox image from the registry, created by the
// unprivileged user, run rootless by runc and by crun.
func TestBusyboxCreateAndRun(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, "busybox", busyboxImage(layer(
		ib.Dir("etc"), ib.File("etc/x", "hello from layer 2\n"),
	)))
	store := newStore(t)
	frag := create(t, store, ref, "bb")

	// The fragment: root.path under the store, one overlay at "/".
	if frag.Root == nil || frag.Root.Path == "" {
		t.Fatalf("fragment has no root.path")
	}
	if len(frag.Mounts) != 1 || frag.Mounts[0].Destination != "/" || frag.Mounts[0].Type != "overlay" {
		t.Fatalf("fragment mounts = %+v, want one overlay at /", frag.Mounts)
	}
	opts := strings.Join(frag.Mounts[0].Options, ",")
	for _, o := range []string{"lowerdir=", "upperdir=", "workdir=", "userxattr"} {
		if !strings.Contains(opts, o) {
			t.Errorf("overlay options %q lack %s", opts, o)
		}
	}
	if !filepath.IsAbs(frag.Root.Path) {
		t.Errorf("fragment root.path %q is relative: a runtime resolves it against its bundle dir, not the store", frag.Root.Path)
	}
	if frag.Process == nil || !contains(frag.Process.Env, "PATH=/bin:/usr/bin") {
		t.Errorf("fragment process.env lacks the image's PATH=/bin:/usr/bin: %+v", frag.Process)
	}

	for _, rt := range []runtimeKind{runc, crun} {
		t.Run(string(rt), func(t *testing.T) {
			if _, err := exec.LookPath(string(rt)); err != nil {
				t.Skipf("%s is not installed (scripts/deps.sh installs it)", rt)
			}
			r := inContainer(t, rt, store, frag, "id; cat /etc/x; cat /proc/self/uid_map")
			if r.code != 0 {
				t.Fatalf("%s:\n%s", rt, r)
			}
			out := lines(r.stdout)
			if len(out) != 4 || !strings.HasPrefix(out[0], "uid=0(root) gid=0(root)") || out[1] != "hello from layer 2" {
				t.Fatalf("%s printed %q, want id of root, the file and two uid_map lines", rt, r.stdout)
			}
			if f := strings.Fields(out[2]); len(f) != 3 || f[0] != "0" || f[1] != itoa(h.uid) || f[2] != "1" {
				t.Errorf("uid_map line 1 = %q, want 0 %d 1", out[2], h.uid)
			}
		})
	}
}

// The image config reaches the process: env, working dir, user.
func TestImageConfig(t *testing.T) {
	need(t)
	t.Parallel()
	img := busyboxImage(layer(ib.Dir("work"), ib.Dir("work/here").WithOwner(1000, 1000)))
	img.Config = ib.Config{
		Env:        []string{"PATH=/bin", "FOO=bar baz"},
		WorkingDir: "/work/here",
		User:       "1000:1000",
		Cmd:        []string{"/bin/sh", "-c", "echo from-cmd"},
		Labels:     map[string]string{"org.example.label": "v1"},
	}
	ref, _ := pushImage(t, "config", img)
	store := newStore(t)
	frag := create(t, store, ref, "cfg")
	if frag.Process == nil {
		t.Fatal("fragment has no process")
	}
	if frag.Process.Cwd != "/work/here" {
		t.Errorf("process.cwd = %q, want /work/here", frag.Process.Cwd)
	}
	if frag.Process.User.UID != 1000 || frag.Process.User.GID != 1000 {
		t.Errorf("process.user = %+v, want 1000:1000", frag.Process.User)
	}
	got := sh(t, store, frag, `echo "$FOO"; pwd; id -u; id -g`)
	if want := "bar baz\n/work/here\n1000\n1000\n"; got != want {
		t.Errorf("container printed %q, want %q", got, want)
	}
}

// oci: layouts on disk work as well as the registry.
func TestOCILayoutRef(t *testing.T) {
	need(t)
	t.Parallel()
	dir := testDir(t, "layouts")
	if _, err := ib.WriteLayout(dir, "v1", busyboxImage(layer(ib.File("marker", "oci-layout\n")))); err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	frag := create(t, store, "oci:"+dir+":v1", "oci")
	if got := sh(t, store, frag, "cat /marker"); got != "oci-layout\n" {
		t.Errorf("cat /marker = %q", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
