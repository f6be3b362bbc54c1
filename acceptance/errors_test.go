package acceptance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// failsCleanly asserts a failed create: non-zero exit, nothing on stdout,
// one line on stderr, and no images/<id> nor tmp/ debris in the store.
func failsCleanly(t *testing.T, store string, r result, id string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("want a non-zero exit:\n%s", r)
	}
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("stdout should be empty on failure, got %q", r.stdout)
	}
	if l := lines(r.stderr); len(l) != 1 {
		t.Errorf("want one clear line on stderr, got %d:\n%s", len(l), r.stderr)
	}
	if id != "" && !strings.Contains(id, "/") && exists(imageDir(store, id)) {
		t.Errorf("images/%s left behind", id)
	}
	if d := dirEntries(t, filepath.Join(store, "tmp")); len(d) != 0 {
		t.Errorf("tmp/ debris left behind: %v", d)
	}
}

func TestBadInput(t *testing.T) {
	need(t)
	t.Parallel()
	okRef, _ := pushImage(t, "bad-input-ok", busyboxImage())
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, ref, id string
		extra         []string
	}{
		{"unknown image", "docker://" + h.registry + "/acceptance/no-such-image:latest", "unknown", nil},
		{"unknown tag", "docker://" + h.registry + "/acceptance/bad-input-ok:nope", "unknowntag", nil},
		{"unreachable registry", fmt.Sprintf("docker://127.0.0.1:%d/x/y:latest", port), "unreachable", []string{"--insecure-registry", fmt.Sprintf("127.0.0.1:%d", port)}},
		{"bad ref syntax", "docker://UPPER/Case::bad", "badref", nil},
		{"unknown transport", "nosuchtransport:foo", "badtransport", nil},
		{"missing oci layout", "oci:/nonexistent/layout:tag", "nolayout", nil},
		{"id with slash", okRef, "a/b", nil},
		{"id with dotdot", okRef, "..", nil},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			store := newStore(t)
			args := append([]string{"create", "--insecure-registry", h.registry}, c.extra...)
			r := taproot(t, store, append(args, c.ref, c.id)...)
			failsCleanly(t, store, r, c.id)
			if c.id == "a/b" && (exists(filepath.Join(store, "images", "a")) || exists(filepath.Join(store, "a"))) {
				t.Errorf("id a/b left a dir behind")
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, "dup", busyboxImage(layer(ib.File("first", "1\n"))))
	ref2, _ := pushImage(t, "dup2", busyboxImage(layer(ib.File("second", "2\n"))))
	store := newStore(t)
	frag := create(t, store, ref, "same")
	r := taproot(t, store, "create", "--insecure-registry", h.registry, ref2, "same")
	if r.code == 0 {
		t.Fatalf("second create with the same id succeeded:\n%s", r)
	}
	if l := lines(r.stderr); len(l) != 1 {
		t.Errorf("want one line on stderr, got:\n%s", r.stderr)
	}
	if d := dirEntries(t, filepath.Join(store, "tmp")); len(d) != 0 {
		t.Errorf("tmp/ debris: %v", d)
	}
	// The first image is untouched.
	if got := sh(t, store, frag, "cat /first; test -e /second || echo no-second"); got != "1\nno-second\n" {
		t.Errorf("first image after the failed duplicate: %q", got)
	}
}

func TestStoreNotWritable(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, "readonly", busyboxImage())
	// A root-owned 0755 dir: the test user cannot create the store in it.
	parent := filepath.Join(testDir(t, "stores"), "rootowned")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(parent, "store")
	r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, "ro")
	failsCleanly(t, store, r, "ro")
	if exists(store) {
		t.Errorf("store dir appeared in a dir the user cannot write")
	}

	// An existing store made read-only after first use.
	store2 := newStore(t)
	create(t, store2, ref, "first")
	if err := os.Chmod(store2, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(store2, 0o755)
	for _, sub := range []string{"images", "tmp", "layers"} {
		_ = os.Chmod(filepath.Join(store2, sub), 0o555)
		defer os.Chmod(filepath.Join(store2, sub), 0o755)
	}
	r = taproot(t, store2, "create", "--insecure-registry", h.registry, ref, "second")
	failsCleanly(t, store2, r, "second")
}
