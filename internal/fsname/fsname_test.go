package fsname

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestOf(t *testing.T) {
	// nfs is the name the two old copies of this table disagreed on.
	for magic, want := range map[int64]string{
		unix.XFS_SUPER_MAGIC:  "xfs",
		unix.NFS_SUPER_MAGIC:  "nfs",
		unix.PROC_SUPER_MAGIC: "0x9fa0", // not named: hex
	} {
		if got := Of(magic); got != want {
			t.Errorf("Of(%#x) = %q, want %q", magic, got, want)
		}
	}
}
