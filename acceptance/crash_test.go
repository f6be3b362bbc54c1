package acceptance

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envInt reads a positive integer knob from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestCrashSafety SIGKILLs create, delete and clean at random points, in a
// bounded loop (TAPROOT_CRASH_ITERATIONS, default 100, or
// TAPROOT_CRASH_SECONDS, default 45, whichever comes first; raise both for a
// soak: `TAPROOT_CRASH_ITERATIONS=2000 TAPROOT_CRASH_SECONDS=1800 make soak`).
// Afterwards check must find the store consistent or check --repair must
// make it so: no tmp debris, no stale lock files, no dangling links, no
// image without its layers, nothing owned by host root; and the next create
// and delete work.
func TestCrashSafety(t *testing.T) {
	need(t)
	t.Parallel()
	iterations := envInt("TAPROOT_CRASH_ITERATIONS", 100)
	deadline := time.Now().Add(time.Duration(envInt("TAPROOT_CRASH_SECONDS", 45)) * time.Second)

	// Three images sharing a base layer; layers big enough (many files, a
	// few MB) that kills land inside unpack, publish and removal.
	var ents []tarEnt
	ents = append(ents, tDir("etc"), tReg("etc/passwd", "root:x:0:0::/:/bin/sh\n"), tReg("good", "good\n"), tDir("many"))
	for i := 0; i < 400; i++ {
		ents = append(ents, tReg(fmt.Sprintf("many/f%03d", i), strings.Repeat("x", i*7)))
	}
	base := gzLayer(t, rawTar(t, nil, ents...))
	var refs []string
	for i := 0; i < 3; i++ {
		big := make([]byte, (i+1)<<20)
		if _, err := rand.Read(big); err != nil {
			t.Fatal(err)
		}
		top := gzLayer(t, rawTar(t, nil, tDir("app"), tReg("app/big", string(big)), tReg(".wh.many", ""), tReg("app/n", strconv.Itoa(i))))
		refs = append(refs, pushRaw(t, "crash-"+itoa(i), h.registry, buildRaw(t, []rawLayer{base, top}, nil)))
	}

	store := newStore(t)
	create(t, store, refs[0], "seed") // the store exists before the first kill
	var ids []string
	n, killed := 0, 0
	for ; n < iterations && time.Now().Before(deadline); n++ {
		var args []string
		switch op := mrand.IntN(10); {
		case op < 5:
			id := fmt.Sprintf("c%d", n)
			ids = append(ids, id)
			args = []string{"create", "--insecure-registry", h.registry, refs[mrand.IntN(len(refs))], id}
		case op < 8 && len(ids) > 0:
			i := mrand.IntN(len(ids))
			args = []string{"delete", ids[i]}
			ids = append(ids[:i], ids[i+1:]...)
		default:
			args = []string{"clean"}
		}
		argv := asUser(append([]string{h.taproot, "--store", store}, args...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = userEnv()
		cmd.Dir = "/"
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(time.Duration(mrand.IntN(250)) * time.Millisecond):
			// setpriv execs taproot: this is taproot's pid.
			_ = cmd.Process.Signal(os.Kill)
			<-done
			killed++
		}
	}
	t.Logf("%d operations, %d killed", n, killed)
	if killed == 0 {
		t.Fatalf("no operation was killed: the loop tests nothing")
	}

	rep, r := runCheck(t, store)
	t.Logf("check after the kills: healthy=%v layers=%d images=%d dangling=%d missing=%d debris=%d",
		rep.Healthy, len(rep.Layers), len(rep.Images), len(rep.DanglingLinks), len(rep.MissingLinks), len(rep.Debris))
	if !rep.Healthy {
		if rep, r = runCheck(t, store, "--repair"); r.code != 0 {
			t.Fatalf("check --repair failed:\n%s", r)
		}
	}
	// Deletes hand their trash to a detached reclaimer, which may still be
	// running (and holding its tmp dir): give it time, then clean up what
	// it left, then the store must be healthy.
	healthy := false
	for wait := time.Now().Add(20 * time.Second); time.Now().Before(wait); time.Sleep(500 * time.Millisecond) {
		if rep, r = runCheck(t, store); rep.Healthy && r.code == 0 {
			healthy = true
			break
		}
		runCheck(t, store, "--repair")
	}
	if !healthy {
		t.Fatalf("store not healthy after check --repair:\n%s", r)
	}
	// What check might not look at.
	if d := dirEntries(t, filepath.Join(store, "tmp")); len(d) != 0 {
		t.Errorf("tmp/ debris: %v", d)
	}
	for _, name := range dirEntries(t, filepath.Join(store, "locks")) {
		kind, rest, _ := strings.Cut(strings.TrimSuffix(name, ".lock"), "-")
		switch kind {
		case "layer":
			if !exists(filepath.Join(store, "layers", rest)) {
				t.Errorf("lock file %s for a layer that does not exist", name)
			}
		case "image":
			if !exists(imageDir(store, rest)) {
				t.Errorf("lock file %s for an image that does not exist", name)
			}
		case "tmp", "fetch":
			t.Errorf("lock file %s left behind", name)
		}
	}
	for _, l := range dirEntries(t, filepath.Join(store, "l")) {
		if _, err := os.Stat(filepath.Join(store, "l", l)); err != nil {
			t.Errorf("short link %s: %v", l, err)
		}
	}
	if ro := rootOwned(t, store); len(ro) > 0 {
		t.Errorf("files owned by host root: %v", ro)
	}
	// Every image left is whole: it can be run.
	frag := create(t, store, refs[2], "after")
	var lowers []string
	for _, m := range frag.Mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				lowers = strings.Split(v, ":")
			}
		}
	}
	if len(lowers) != 2 {
		t.Fatalf("want 2 lowerdirs, got %v", lowers)
	}
	if got := readFile(t, filepath.Join(lowers[0], "app/n")); got != "2" {
		t.Errorf("app/n of the image created after the crashes: %q", got)
	}
	if got := readFile(t, filepath.Join(lowers[1], "many/f010")); got != strings.Repeat("x", 70) {
		t.Errorf("many/f010 of the base layer after the crashes: %q", got)
	}
	if r := taproot(t, store, "delete", "after"); r.code != 0 {
		t.Errorf("delete after the crashes:\n%s", r)
	}
}
