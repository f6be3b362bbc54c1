// Package worker is the process that writes files owned by container IDs,
// and both ends of the protocol the store speaks with it.
//
// # What runs where
//
// A file in a layer is owned by a container ID that must land on disk as
// the host ID the store's mapping gives it. An unprivileged caller cannot
// lchown to those IDs, and a root caller should not do it by hand for every
// entry; instead the store starts this same binary again (/proc/self/exe
// with the argument "__worker") inside a new user namespace with the
// store's mapping (internal/userns), where it runs as container root and
// lchown just works. That child is the worker. Its entry point is Main,
// which the taproot binary's main calls first thing, as does the TestMain
// of every package whose tests run a worker: if the process was started as
// a worker Main serves one request and exits, otherwise it returns at once.
//
// The parent side is Runner, a value the store fills from its options and
// its meta (the mapping) for each call, with one method per operation:
//
//   - Unpack: layer streams → empty diff dirs, one tar-split file each.
//   - Squash: published layers (base first) → one empty diff dir, in apply
//     form, for images overlay cannot stack.
//   - Verify: published layers against their tar-split metadata (check).
//   - Remove: paths the caller cannot remove itself (files of sub-IDs).
//
// # Threat model
//
// The worker runs as container root: on a root store the host ID
// 4294967294, on a rootless one the caller, and it can become any mapped
// ID. It handles bytes the image author chose (tar headers, names, link
// targets, xattrs, sizes). So it is given as little as possible:
//
//   - It writes only into the diff dirs named in its request, which the
//     parent made empty and handed to container root, and into the
//     tar-split files the parent opened and passed as fds. Every record
//     (layer.json, image.json, links), every rename that publishes a layer
//     and every directory of the store's own is the parent's, made after
//     the worker reported; container root can never write them (see
//     store/perm.go), so a worker subverted by a hostile layer can damage
//     only the layer it was writing, which the parent then does not publish.
//   - It reads no config and no store meta: its request says everything
//     (paths, digests, bounds, whether to sync), and it takes no flags.
//   - Entries are resolved beneath the diff dir without following symlinks
//     (unpacker); devices are skipped; the bounds (Runner.Bounds) stop
//     bombs before they fill the disk.
//   - It dies with its parent (Pdeathsig) and when the parent's context
//     ends (SIGKILL).
//
// # Protocol
//
// One process serves one request. The parent writes one JSON object on the
// worker's stdin: {"op": OP, "body": {...}}, where the body is that op's
// own type (unpackRequest, squashRequest, verifyRequest, removeRequest),
// decoded strictly. Layer streams arrive on pipes at fds userns.FirstExtraFD,
// FirstExtraFD+1, ... (one per layer), and the tar-split files right after
// them; the request names each layer's two fds.
//
// The worker answers with JSON lines on stdout: for Unpack one
// {"layer": {...}} line per layer as soon as that layer is done (so the
// parent publishes it and other creates waiting on it go on), then one last
// line, {"done": REPLY} with the op's reply, or {"error": ...} if the
// request failed as a whole. stderr is free text, logged by the parent at
// debug level.
//
// Every failure crosses as its message and a code naming its class
// (errors.go): the parent rebuilds an error whose text is the worker's and
// which errors.Is matches to the same sentinel (unpacker.ErrUnsafePath,
// unpacker.ErrLimitExceeded, syscall.ENOSPC, ...), so the CLI exits with
// that class's code and callers never match text.
//
// # What this package must not do
//
// It runs as container root on the image author's bytes, so it links as
// little as it can: of taproot's packages only unpacker, internal/userns
// and idmap; never store (records, locks and publishing are the
// parent's), fetcher, spec, gc, builder or the CLI, nor cobra or
// containers/image. internal/depcheck's TestLayering pins these imports.
package worker
