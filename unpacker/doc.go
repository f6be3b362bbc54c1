// Package unpacker turns one layer tar stream into one directory, safely,
// for a rootless image store.
//
// # What
//
// Unpack extracts a tar stream into an existing directory. UnpackLayerTo is
// the per-layer pipeline the store's worker runs: it streams a (gzip, zstd
// or plain) layer blob, verifies the blob digest and the diffID, writes
// tar-split metadata to a writer the caller gives (the worker gets it as an
// fd the store opened), so that the exact original tar can be rebuilt later
// with Reassemble, and leaves the diff dir empty when anything fails.
// UnpackLayer is the same into dest/diff with dest/tar-split.json.gz
// (TarSplitName) beside it, for tools and tests.
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
// # Semantics: a layer is applied in order
//
// Both modes give what applying the layer's entries one after another gives
// (the image spec's changeset application), the overlay form expressing it
// for a mount over the lower layers. In overlay form the root holds only the
// current stream's entries.
//
//   - An entry replaces what is at its path; a directory over a directory
//     merges (the later entry's owner, mode and xattrs win, the children
//     stay).
//   - ".wh.NAME" deletes NAME, whichever layer wrote it: lower layers' NAME
//     (overlay form: a whiteout device) and what this same layer wrote there
//     before it (both forms: removed). A whiteout of content the layer wrote
//     itself makes the tar impossible to rebuild from disk:
//     LayerResult.Unverifiable.
//   - A path whited out (or holding another non-directory of this layer) and
//     then made a directory again, by an entry or implied by a child entry,
//     is a new directory: in overlay form it is opaque, so the lower layers'
//     children stay hidden. A non-directory made after its whiteout simply
//     replaces the whiteout.
//   - ".wh..wh..opq" in D deletes what lower layers have below D; this
//     layer's entries below D stay, whether they come before or after the
//     marker. In overlay form whiteouts below a directory the layer made
//     opaque are dropped: they hide nothing, and overlay would list them.
//   - A parent directory that no entry names is made 0755 0:0. When a lower
//     layer has that directory, overlay shows this layer's 0755 0:0 where
//     sequential application keeps the lower metadata: one layer cannot
//     know its lowers (images made by the usual tools name every parent).
//   - A whiteout in a directory that overlay does not merge with a lower
//     one (the lowers have no directory there, so the whiteout hides
//     nothing) is listed by overlay's readdir but not found by stat. The
//     layer cannot tell; the squashed form has no such entries.
//
// unpacker's conformance test checks every pair of lower state and
// same-layer sequence of file, directory, symlink, hardlink, whiteout and
// opaque marker through real overlay mounts, per layer and squashed.
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
//   - Every path is resolved from the root's fd one component at a time,
//     each with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
//     RESOLVE_NO_MAGICLINKS from its parent directory's fd. No symlink is
//     ever followed, not even one that stays inside root: overlay never follows
//     a lower layer's symlink when it merges a path either, so following one
//     here would put content where the mounted image would not show it. Such
//     a path is an error wrapping ErrUnsafePath. The fds of the last parent
//     directory and its ancestors are kept (dirChain), so an entry in the
//     same directory as the previous one costs no lookup, and no syscall
//     sees more than one name: paths are not limited by PATH_MAX (4096
//     bytes), only each name by NAME_MAX (255). Measured on 10,000 files of
//     a layer in directory order: 9.1 filesystem syscalls per file before
//     (a full-path openat2 and its close per entry), 7.1 after, at depth 5
//     and 20 alike; 4 now (openat, write, utimensat, close: no fcntl, no
//     fchmod when the mode survives the umask, no fchown when the file is
//     already the entry's owner and no directory is setgid).
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
//
// A leaf: it imports no other taproot package (internal/depcheck pins
// that). It runs inside the worker (package worker), which calls
// UnpackLayerTo for each layer; to squash, Unpack with ApplyWhiteouts fed
// by Reassemble (or DiffTar for a layer whose tar cannot be rebuilt); to
// verify, Reassemble (checked against the diffID) and the tar-split
// entries (NewEntryReader).
package unpacker
