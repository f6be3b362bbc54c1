// Package unpacker turns one layer tar stream into one directory, safely,
// for a rootless image store.
//
// # What
//
// Unpack extracts a tar stream into an existing directory. UnpackLayer is the
// store's per-layer pipeline: it streams a (gzip, zstd or plain) layer blob,
// verifies the blob digest and the diffID, records tar-split metadata next to
// the unpacked tree (so the exact original tar can be rebuilt later with
// Reassemble) and leaves nothing behind when anything fails.
//
// # Why
//
// taproot serves root filesystems that a runtime mounts with overlay inside a
// user namespace. Layers are therefore stored in overlay form: a whiteout is a
// 0:0 character device and an opaque directory carries the
// user.overlay.opaque=y xattr (the mount uses "userxattr"). The same code can
// also apply whiteouts instead (ApplyWhiteouts), which the store uses to squash
// the lowest layers of a too-deep image into one directory.
//
// # Ownership and privileges
//
// The caller always runs as real root or as root in a user namespace whose
// mapping already translates container IDs to host IDs, so owners are written
// exactly as the tar says (no ID shifting here). A uid or gid the namespace
// does not map makes chown fail with EINVAL; that becomes an error wrapping
// ErrIDOutsideMapping that names the entry and the ID. Inside a user namespace
// real device nodes cannot be created: callers set SkipDevices and get one
// summary warning. Whiteout devices (0:0) are always created; Linux >= 5.8
// allows that without privilege.
//
// # Security model
//
// The tar stream is chosen by an attacker. The filesystem under root is not
// concurrently modified by anyone else while Unpack runs (the store holds a
// lock and owns the directory), but it may hold content from earlier streams
// (ApplyWhiteouts mode), which is just as hostile as the current stream.
//
//   - Names are cleaned (leading "/" and "./" removed, "a/../b" folded); a name
//     that still climbs out of root is an error wrapping ErrUnsafePath.
//   - Every path is resolved relative to a directory fd of root with openat2
//     RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS. No symlink is
//     ever followed, not even one that stays inside root: overlay never follows
//     a lower layer's symlink when it merges a path either, so following one
//     here would put content where the mounted image would not show it. Such
//     a path is an error wrapping ErrUnsafePath.
//   - The last component is always handled with a *at syscall relative to its
//     verified parent directory fd and with no-follow semantics (mkdirat,
//     openat O_EXCL|O_NOFOLLOW, symlinkat, linkat without AT_SYMLINK_FOLLOW,
//     mknodat, fchownat and utimensat with AT_SYMLINK_NOFOLLOW). chmod and
//     xattrs are never applied to symlinks.
//   - Hardlink targets must already exist beneath root, must not be
//     directories, and are resolved with the same rules.
//   - Symlink targets are data: they are stored, never followed.
//   - Xattrs: user.* and security.capability are kept; user.overlay.* and
//     trusted.overlay.* are dropped (an image must not inject overlay
//     metadata), as are other trusted.*, security.* and system.* xattrs. An
//     entry whose kept xattrs exceed 64 KiB in total gets none of them (skip
//     with a warning rather than fail: xattrs are never needed to run an
//     image, and a warning keeps the pull working).
//   - Bounds (Options; each refusal is a *LimitError, errors.Is
//     ErrLimitExceeded, naming the config key): MaxBytes caps the file
//     content on disk in 4 KiB blocks (gzip bombs, fragment amplification)
//     and the whole uncompressed tar at MaxBytes + max(MaxBytes, 1 MiB)
//     (bombs of zero padding or of empty entries); Image shares a cap
//     between the layers of one image; MaxEntries caps entries plus the
//     directories they imply; MaxRatio stops a compression bomb after
//     64 MiB.
//   - Sparse entries (GNU 'S', PAX GNU.sparse 0.0/0.1/1.0) are written with
//     holes: their data fragments are read straight from the stream, never
//     expanded, so the cost is that of the data whatever the apparent size
//     (record.go explains how this stays exact for Reassemble).
//   - Work is linear in the entries (duplicate paths included) and memory
//     is bounded whatever the names: paths are kept as 64-bit hashes, except
//     directory paths for their times (capped at 16 MiB); one 128 KiB copy
//     buffer; the tar reader's 1 MiB cap on each PAX header and our 8 MiB
//     cap on one entry's headers.
//   - Unpack requires the tar end-of-archive marker, so a stream cut at an
//     entry boundary is reported as truncated rather than accepted.
//
// Limits: Reassemble cannot rebuild a tar in which a regular file with content
// is later replaced by another entry of the same name (the first content is
// gone from disk; tar-split's checksum then fails), nor content of entries the
// unpacker skipped (unknown types with a body).
package unpacker
