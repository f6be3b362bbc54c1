package acceptance

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
	"github.com/taproot-dev/taproot/internal/swaprace"
)

// What root reads on behalf of others: local rootfs sources, the image's
// /etc/passwd and /etc/group, and image labels turned into annotations.

// rootDir makes a fresh root-owned 0755 dir under the work dir (itself
// root's, 0755, in /tmp): a path no other user can change, as root's local
// sources and stores need.
func rootDir(t *testing.T, kind string) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	p := filepath.Join(h.work, "root-"+kind, fmt.Sprintf("%s-%d", name, seq.Add(1)))
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := p; d != h.work; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	return p
}

// layerFiles reads every regular file of every layer of the store, as root.
func layerFiles(t *testing.T, store string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(filepath.Join(store, "layers"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.Contains(p, "/diff/") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Root creates images from a local rootfs dir while a goroutine swaps, with
// renameat2 RENAME_EXCHANGE, a file with a symlink to a root-only secret
// and a dir with a symlink to a root-only dir, as fast as it can. No content
// of the secrets ever lands in a layer (every file of every layer read from
// disk afterwards), every create either succeeds or fails with one line,
// and the race really happened (a layer holds the swapped state).
func TestLocalDirSwapRaceAsRoot(t *testing.T) {
	need(t)
	t.Parallel()
	const marker = "SHADOW-SECRET-2b9e"
	base := rootDir(t, "sources")
	outside, src := filepath.Join(base, "outside"), filepath.Join(base, "rootfs")
	for _, d := range []string{filepath.Join(outside, "secretdir"), filepath.Join(src, "d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{
		filepath.Join(outside, "shadow"):           marker + ":root:$6$hash\n",
		filepath.Join(outside, "secretdir", "key"): marker + " private key\n",
		filepath.Join(src, "f"):                    "public\n",
		filepath.Join(src, "d", "inner"):           "inner\n",
		filepath.Join(src, "unrelated-large-file"): strings.Repeat("x", 1<<20), // widens the window
	} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(src, "s")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secretdir"), filepath.Join(src, "ds")); err != nil {
		t.Fatal(err)
	}
	racer, err := swaprace.Start(src, [][2]string{{"f", "s"}, {"d", "ds"}})
	if err != nil {
		t.Fatal(err)
	}

	store := filepath.Join(rootDir(t, "stores"), "store")
	const rounds = 60
	ok, refused := 0, 0
	for i := 0; i < rounds && !t.Failed(); i++ {
		// Each swap changes the dir's mtime, so the local cache key (path,
		// size, mtime) differs and every create walks the dir again.
		r := rootTaproot(t, store, "create", src, fmt.Sprintf("race-%d", i))
		switch {
		case r.code == 0:
			ok++
		case len(lines(r.stderr)) == 1 && strings.Contains(r.stderr, src):
			refused++
			if refused == 1 {
				t.Logf("a create that saw a swap: %s", strings.TrimSpace(r.stderr))
			}
		default:
			t.Fatalf("create %d: want success or one line naming %s:\n%s", i, src, r)
		}
	}
	swaps, err := racer.Stop()
	if err != nil {
		t.Fatal(err)
	}

	files := layerFiles(t, store)
	sawSwapped := false
	for p, data := range files {
		if bytes.Contains(data, []byte(marker)) {
			t.Errorf("%s holds the secret: %q", p, data)
		}
		switch {
		case strings.HasSuffix(p, "/diff/f"), strings.HasSuffix(p, "/diff/s"):
			if string(data) != "public\n" {
				t.Errorf("%s = %q, want the source's file", p, data)
			}
			if strings.HasSuffix(p, "/diff/s") {
				sawSwapped = true
			}
		case strings.HasSuffix(p, "/key"):
			t.Errorf("%s: the walk went into the secret dir", p)
		}
	}
	links, _ := filepath.Glob(filepath.Join(store, "layers", "*", "diff", "f"))
	for _, l := range links {
		if fi, err := os.Lstat(l); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			sawSwapped = true
			if target, _ := os.Readlink(l); target != filepath.Join(outside, "shadow") {
				t.Errorf("%s -> %q, want the symlink as it was", l, target)
			}
		}
	}
	t.Logf("%d creates: %d made an image, %d refused a changed entry; %d swaps; %d layer files checked", rounds, ok, refused, swaps, len(files))
	if ok == 0 {
		t.Errorf("no create succeeded under the swaps")
	}
	if !sawSwapped {
		t.Errorf("no layer holds the swapped state (f a symlink, or s a file): the race never happened, the test shows nothing")
	}
}

// As root, a local source that another user can change (their dir, a dir in
// their dir, their dir in /tmp, a world-writable dir, a tarball in their
// dir) is refused with one line naming the path, its mode and owner, and
// nothing is read; the same sources work for that user's own rootless
// creates. The local cache key (path, size, mtime) still decides when a
// root-owned source is read again.
func TestLocalSourceTrustAsRoot(t *testing.T) {
	need(t)
	t.Parallel()
	store := filepath.Join(rootDir(t, "stores"), "store")
	mkfile := func(p, content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	userSrc := rootDir(t, "usersrc") // in a root-owned dir, owned by the test user
	if err := os.Chown(userSrc, h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	mkfile(filepath.Join(userSrc, "hello"), "from the user\n")
	if err := os.Chown(filepath.Join(userSrc, "hello"), h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	inUserDir := filepath.Join(userSrc, "rootfs")
	if err := os.Mkdir(inUserDir, 0o755); err != nil { // root's, but in the user's dir
		t.Fatal(err)
	}
	sticky := rootDir(t, "sticky")
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	usersInSticky := filepath.Join(sticky, "users")
	if err := mkdirOwned(usersInSticky); err != nil {
		t.Fatal(err)
	}
	world := rootDir(t, "world")
	if err := os.Chmod(world, 0o777); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(userSrc, "rootfs.tar")
	raw, err := layer(ib.File("hello", "tarball\n")).Tar()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarball, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	for i, c := range []struct{ src, names string }{
		{userSrc, userSrc},
		{inUserDir, userSrc},
		{usersInSticky, sticky},
		{world, world},
		{tarball, userSrc},
	} {
		r := rootTaproot(t, store, "create", c.src, fmt.Sprintf("refused-%d", i))
		if r.code == 0 {
			t.Errorf("root create from %s succeeded, want it refused", c.src)
			continue
		}
		if l := lines(r.stderr); len(l) != 1 || !strings.Contains(l[0], c.names+" (mode ") || !strings.Contains(l[0], "uid ") {
			t.Errorf("root create from %s: want one line naming %s, its mode and owner:\n%s", c.src, c.names, r)
		} else {
			t.Logf("%s", l[0])
		}
	}
	if files := layerFiles(t, store); len(files) != 0 {
		t.Errorf("refused creates left layer files: %v", files)
	}
	// The user's own rootless create of their dir works.
	frag := create(t, newStore(t), userSrc, "own")
	if frag.Root == nil {
		t.Fatalf("fragment without root")
	}

	// A root-owned source: read once, then again only after its mtime changed.
	src := rootDir(t, "sources")
	mkfile(filepath.Join(src, "hello"), "v1\n")
	layersNow := func() []string {
		t.Helper()
		l, _ := filepath.Glob(filepath.Join(store, "layers", "*", "diff", "hello"))
		return l
	}
	for i, want := range []int{1, 1} {
		if r := rootTaproot(t, store, "create", src, fmt.Sprintf("cached-%d", i)); r.code != 0 {
			t.Fatalf("root create from %s:\n%s", src, r)
		}
		if got := layersNow(); len(got) != want {
			t.Errorf("after create %d: %d layers of the source, want %d (same path, size, mtime)", i, len(got), want)
		}
	}
	mkfile(filepath.Join(src, "hello"), "v2\n")
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(src, later, later); err != nil {
		t.Fatal(err)
	}
	if r := rootTaproot(t, store, "create", src, "cached-touched"); r.code != 0 {
		t.Fatalf("root create from %s after touch:\n%s", src, r)
	}
	got := layersNow()
	if len(got) != 2 {
		t.Fatalf("after touching the source: %d layers, want 2", len(got))
	}
	var contents []string
	for _, p := range got {
		contents = append(contents, readFile(t, p))
	}
	if !contains(contents, "v1\n") || !contains(contents, "v2\n") {
		t.Errorf("layer contents %q, want v1 and v2", contents)
	}
}

// USER app:staff resolves through the image's /etc/passwd and /etc/group
// in root's store and a rootless one. An image whose /etc/passwd is a FIFO,
// or 2 MiB, makes create fail at once with one line naming the file, for
// both stores; it never hangs. A numeric user needs no passwd, so such an
// image still works with USER 1000.
func TestImageUserFileHostile(t *testing.T) {
	need(t)
	t.Parallel()
	var huge strings.Builder
	for i := 0; huge.Len() < 2<<20; i++ {
		fmt.Fprintf(&huge, "user%07d:x:%d:%d:padding to make the file large:/home/u:/bin/sh\n", i, 10000+i, 10000+i)
	}
	huge.WriteString("app:x:1000:1000::/:/bin/sh\n")
	cases := []struct {
		name  string
		entry ib.Entry
		want  string
	}{
		{"fifo", ib.Fifo("etc/passwd"), "FIFO"},
		{"huge", ib.File("etc/passwd", huge.String()), "larger than"},
	}
	rootStore := filepath.Join(rootDir(t, "stores"), "store")
	userStore := newStore(t)

	// Names resolve through well-formed files, for both stores.
	good := busyboxImage(layer(ib.Dir("etc"),
		ib.File("etc/passwd", "root:x:0:0::/:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"),
		ib.File("etc/group", "root:x:0:\nstaff:x:3456:app\n")))
	good.Config.User = "app:staff"
	goodRef, _ := pushImage(t, "passwd-good", good)
	for _, asRoot := range []bool{true, false} {
		var r result
		if asRoot {
			r = rootTaproot(t, rootStore, "create", "--insecure-registry", h.registry, goodRef, "good")
		} else {
			r = taproot(t, userStore, "create", "--insecure-registry", h.registry, goodRef, "good")
		}
		frag, err := bundle.Parse([]byte(r.stdout))
		if r.code != 0 || err != nil || frag.Process == nil {
			t.Fatalf("USER app:staff (root %v): %v\n%s", asRoot, err, r)
		}
		if u := frag.Process.User; u.UID != 1234 || u.GID != 3456 {
			t.Errorf("USER app:staff (root %v): process.user %+v, want 1234:3456", asRoot, u)
		}
	}

	for _, c := range cases {
		img := busyboxImage(layer(ib.Dir("etc"), c.entry))
		img.Config.User = "app"
		ref, _ := pushImage(t, "passwd-"+c.name, img)
		for _, asRoot := range []bool{true, false} {
			id := "named-" + c.name
			var r result
			if asRoot {
				r = rootTaproot(t, rootStore, "create", "--insecure-registry", h.registry, ref, id)
			} else {
				r = taproot(t, userStore, "create", "--insecure-registry", h.registry, ref, id)
			}
			l := lines(r.stderr)
			if r.code == 0 || len(l) != 1 || !strings.Contains(l[0], "/etc/passwd in the image") || !strings.Contains(l[0], c.want) {
				t.Errorf("%s (root %v): want a failure naming /etc/passwd and %q on one line:\n%s", c.name, asRoot, c.want, r)
			} else {
				t.Logf("%s (root %v), %v: %s", c.name, asRoot, r.dur.Round(time.Millisecond), l[0])
			}
			if r.dur > 30*time.Second {
				t.Errorf("%s (root %v): create took %v", c.name, asRoot, r.dur)
			}
		}
		// USER 1000 needs no lookup: the image is usable.
		img.Config.User = "1000"
		ref, _ = pushImage(t, "passwd-numeric-"+c.name, img)
		frag := create(t, userStore, ref, "numeric-"+c.name)
		if frag.Process == nil || frag.Process.User.UID != 1000 {
			t.Errorf("%s with USER 1000: process %+v", c.name, frag.Process)
		}
	}
}

// Image labels are in the fragment only under io.taproot.image.label.: none
// of them sets a key a runtime acts on, nor taproot's own. crun runs the
// bundle made from the fragment (annotations copied as they are) with its
// own seccomp filter and no supplementary groups. Control, with the labels
// copied verbatim as taproot did before: crun 1.8.1 acts on them,
// run.oci.keep_original_groups=1 keeps the caller's group in the container
// and run.oci.seccomp_bpf_data replaces the seccomp filter with the
// image's bytes (here invalid ones, so crun fails).
func TestLabelsAreNotRuntimeAnnotations(t *testing.T) {
	need(t)
	t.Parallel()
	if _, err := exec.LookPath("crun"); err != nil {
		t.Fatalf("crun is not installed (scripts/deps.sh): it is the runtime that acts on run.oci.* annotations")
	}
	labels := map[string]string{
		"run.oci.keep_original_groups":  "1",
		"run.oci.seccomp_bpf_data":      "AAAA",
		"run.oci.handler":               "krun",
		"org.systemd.property.CPUQuota": "1%",
		"org.criu.config":               "/tmp/evil.conf",
		"io.kubernetes.cri-o.Devices":   "/dev/sda",
		"io.taproot.image.id":           "spoofed",
		"org.example.team":              "x",
	}
	img := busyboxImage(layer(ib.File("marker", "labels\n")))
	img.Config.Labels = labels
	ref, _ := pushImage(t, "labels", img)
	store := newStore(t)
	frag := create(t, store, ref, "labels")
	const prefix = "io.taproot.image.label."
	own := map[string]bool{"io.taproot.image.id": true, "io.taproot.image.ref": true, "io.taproot.image.manifest-digest": true}
	for k, v := range frag.Annotations {
		switch {
		case own[k]:
		case strings.HasPrefix(k, prefix):
			if labels[strings.TrimPrefix(k, prefix)] != v {
				t.Errorf("annotation %s=%q is not the image's label", k, v)
			}
		default:
			t.Errorf("annotation %s=%q: not taproot's and not under %s", k, v, prefix)
		}
	}
	for k, v := range labels {
		if frag.Annotations[prefix+k] != v {
			t.Errorf("label %s=%q missing as %s%s", k, v, prefix, k)
		}
	}
	if got := frag.Annotations["io.taproot.image.id"]; got != "labels" {
		t.Errorf("io.taproot.image.id = %q, want the id (a label must not set it)", got)
	}
	const script = "grep Groups /proc/self/status; cat /marker"
	const noGroups = "Groups:\t \nlabels\n"
	if r := inContainer(t, crun, store, frag, script); r.code != 0 || r.stdout != noGroups {
		t.Errorf("crun with the fragment's annotations: want exit 0 and %q:\n%s", noGroups, r)
	}

	verbatim := func(keys ...string) *specs.Spec {
		v := *frag
		v.Annotations = map[string]string{}
		for _, k := range keys {
			v.Annotations[k] = labels[k]
		}
		return &v
	}
	if r := inContainer(t, crun, store, verbatim("run.oci.keep_original_groups"), script); r.code != 0 || r.stdout == noGroups {
		t.Errorf("control: run.oci.keep_original_groups=1 verbatim did not change the groups; this crun does not act on it, so the test shows less:\n%s", r)
	} else {
		t.Logf("control: run.oci.keep_original_groups=1 verbatim: %q", r.stdout)
	}
	if r := inContainer(t, crun, store, verbatim("run.oci.seccomp_bpf_data"), script); r.code == 0 {
		t.Errorf("control: run.oci.seccomp_bpf_data verbatim did not change what crun does:\n%s", r)
	} else {
		t.Logf("control: run.oci.seccomp_bpf_data=AAAA verbatim: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	}
}
