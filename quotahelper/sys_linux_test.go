package quotahelper

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// blockDevice finds the device of a block-backed filesystem through
// mountinfo and the stat check, and none for a filesystem with no device.
func TestBlockDevice(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Dev) == 0 {
		t.Skip("/ is on a filesystem without a block device (major 0: overlay or tmpfs root); the UML quota tests cover the lookup")
	}
	root, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	dev, err := blockDevice(root)
	if err != nil {
		t.Fatal(err)
	}
	var dst unix.Stat_t
	if err := unix.Stat(dev, &dst); err != nil || dst.Mode&unix.S_IFMT != unix.S_IFBLK || dst.Rdev != st.Dev {
		t.Errorf("blockDevice(/) = %s (mode %o rdev %d:%d), want the block device %d:%d: %v", dev, dst.Mode, unix.Major(dst.Rdev), unix.Minor(dst.Rdev), unix.Major(st.Dev), unix.Minor(st.Dev), err)
	}
	proc, err := os.Open("/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	if dev, err := blockDevice(proc); err == nil {
		t.Errorf("blockDevice(/proc) = %s, want none", dev)
	}
}
