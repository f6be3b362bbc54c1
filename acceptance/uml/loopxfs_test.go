package uml

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOverlayxfsLoopXFSInUML runs overlayxfs's root-only TestLoopXFS
// (MakeLoopXFS, ProjectQuotaEnabled, Capacity, UnmountLoopXFS) as root in a
// guest, where XFS has quota support and loop is a module.
func TestOverlayxfsLoopXFSInUML(t *testing.T) {
	SkipIfUnavailable(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "overlayxfs.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, "github.com/taproot-dev/taproot/overlayxfs")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c overlayxfs: %v\n%s", err, out)
	}
	out, err := Run(context.Background(), t, `
busybox insmod /usr/lib/uml/modules/$(uname -r)/kernel/drivers/block/loop.ko
TAPROOT_TEST_LOOP_XFS=1 "$UML_WORK/bin/overlayxfs.test" -test.run '^TestLoopXFS$' -test.v -test.count=1
`, Options{WorkDir: dir})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "--- PASS: TestLoopXFS") {
		t.Errorf("TestLoopXFS did not pass in the guest:\n%s", out)
	}
	// The guest's mounts left nothing in the host's utab (the guest's root
	// is the host's /, and its /run a tmpfs of its own).
	if utab, err := os.ReadFile("/run/mount/utab"); err == nil && strings.Contains(string(utab), dir) {
		t.Errorf("the host's /run/mount/utab has lines of the guest's mounts:\n%s", utab)
	}
}
