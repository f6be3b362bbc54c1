package acceptance

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/taproot-dev/taproot/acceptance/internal/bundle"
	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// The local-user threat (docs/SECURITY.md): another local user, or a
// container that broke out as an unprivileged host ID, must gain nothing from
// a store: not run its setuid files, not read its layers or upper dirs, not
// plant files in them, not even list them.

// otherUser is the attacking local user that scripts/test-user.sh makes.
func otherUser(t *testing.T) (uid, gid int) {
	t.Helper()
	name := os.Getenv("TAPROOT_OTHER_USER")
	if name == "" {
		name = "taproot-other"
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("the second local user %q is missing: run scripts/test-user.sh (make test does): %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// privacyImage has what an attacker wants from a store: setuid/setgid
// copies of busybox owned by container root, by a real host uid (2001, the
// same host uid under the maximus mapping) and by group 42 (shadow), a
// world-writable sticky dir, and a secret.
func privacyImage(t *testing.T) ib.Image {
	t.Helper()
	bb, err := os.ReadFile(h.busybox)
	if err != nil {
		t.Fatal(err)
	}
	bin := func(p string) ib.Entry { return ib.Entry{Kind: ib.KindFile, Path: p, Content: bb} }
	return busyboxImage(layer(
		ib.Dir("pub").WithMode(0o1777),
		bin("bin/suid-root").WithMode(0o4755),
		bin("bin/suid-2001").WithMode(0o4755).WithOwner(2001, 2001),
		bin("bin/sgid-shadow").WithMode(0o2755).WithOwner(0, 42),
		ib.File("secret", "image-secret\n").WithMode(0o644),
	))
}

// attackScript tries, as whoever runs it, every way to use each path: read
// it, list it, run it through a symlink named "id" (so busybox runs its id
// applet with the file's setuid/setgid IDs), and (with ATTACK_CREATE set)
// plant a file in it. It prints one "GOT <what> <path>" line per success.
const attackScript = `
tmp=$(mktemp -d)
for p in "$@"; do
	cat "$p" >/dev/null 2>&1 && echo "GOT read $p"
	ls "$p" >/dev/null 2>&1 && echo "GOT list $p"
	rm -f "$tmp/id"
	ln -s "$p" "$tmp/id"
	out=$("$tmp/id" -u 2>/dev/null) && [ -n "$out" ] && echo "GOT exec $p euid=$out egid=$("$tmp/id" -g)"
	[ -n "$ATTACK_CREATE" ] && touch "$p/planted" 2>/dev/null && echo "GOT create $p/planted"
done
rm -rf "$tmp"
`

func attack(t *testing.T, argv []string, paths []string) []string {
	t.Helper()
	if len(argv) > 0 {
		argv = append([]string{"env", "ATTACK_CREATE=1"}, argv...)
	}
	argv = append(append(argv, h.busybox, "sh", "-c", attackScript, "attack"), paths...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = userEnv()
	cmd.Dir = "/"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("attack script: %v\n%s", err, out)
	}
	var got []string
	for _, l := range lines(string(out)) {
		if strings.HasPrefix(l, "GOT ") {
			got = append(got, l)
		}
	}
	return got
}

func asOther(t *testing.T, argv ...string) []string {
	t.Helper()
	uid, gid := otherUser(t)
	return append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--init-groups", "--"}, argv...)
}

// storeTargets lists what an attacker would go for in a store holding
// image id, whose upper dir a container wrote up-suid and upper-secret into.
func storeTargets(t *testing.T, store, id string, frag *specs.Spec) []string {
	t.Helper()
	lower := lowerDirs(t, frag)[0] // the top layer: the privacy layer
	real, err := filepath.EvalSymlinks(lower)
	if err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(imageDir(store, id), "diff")
	var paths []string
	for _, base := range []string{lower, real} {
		for _, f := range []string{"", "bin/suid-root", "bin/suid-2001", "bin/sgid-shadow", "secret", "pub"} {
			paths = append(paths, filepath.Join(base, f))
		}
	}
	return append(paths, store, filepath.Join(store, "layers"), filepath.Dir(real), filepath.Join(store, "l"),
		filepath.Join(store, "images"), imageDir(store, id), up, filepath.Join(up, "up-suid"), filepath.Join(up, "upper-secret"),
		filepath.Join(up, "up-pub"), filepath.Join(store, "meta", "store.json"), filepath.Join(store, "tmp"), filepath.Join(store, "locks"))
}

func lowerDirs(t *testing.T, frag *specs.Spec) []string {
	t.Helper()
	for _, m := range frag.Mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				return strings.Split(v, ":")
			}
		}
	}
	t.Fatalf("no lowerdir in the fragment: %+v", frag.Mounts)
	return nil
}

