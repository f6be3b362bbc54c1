// Package fsname names a filesystem by its statfs magic number. It is the
// one table that both taproot (overlayxfs: init-store, check) and the setuid
// helper taproot-quota (check-store) print, so the two cannot drift apart;
// it imports only fmt and x/sys, which the helper may link.
package fsname

import (
	"fmt"

	"golang.org/x/sys/unix"
)

var names = map[int64]string{
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlay",
	unix.NFS_SUPER_MAGIC:       "nfs",
}

// Of names the filesystem of statfs magic ("xfs", "ext4", "btrfs", "tmpfs",
// "overlay", "nfs"; any other as its magic in hex, e.g. "0x9fa0").
func Of(magic int64) string {
	if n, ok := names[magic]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", magic)
}
