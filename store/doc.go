// Package store owns taproot's on-disk layout: layers keyed by diffID and
// shared by every image, per-image upper/work dirs, the records that
// describe them, the locks that let many processes use one store at once,
// and the recovery of what a killed process left behind.
//
// Layout (one store = one owner and one ID mapping):
//
//	<store>/meta/store.json          version, owner, ID mappings, quota on/off
//	<store>/layers/<hex>/diff/       unpacked layer in overlay form
//	<store>/layers/<hex>/layer.json  record: diffID, sizes, media type
//	<store>/layers/<hex>/tar-split.json.gz
//	<store>/l/<short> -> ../layers/<hex>/diff
//	<store>/images/<id>/{rootfs,diff,work}/ image.json
//	<store>/locks/ tmp/
//
// Everything is published by rename(2) or by writing a record last, so a
// crash leaves only debris that Recover (and clean/check) removes.
//
// Files inside layers are owned by container IDs mapped to host IDs, which
// an unprivileged caller cannot create or remove itself: that work runs in
// a worker process (this same binary) inside a user namespace with the
// store's mapping; see RunWorker.
//
// The image user (ResolveUser) is looked up in the image's own /etc/passwd
// and /etc/group, which the image author wrote and a container that broke
// out as container root's host ID can rewrite in a layer, and root reads
// them: they are opened beneath the layer (openat2 RESOLVE_IN_ROOT), as an
// O_PATH|O_NOFOLLOW fd first, only a regular file is then opened, O_NONBLOCK
// (a FIFO cannot hang create), and at most 1 MiB is read (see user.go).
package store