// containerWrites is what a tenant's container does to its upper dir: a
// setuid copy of busybox, a secret, a world-writable dir.
const containerWrites = "cp /bin/busybox /up-suid && chmod 4755 /up-suid && echo upper-secret > /upper-secret && mkdir /up-pub && chmod 1777 /up-pub"

func TestStoreIsPrivateToOtherUsers(t *testing.T) {
	need(t)
	ref, _ := pushImage(t, "privacy", privacyImage(t))

	check := func(t *testing.T, store, id string, frag *specs.Spec) {
		t.Helper()
		targets := storeTargets(t, store, id, frag)
		if got := attack(t, asOther(t), targets); len(got) > 0 {
			t.Errorf("another local user reached the store:\n%s", strings.Join(got, "\n"))
		}
		// The attack itself works where the path is reachable: root gets
		// the secrets, lists the dirs and runs the setuid files.
		got := strings.Join(attack(t, nil, targets), "\n")
		for _, want := range []string{"GOT read " + filepath.Join(imageDir(store, id), "diff", "upper-secret"), "GOT list " + filepath.Join(store, "layers"), "/bin/suid-2001 euid=" + strconv.Itoa(int(hostOf2001(store)))} {
			if !strings.Contains(got, want) {
				t.Errorf("the attack script as root did not get %q (so it could not have seen the store open either):\n%s", want, got)
			}
		}
	}

	t.Run("rootless store in an explicit 0755 dir", func(t *testing.T) {
		store := newStore(t)
		frag := create(t, store, ref, "explicit")
		sh(t, store, frag, containerWrites)
		check(t, store, "explicit", frag)
	})

	t.Run("rootless store in the default location", func(t *testing.T) {
		store := filepath.Join(h.home, ".local", "share", "taproot")
		id := fmt.Sprintf("default%d", seq.Add(1))
		r := execute(t, 3*time.Minute, asUser(h.taproot, "create", "--insecure-registry", h.registry, ref, id))
		if r.code != 0 {
			t.Fatalf("create in the default store:\n%s", r)
		}
		defer execute(t, time.Minute, asUser(h.taproot, "delete", id))
		frag, err := bundle.Parse([]byte(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(frag.Root.Path, store+"/") {
			t.Fatalf("default store is not %s: root.path %s", store, frag.Root.Path)
		}
		sh(t, store, frag, containerWrites)
		check(t, store, id, frag)
	})

	t.Run("root store with the maximus mapping", func(t *testing.T) {
		store := rootStore(t)
		r := rootTaproot(t, store, "create", "--insecure-registry", h.registry, ref, "maximus")
		if r.code != 0 {
			t.Fatalf("root create:\n%s", r)
		}
		frag, err := bundle.Parse([]byte(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		// Container root (host 4294967294) mounts the overlay in its own
		// user namespace through the 0710 dirs, and writes its upper dir.
		out := mountAsContainerRoot(t, frag, "cat /secret; "+strings.ReplaceAll(containerWrites, "/bin/busybox", "/bin/suid-root"))
		if out != "image-secret\n" {
			t.Fatalf("container root's view of the image: %q", out)
		}
		check(t, store, "maximus", frag)
		// A container that broke out as its root (host 4294967294) reaches
		// its own layers and upper dir but cannot rewrite a record or a
		// link that root's clean and create trust, nor list the store.
		lower := lowerDirs(t, frag)[0]
		real, _ := filepath.EvalSymlinks(lower)
		records := []string{filepath.Join(filepath.Dir(real), "layer.json"), filepath.Join(filepath.Dir(real), "tar-split.json.gz"), filepath.Join(imageDir(store, "maximus"), "image.json"), filepath.Join(store, "meta", "store.json")}
		dirs := []string{filepath.Dir(real), filepath.Join(store, "l"), filepath.Join(store, "layers"), imageDir(store, "maximus"), filepath.Join(store, "meta"), filepath.Join(store, "locks")}
		script := `for f in $RECORDS; do (: >> "$f") 2>/dev/null && echo "GOT write $f"; mv "$f" "$f.x" 2>/dev/null && echo "GOT rename $f"; done
for d in $DIRS; do ls "$d" >/dev/null 2>&1 && echo "GOT list $d"; touch "$d/planted" 2>/dev/null && echo "GOT create $d/planted"; done; true`
		cmd := exec.Command("setpriv", "--reuid=4294967294", "--regid=4294967294", "--clear-groups", "--", h.busybox, "sh", "-c", script)
		cmd.Env = append(userEnv(), "RECORDS="+strings.Join(records, " "), "DIRS="+strings.Join(dirs, " "))
		got, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(got), "GOT") {
			t.Errorf("container root's host ID changed or listed the store's own dirs and records: %v\n%s", err, got)
		}
	})
}

// hostOf2001 is the host uid of container uid 2001 in store: itself under
// the maximus mapping of a root store, a sub-UID in the test user's.
func hostOf2001(store string) uint32 {
	if strings.HasPrefix(store, filepath.Join(h.work, "rootstores")) {
		return 2001
	}
	return h.subuid + 2001 - 1
}

// rootStore is a path for a root-owned store under a root-owned dir that
// container root can search (as /var/lib is).
func rootStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(h.work, "rootstores", fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), seq.Add(1)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "store")
}

// rootTaproot runs taproot as root (a privileged Garden) against store,
// in root's own environment.
func rootTaproot(t *testing.T, store string, args ...string) result {
	t.Helper()
	r := executeEnv(t, 3*time.Minute, rootEnv(), append([]string{h.taproot, "--store", store}, args...))
	t.Logf("root taproot %s: exit %d in %v", strings.Join(args, " "), r.code, r.dur.Round(time.Millisecond))
	return r
}

// mountAsContainerRoot does what a runtime does with a root store's
// fragment: as container root's host ID (4294967294) in a new user and
// mount namespace, mount the overlay from the printed options and run the
// script chrooted in it. It returns the script's output.
func mountAsContainerRoot(t *testing.T, frag *specs.Spec, script string) string {
	t.Helper()
	var opts []string
	for _, m := range frag.Mounts {
		if m.Destination == "/" && m.Type == "overlay" {
			opts = m.Options
		}
	}
	if opts == nil {
		t.Fatalf("no overlay mount at / in the fragment: %+v", frag.Mounts)
	}
	inner := fmt.Sprintf(`mount -t overlay overlay -o %s %s && exec chroot %s /bin/sh -c %q`, strings.Join(opts, ","), frag.Root.Path, frag.Root.Path, script)
	argv := []string{"setpriv", "--reuid=4294967294", "--regid=4294967294", "--clear-groups", "--", "unshare", "--user", "--map-root-user", "--mount", "--", h.busybox, "sh", "-c", inner}
	r := execute(t, time.Minute, argv)
	if r.code != 0 {
		t.Fatalf("mount as container root:\n%s", r)
	}
	return r.stdout
}

func TestStoreRefusesUnsafePaths(t *testing.T) {
	need(t)
	ref, _ := pushImage(t, "unsafepaths", busyboxImage())

	// Another user made the store dir first (world-writable, to plant
	// content): taproot refuses it and names the owner.
	otherUID, _ := otherUser(t)
	shared := testDir(t, "stores")
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(shared, "store")
	r := execute(t, time.Minute, asOther(t, "mkdir", "-m", "0777", planted))
	if r.code != 0 {
		t.Fatalf("other user mkdir: %s", r)
	}
	r = taproot(t, planted, "create", "--insecure-registry", h.registry, ref, "x")
	if r.code == 0 || !strings.Contains(r.stderr, "owned by uid "+strconv.Itoa(otherUID)) {
		t.Errorf("create in a store dir another user made:\n%s", r)
	}
	if entries := dirEntries(t, planted); len(entries) != 0 {
		t.Errorf("taproot wrote into the planted dir: %v", entries)
	}
	// The test user's own world-writable dir: refused too.
	own := filepath.Join(testDir(t, "stores"), "store")
	if err := mkdirOwned(own); err != nil {
		t.Fatal(err)
	}
	os.Chmod(own, 0o777)
	if r := taproot(t, own, "create", "--insecure-registry", h.registry, ref, "x"); r.code == 0 || !strings.Contains(r.stderr, "lets others write it") {
		t.Errorf("create in a world-writable store dir:\n%s", r)
	}

	// HOME unset: the store comes from the account's home in /etc/passwd,
	// never a guessable path in /tmp.
	before, _ := filepath.Glob("/tmp/taproot-*")
	cmd := exec.Command("setpriv", "--reuid="+strconv.Itoa(h.uid), "--regid="+strconv.Itoa(h.gid), "--init-groups", "--", h.taproot, "list")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("list with HOME unset: %v\n%s", err, out)
	}
	after, _ := filepath.Glob("/tmp/taproot-*")
	if len(after) != len(before) {
		t.Errorf("HOME unset made a store in /tmp: %v -> %v", before, after)
	}

	// Store paths overlay's options cannot carry: TestStorePathOverlayCannotCarry.
}

