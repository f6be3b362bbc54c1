package acceptance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorePathOverlayCannotCarry: the runtime splits overlay's mount
// options at ',' and lowerdir at ':', and '\' escapes both, so a store
// under such a path would print a fragment whose mount fails (ENOENT on a
// half of the path, as taproot before the check did). create refuses it
// with one line before making anything: in the store's name, in a parent's
// name, and behind a symlink whose own name is harmless.
func TestStorePathOverlayCannotCarry(t *testing.T) {
	need(t)
	t.Parallel()
	ref, _ := pushImage(t, "storepath", busyboxImage())
	for _, c := range []string{",", ":", `\`} {
		dir := testDir(t, "stores")
		target := filepath.Join(dir, "t"+c+"rget")
		if err := mkdirOwned(target); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		os.Lchown(link, h.uid, h.gid)
		for _, store := range []string{
			filepath.Join(dir, "a"+c+"b"),
			filepath.Join(dir, "p"+c+"q", "store"),
			link,
		} {
			r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, "x")
			if r.code != 2 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "contains '"+c) || !strings.Contains(r.stderr, "which overlay mount options cannot carry") {
				t.Errorf("create in store %s: want it refused (exit 2, bad input) with one line naming %q:\n%s", store, c, r)
			}
		}
		if made := dirEntries(t, dir); len(made) != 2 {
			t.Errorf("refused stores were made in %s: %v, want only the symlink and its target", dir, made)
		}
		if made := dirEntries(t, target); len(made) != 0 {
			t.Errorf("the refused store behind the symlink has content: %v", made)
		}
	}
}
