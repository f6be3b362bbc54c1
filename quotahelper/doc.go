// Package quotahelper is the privileged half of taproot's per-image disk
// limits: the body of the setuid-root command taproot-quota.
//
// An image's limit is an XFS project quota. The helper gives the image dir
// <store>/images/<id> (and its diff/ and work/ when they exist) a project ID
// with the PROJINHERIT flag, so everything created below is charged to it,
// and sets the ID's block and inode hard limits in one quotactl(Q_XSETQLIM)
// call (d_blk_hardlimit and d_ino_hardlimit; XFS does not charge inodes to
// the block limit, so without an inode limit a container could create
// empty files, dirs and symlinks until the filesystem has no inodes left). Stats read
// the ID's usage with Q_XGETQUOTA: O(1), no tree walk. work/ must carry the
// same ID as diff/, because XFS refuses (EXDEV) a rename or link into a
// PROJINHERIT dir from another project, and overlayfs copies up through
// work/. So call set-limit before creating diff/ and work/, or after: the
// helper sets the three dirs, but it never walks into them.
//
// # Commands
//
//	taproot-quota set-limit <store>/images/<id> <bytes> <inodes>
//	taproot-quota stats <store>/images/<id>   → {"project_id":N,"bytes_used":N,"bytes_limit":N,"inodes_used":N,"inodes_limit":N}
//	taproot-quota clear <store>/images/<id>
//	taproot-quota check-store <store>         → {"store":…,"filesystem":"xfs","project_quota_accounting":…,"project_quota_enforced":…,"capacity_bytes":N}
//
// Results go to stdout as one JSON line; errors are one line on stderr and
// a non-zero exit (1 refused or failed, 2 bad command line). taproot runs
// these as a program through its client, overlayxfs.QuotaHelper; the
// taproot binary does not link this package (internal/depcheck pins that).
//
// # What the helper trusts
//
// Nothing the caller controls but an image path, a size and an inode count. The package
// imports only the standard library, golang.org/x/sys,
// github.com/moby/sys/mountinfo (a parser of the kernel's mountinfo of
// about 300 lines that itself needs only those two) and internal/fsname
// (the filesystem-name table taproot prints too; fmt and x/sys only); a
// test enforces it (internal/depcheck),
// runs no other program, looks nothing up in PATH and clears its
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
//     directory on the store's filesystem (st_dev) writable by no one else.
//     images/ and images/<id> must be owned by the store's owner; diff/ and
//     work/ by the store's owner or by its container root (see "Container
//     root" below). Every later call works on these fds, so renaming things
//     after the checks changes nothing.
//   - No other listed store on the store's filesystem may have another
//     owner (see "One owner per filesystem" below).
//   - The size and the inode count must be plain decimal digits, greater
//     than 0; the size not more than the filesystem's size, the inode count
//     not more than that size over 256 (XFS's smallest inode).
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
// processes in a user namespace (the containers), which cannot; a container
// that broke out to the initial user namespace as its root's host uid owns
// its upper dir's files and is bound no more than the owner.
//
// clear resets the dirs' project ID to 0 and PROJINHERIT off and sets every
// limit of the ID (blocks and inodes) to 0, after which XFS forgets the ID
// once nothing is charged to it (when the image's files are removed).
//
// # Container root
//
// In a root-owned store (the "maximus" mapping: container uid 0 is host uid
// 4294967294) the image's diff/ and work/ are owned by container root's host
// uid, because the runtime mounts the overlay as container root inside the
// container's user namespace and that uid must own the upper dir. The
// helper must accept that owner, and no other. It learns container root's
// host uid from the store's meta, <store>/meta/store.json (owner_uid and
// the uid_mappings entry for container uid 0), opened from the store's
// checked fd with no symlink and no mount crossing. meta/ and the file must
// be owned by the store's owner and writable by no one else, so only the
// owner (or root) can have written them, and the file's owner_uid must be
// the store's owner. The meta is read only when diff/ or work/ is not the
// owner's, so a store whose container root is its owner needs none.
//
// Why this is enough:
//
//   - Root store: its owner is root, so container root (or a container
//     that broke out as it) cannot write the meta: it cannot make the
//     helper accept any other uid.
//   - Rootless store: the caller owns the meta and may write any uid X in
//     it. That gains nothing: the helper then accepts a diff/ or work/ owned
//     by X inside the caller's images/<id>, but such a dir has to get there.
//     images/<id> is the caller's and writable by no one else, so X cannot
//     put it there; the caller can create only dirs it owns, and can move
//     a directory to a new parent only with write permission on that
//     directory (the kernel checks it, to update ".."), which the mode
//     check (not group or world writable; an ACL granting write shows in
//     the group bits) rules out for X's dir. Even then the helper only sets
//     a project ID on it, which charges X's later writes in a dir X chose
//     to give away to the caller's limit. Host root as container root of a
//     store not owned by root, and (uid_t)-1, are refused outright.
//   - Deriving container root otherwise was considered: from the owner of
//     images/<id> (the caller's to choose), from /etc/subuid (maximus is in
//     no such file, and name lookups there need /etc/passwd parsing in a
//     setuid program), or a fixed 4294967294 for root stores (wrong for a
//     root store made with --uid-mapping). The meta is the store's own
//     record of the mapping the worker used to chown these very dirs.
//
// # One owner per filesystem
//
// The kernel lets the owner of a file set any project ID on it from the
// initial user namespace (FS_IOC_FSSETXATTR; verified in UML), so a user
// who owns files on an XFS filesystem can charge them to any project there:
// with two owners' stores on one filesystem, owner A learns B's project IDs
// (inode numbers) and fills B's limits, and no check in the helper can stop
// it, because A needs no helper to do it. So the quota stores of a
// filesystem must belong to one owner: init-store refuses a store for a
// second owner on a filesystem that holds another owner's listed store, and
// the helper refuses to act on a store when another listed store on the
// same st_dev is owned by another uid (ErrSharedFilesystem), so that a list
// edited by hand, or written by an older taproot, fails loudly rather than
// quietly lets tenants charge each other. The other listed stores are
// opened as root with O_PATH, from / with no symlink on their path (a
// path that cannot be opened so is not a store and is skipped), so that an
// owner who can rename a directory above its own listed store cannot point
// that path at a directory of another filesystem to make the helper refuse
// someone else. The owner of a store is the uid owning its directory: root
// for root stores, the user for rootless ones. Root's store and a user's
// store conflict too (under maximus, container uids are the same host uids
// as real users).
//
// # quotactl
//
// quotactl_fd(2) (Linux 5.14) on the store's fd is used when the kernel has
// it; otherwise quotactl(2) on the block device, found in
// /proc/self/mountinfo (moby/sys/mountinfo, filtered to the store's
// major:minor) and checked by stat to be a block device with that number.
// The ioctl and quotactl constants and structures
// that golang.org/x/sys lacks are defined in sys_linux.go from linux/fs.h,
// linux/quota.h and linux/dqblk_xfs.h.
package quotahelper