// TestTamperedRecords rewrites, as a container that broke out (or anyone
// with the owner's rights) would, every field of the records that names
// something, and runs what a platform runs next. Nothing outside the store
// may be removed, created or mounted, and the damage is reported.
func TestTamperedRecords(t *testing.T) {
	need(t)
	ref, built := pushImage(t, "tamper", busyboxImage(layer(ib.File("top", "top\n"))))
	diffIDs := built.DiffIDs()
	topKey := diffIDs[len(diffIDs)-1].Encoded()
	imageJSON := func(s string) string { return filepath.Join(s, "images", "a", "image.json") }
	// mountOpt sets option i of the persisted mount (1 lowerdir, 2
	// upperdir, 3 workdir); the others edit the mount's fields.
	mountOpt := func(i int, opt func(store, old string) string) func(store string, m map[string]any) {
		return func(store string, m map[string]any) {
			opts := m["mounts"].([]any)[0].(map[string]any)["options"].([]any)
			opts[i] = opt(store, opts[i].(string))
		}
	}
	cases := []struct {
		name  string
		file  func(store string) string
		field string
		value any
		// edit, when set, changes the decoded record instead of field.
		edit func(store string, m map[string]any)
	}{
		{"layer short climbs out", func(s string) string { return filepath.Join(s, "layers", topKey, "layer.json") }, "short", "../../victim", nil},
		{"layer short injects mount options", func(s string) string { return filepath.Join(s, "layers", topKey, "layer.json") }, "short", "x,upperdir=/etc,lowerdir=/", nil},
		{"layer short names another dir", func(s string) string { return filepath.Join(s, "layers", topKey, "layer.json") }, "short", "../../victimdir", nil},
		{"image lowers climb out", func(s string) string { return filepath.Join(s, "images", "a", "image.json") }, "lowers", []string{"../../victimdir"}, nil},
		{"image id climbs out", func(s string) string { return filepath.Join(s, "images", "a", "image.json") }, "id", "../../victimdir", nil},
		{"image layers are no digests", func(s string) string { return filepath.Join(s, "images", "a", "image.json") }, "layers", []string{"../../victim"}, nil},
		// The mount persisted at create is data too: each of these would
		// mount something outside the store if it were used as written.
		{"image mount lowerdir is /", imageJSON, "", nil, mountOpt(1, func(string, string) string { return "lowerdir=/" })},
		{"image mount lowerdir is outside", imageJSON, "", nil, mountOpt(1, func(s, _ string) string { return "lowerdir=" + filepath.Join(filepath.Dir(s), "victimdir") })},
		{"image mount upperdir is /etc", imageJSON, "", nil, mountOpt(2, func(string, string) string { return "upperdir=/etc" })},
		{"image mount workdir is outside", imageJSON, "", nil, mountOpt(3, func(s, _ string) string { return "workdir=" + filepath.Join(filepath.Dir(s), "victimdir") })},
		{"image mount lowerdir smuggles an option", imageJSON, "", nil, mountOpt(1, func(_, old string) string { return old + ",upperdir=/etc" })},
		{"image mount has an extra option", imageJSON, "", nil, func(_ string, m map[string]any) {
			mount := m["mounts"].([]any)[0].(map[string]any)
			mount["options"] = append(mount["options"].([]any), "x,upperdir=/etc")
		}},
		{"image mount target is outside", imageJSON, "", nil, func(s string, m map[string]any) {
			m["mounts"].([]any)[0].(map[string]any)["target"] = filepath.Join(filepath.Dir(s), "victimdir")
		}},
		{"image mount is a bind of /", imageJSON, "", nil, func(_ string, m map[string]any) {
			m["mounts"] = []any{map[string]any{"type": "bind", "source": "/", "target": "/", "options": []any{"rbind"}}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := newStore(t)
			create(t, store, ref, "a")
			parent := filepath.Dir(store)
			victim := filepath.Join(parent, "victim")
			victimDir := filepath.Join(parent, "victimdir")
			if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := mkdirOwned(victimDir); err != nil {
				t.Fatal(err)
			}
			editJSON(t, c.file(store), func(m map[string]any) {
				if c.edit == nil {
					m[c.field] = c.value
					return
				}
				if _, ok := m["mounts"]; !ok {
					t.Fatalf("image.json has no persisted mounts: %v", m)
				}
				c.edit(store, m)
			})

			if r := taproot(t, store, "check"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "tampered") {
				t.Errorf("check does not report the tampered record:\n%s", r)
			}
			if r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, "b"); r.code == 0 {
				for _, lower := range lowerDirs(t, mustParse(t, r.stdout)) {
					if filepath.Dir(lower) != filepath.Join(store, "l") || strings.ContainsAny(filepath.Base(lower), ",:=") {
						t.Errorf("create printed lower %s, not a link under the store", lower)
					}
				}
			}
			// Every use of the record refuses it as damaged (exit 7).
			if r := taproot(t, store, "stats", "a"); r.code != 7 {
				t.Errorf("stats of the tampered image does not exit 7 (store damaged):\n%s", r)
			}
			for _, args := range [][]string{{"delete", "a"}, {"clean"}, {"check", "--repair"}, {"delete", "b"}, {"clean"}} {
				taproot(t, store, args...)
			}
			if r := taproot(t, store, "check"); r.code != 0 {
				t.Errorf("check after repair:\n%s", r)
			}
			if got := readFile(t, victim); got != "keep\n" {
				t.Errorf("victim file outside the store: %q", got)
			}
			if !exists(victimDir) || len(dirEntries(t, victimDir)) != 0 {
				t.Errorf("victim dir outside the store was changed")
			}
			// The next create of the image is whole again.
			frag := create(t, store, ref, "c")
			if got := readFile(t, filepath.Join(lowerDirs(t, frag)[0], "top")); got != "top\n" {
				t.Errorf("next create: /top is %q", got)
			}
		})
	}
}

func mustParse(t *testing.T, stdout string) *specs.Spec {
	t.Helper()
	frag, err := bundle.Parse([]byte(stdout))
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	return frag
}
