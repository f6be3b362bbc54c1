package store

import (
	"fmt"
)

// BytesPerInode is the default inode rule: an image may have one inode per
// 2 KiB of its disk limit. XFS does not charge inodes to a project's block
// limit (an empty file, a dir or a short symlink costs no block), so a
// project needs an inode limit of its own or one container exhausts the
// filesystem's inodes for everyone.
//
// Why 2 KiB: (1) a workload of real files never meets it before the byte
// limit: every non-empty regular file costs at least one 4 KiB block, so
// even with one dir or symlink per file a container runs out of bytes
// first; (2) mkfs.xfs's defaults (512-byte inodes, imaxpct 25% below 1 TiB)
// give a filesystem of C bytes room for C/2048 inodes, so a project with a
// limit of L bytes may take at most the share L/C of the inodes that its
// limit takes of the blocks: limits that cannot fill the disk cannot run
// it out of inodes either. Its uncharged inode space is at most 512 bytes
// per 2 KiB, a quarter of the limit.
const BytesPerInode = 2048

// inodeLimit is the project inode hard limit of an image, the inode
// counterpart of its project byte limit upperBytes (the limit the helper
// sets: DiskLimit less the base, DiskLimit with ExcludeBase, the
// filesystem's size without a limit). baseInodes is the image's own inode
// count (layers' tar entries).
//
// With DiskLimitInodes N it counts the image's inodes as DiskLimit counts
// its bytes: N - baseInodes, or N with ExcludeBase; N <= baseInodes is
// refused. Else the image may have one inode per BytesPerInode of its disk
// limit, its own inodes included unless ExcludeBase, but its container
// never fewer than one per BytesPerInode of what the limit leaves it to
// write:
//
//	max(ceil(DiskLimit/2048) - baseInodes, ceil(upperBytes/2048))
//
// so that an image with more inodes than 2 KiB blocks of content (many
// small files, dirs, symlinks) is never refused or starved by its inodes.
func inodeLimit(req CreateRequest, upperBytes uint64, baseInodes int64) (uint64, error) {
	base := uint64(max(baseInodes, 0))
	if n := req.DiskLimitInodes; n > 0 {
		if req.ExcludeBase {
			return n, nil
		}
		if n <= base {
			return 0, fmt.Errorf("image %q: %w: inode limit %d, image %d inodes", req.ID, ErrLimitBelowBase, n, base)
		}
		return n - base, nil
	}
	perInode := func(b uint64) uint64 { return b/BytesPerInode + min(b%BytesPerInode, 1) }
	n := max(perInode(upperBytes), 1)
	if req.DiskLimit > 0 && !req.ExcludeBase {
		if total := perInode(req.DiskLimit); total > base {
			n = max(n, total-base)
		}
	}
	return n, nil
}

// ReadStoreMeta reads the meta record of the store at root without opening
// the store (init-store reads other owners' stores with it).
func ReadStoreMeta(root string) (Meta, error) {
	var m Meta
	err := readJSON(layout{root}.metaPath(), &m)
	return m, err
}
