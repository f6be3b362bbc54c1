package overlayxfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRegisterStore(t *testing.T) {
	list := filepath.Join(t.TempDir(), "etc", "taproot", "stores")
	if err := UnregisterStore(list, "/s/a"); err != nil {
		t.Fatalf("unregister from a missing list: %v", err)
	}
	for _, s := range []string{"/s/a", "/s/b", "/s/a"} {
		if err := RegisterStore(list, s); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string) {
		t.Helper()
		b, err := os.ReadFile(list)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("list is %q, want %q", b, want)
		}
		fi, _ := os.Stat(list)
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("list mode %v", fi.Mode())
		}
		di, _ := os.Stat(filepath.Dir(list))
		if di.Mode().Perm() != 0o755 {
			t.Errorf("list dir mode %v", di.Mode())
		}
	}
	check("/s/a\n/s/b\n")
	if err := UnregisterStore(list, "/s/a"); err != nil {
		t.Fatal(err)
	}
	check("/s/b\n")
	if err := UnregisterStore(list, "/s/b"); err != nil {
		t.Fatal(err)
	}
	check("")
	for _, bad := range []string{"rel", "/s/../x", "/", "/s/a/", "/a\nb"} {
		if err := RegisterStore(list, bad); err == nil {
			t.Errorf("RegisterStore(%q) accepted", bad)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(list))
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestFilesystemFacts(t *testing.T) {
	typ, err := FilesystemType("/proc")
	if err != nil || typ != "0x9fa0" {
		t.Errorf("FilesystemType(/proc) = %q, %v", typ, err)
	}
	if _, err := FilesystemType("/nonexistent/x"); err == nil {
		t.Error("no error for a missing dir")
	}
	if on, err := ProjectQuotaEnabled("/proc"); err != nil || on {
		t.Errorf("ProjectQuotaEnabled(/proc) = %v, %v", on, err)
	}
	c, err := Capacity(t.TempDir())
	if err != nil || c == 0 {
		t.Errorf("Capacity = %d, %v", c, err)
	}
	m, err := mountOf("/proc")
	if err != nil || m.Mountpoint != "/proc" || m.FSType != "proc" {
		t.Errorf("mountOf(/proc) = %+v, %v", m, err)
	}
	if _, err := mountOf("/nonexistent/x"); err == nil {
		t.Error("mountOf of a missing dir succeeded")
	}
}

// TestLoopXFS needs root, a loop device and XFS with project quotas; the
// UML acceptance test runs it (TAPROOT_TEST_LOOP_XFS=1) inside its guest.
func TestLoopXFS(t *testing.T) {
	// An entry point: acceptance/uml's TestOverlayxfsLoopXFSInUML runs it
	// in a guest whose kernel has XFS quotas, with the variable set. On this
	// host's kernel it cannot run, and it is not a skip: the UML test is
	// the one that counts.
	if os.Getenv("TAPROOT_TEST_LOOP_XFS") != "1" {
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	backing, mnt := filepath.Join(dir, "store.xfs"), filepath.Join(dir, "mnt")
	if err := MakeLoopXFS(ctx, backing, 400<<20, mnt); err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			UnmountLoopXFS(ctx, mnt)
		}
	}()
	if err := MakeLoopXFS(ctx, backing, 400<<20, mnt); err == nil {
		t.Error("MakeLoopXFS over an existing backing file succeeded")
	}
	typ, err := FilesystemType(mnt)
	if err != nil || typ != "xfs" {
		t.Errorf("FilesystemType = %q, %v", typ, err)
	}
	on, err := ProjectQuotaEnabled(mnt)
	if err != nil || !on {
		t.Errorf("ProjectQuotaEnabled = %v, %v", on, err)
	}
	c, err := Capacity(mnt)
	if err != nil || c < 300<<20 || c > 400<<20 {
		t.Errorf("Capacity = %d, %v", c, err)
	}
	m, err := mountOf(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if err := UnmountLoopXFS(ctx, mnt); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if typ, _ := FilesystemType(mnt); typ == "xfs" {
		t.Error("still mounted")
	}
	if b, err := os.ReadFile("/sys/block/" + filepath.Base(m.Source) + "/loop/backing_file"); err == nil {
		t.Errorf("loop device %s still attached to %s", m.Source, b)
	}
	if err := UnmountLoopXFS(ctx, mnt); err == nil {
		t.Error("unmounting a plain dir succeeded")
	}
}

// mountOf finds a mount whose point has characters the kernel escapes in
// mountinfo (space, tab, backslash), and picks the mount at dir among
// several of the same filesystem (a bind mount of the store's filesystem
// elsewhere must not be taken for the store's own).
func TestMountOfEscapedAndBindMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (make test runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "a b\tc\\d")
	bind := filepath.Join(filepath.Dir(dir), "bind")
	for _, d := range []string{dir, bind} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if err := unix.Mount(dir, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bind, unix.MNT_DETACH)
	for _, want := range []string{dir, bind} {
		m, err := mountOf(want)
		if err != nil || m.Mountpoint != want || m.FSType != "tmpfs" {
			t.Errorf("mountOf(%q) = %+v, %v", want, m, err)
		}
	}
	for _, d := range []string{dir, bind} {
		if on, err := IsMountPoint(d); err != nil || !on {
			t.Errorf("IsMountPoint(%q) = %v, %v", d, on, err)
		}
	}
	if on, err := IsMountPoint(filepath.Dir(dir)); err != nil || on {
		t.Errorf("IsMountPoint(%q) = %v, %v; want false", filepath.Dir(dir), on, err)
	}
	if typ, err := FilesystemType(dir); err != nil || typ != "tmpfs" {
		t.Errorf("FilesystemType = %q, %v", typ, err)
	}
	if on, err := ProjectQuotaEnabled(dir); err != nil || on {
		t.Errorf("ProjectQuotaEnabled(tmpfs) = %v, %v", on, err)
	}
}
