// Package quotahelper is the privileged half of taproot's per-image disk
// limits: the body of the setuid-root command taproot-quota.
//
// An image's limit is an XFS project quota. The helper gives the image dir
// <store>/images/<id> (and its diff/ and work/ when they exist) a project ID
// with the PROJINHERIT flag, so everything created below is charged to it,
// and sets the ID's block hard limit with quotactl(Q_XSETQLIM). Stats read
// the ID's usage with Q_XGETQUOTA: O(1), no tree walk. work/ must carry the
// same ID as diff/, because XFS refuses (EXDEV) a rename or link into a
// PROJINHERIT dir from another project, and overlayfs copies up through
// work/. So call set-limit before creating diff/ and work/, or after: the
// helper sets the three dirs, but it never walks into them.
//
// # Commands
//
//	taproot-quota set-limit <store>/images/<id> <bytes>
//	taproot-quota stats <store>/images/<id>   → {"project_id":N,"bytes_used":N,"bytes_limit":N}
//	taproot-quota clear <store>/images/<id>
//	taproot-quota check-store <store>         → {"store":…,"filesystem":"xfs","project_quota_accounting":…,"project_quota_enforced":…,"capacity_bytes":N}
//
// Results go to stdout as one JSON line; errors are one line on stderr and
// a non-zero exit (1 refused or failed, 2 bad command line).
//
// # What the helper trusts
//
// Nothing the caller controls but an image path and a size. The package
// imports only the standard library and golang.org/x/sys (a test enforces
// it), runs no other program, looks nothing up in PATH and clears its
// environment at once.
//
//   - Stores: only those listed, one clean absolute path a line, in the
//     root-owned file StoresListPath (/etc/taproot/stores), a constant. The
//     list, its directory and every directory above it must be owned by root
//     and not writable by group or others (a sticky directory is allowed).
//     EnvStoresList overrides the path only when the helper is not running
//     setuid or setgid (tests run as root); a setuid run ignores it.
//   - The image path must be clean and absolute (no "..", no "."), of the
//     exact form <store>/images/<id> for a listed <store>.
//   - The store is opened from / one component at a time with openat2
//     (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS; openat with
//     O_NOFOLLOW before Linux 5.6): no symlink anywhere on the path. Every
//     directory above the store must be owned by root or the caller and not
//     writable by group or others unless sticky. The store must be owned by
//     the caller's real uid (root may act on any listed store) and writable
//     by no one else.
//   - images/, images/<id>, and diff/ and work/ below it are opened the same
//     way from the store's fd, adding RESOLVE_NO_XDEV, and each must be a
//     directory on the store's filesystem (st_dev), owned by the store's
//     owner and writable by no one else. Every later call works on these fds,
//     so renaming things after the checks changes nothing.
//   - The size must be plain decimal digits, greater than 0, and not more
//     than the filesystem's size.
//
// # Privileges
//
// A setuid run lowers its effective uid to the real uid at once (the saved
// uid stays 0), so every check and open happens with the caller's own
// rights; drops a setgid group for good; takes root back only around the
// FS_IOC_FSSETXATTR ioctls and quotactl calls; and sets all three uids to
// the real uid before it writes any output. fds 0-2 are made sure to be open
// so that no opened file can become stdout.
//
// # Project IDs: the image dir's inode number
//
// The project ID of an image is the inode number of its image dir,
// <store>/images/<id>, as fstat reports it on the fd the helper opened. The
// caller never names an ID, and the helper never reads one back from the
// directory to decide what to act on (the owner of a file can change its
// project ID with FS_IOC_FSSETXATTR from the initial user namespace, which
// was verified in UML: so the ID on a directory is the caller's to forge).
//
// This prevents the attack of getting another image's project ID: to make the
// helper raise, lower, clear or read the limit of ID N, a caller would need a
// directory it owns, in its own listed store, whose inode number is N. While
// the victim's image dir exists, the kernel gives inode N to no other file;
// once it is deleted, the ID is free and its reuse is correct. No
// allocation record is needed, so there is none to corrupt, lose, lock or
// leak: deleting an image dir frees its ID, even after a crash. (A record
// kept in the store would be writable by its owner; a root-owned one would
// need locking and a per-filesystem scope, since project IDs are per
// filesystem while several stores may share one.) stats refuses a dir whose
// project ID or PROJINHERIT flag is not the one the helper sets.
//
// Limits of this scheme: inode numbers must fit 32 bits, true on XFS below
// about 1 TiB, or on any size with the inode32 mount option; the helper
// refuses a larger one clearly. The filesystem should be dedicated to
// taproot stores, since other project IDs set by hand on it could collide.
// And XFS project quotas do not bind the store's owner in the initial user
// namespace: it can change the project ID of its own files. They bind
// processes in a user namespace (the containers), which cannot.
//
// clear resets the dirs' project ID to 0 and PROJINHERIT off and sets every
// limit of the ID to 0, after which XFS forgets the ID once nothing is
// charged to it (when the image's files are removed).
//
// # quotactl
//
// quotactl_fd(2) (Linux 5.14) on the store's fd is used when the kernel has
// it; otherwise quotactl(2) on the block device, found in
// /proc/self/mountinfo by the store's st_dev and checked to be a block
// device with that number. The ioctl and quotactl constants and structures
// that golang.org/x/sys lacks are defined in sys_linux.go from linux/fs.h,
// linux/quota.h and linux/dqblk_xfs.h.
package quotahelper
