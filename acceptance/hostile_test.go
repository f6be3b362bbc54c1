package acceptance

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// Layers that try to write outside the layer dir: through a symlink to /,
// through "../" in names, through a hardlink to a host file. The host file
// must never appear; a create may fail (cleanly) or keep the write inside.
func TestHostileLayers(t *testing.T) {
	need(t)
	t.Parallel()
	// A dir the test user can write to, so only taproot's path handling
	// (not file permissions) keeps the layer out of it.
	esc := testDir(t, "layouts")
	hostTarget := filepath.Join(esc, "escaped")
	hostFile := filepath.Join(esc, "hostfile")
	if err := os.WriteFile(hostFile, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(hostFile, h.uid, h.gid); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		entries []ib.Entry
		mustErr bool
	}{
		{"symlink to root", []ib.Entry{ib.Symlink("evil", "/"), ib.File("evil"+hostTarget, "pwned\n")}, false},
		{"symlink dotdot", []ib.Entry{ib.Symlink("evil", "../../../../../../../../"), ib.File("evil"+hostTarget, "pwned\n")}, false},
		{"dotdot name", []ib.Entry{ib.File("../../../../../../../.."+hostTarget, "pwned\n")}, false},
		{"hardlink outside", []ib.Entry{ib.Hardlink("stolen", "../../../../../../../.."+hostFile)}, true},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, c.name), func(t *testing.T) {
			t.Parallel()
			ref, _ := pushImage(t, fmt.Sprintf("hostile-%d", i), busyboxImage(layer(c.entries...)))
			store := newStore(t)
			id := fmt.Sprintf("hostile%d", i)
			r := taproot(t, store, "create", "--insecure-registry", h.registry, ref, id)
			if exists(hostTarget) {
				t.Fatalf("layer wrote %s on the host", hostTarget)
			}
			if got := readFile(t, hostFile); got != "host secret\n" {
				t.Fatalf("host file changed: %q", got)
			}
			if c.mustErr || r.code != 0 {
				failsCleanly(t, store, r, id)
			}
		})
	}
}
