// Package store owns taproot's on-disk layout: layers keyed by diffID and
// shared by every image, per-image upper/work dirs, the records that
// describe them, the locks that let many processes use one store at once,
// and the recovery of what a killed process left behind.
//
// Layout (one store = one owner and one ID mapping):
//
//	<store>/meta/store.json          version, owner, ID mappings, quota on/off
//	<store>/meta/blobs/sha256/<hex>  image manifests and configs by digest (CachedBlob)
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
// Power cuts (Options.Sync, on by default): once Create has returned, a
// power cut at any later moment loses nothing of that image: its layers,
// record, upper/work/rootfs dirs and the short links it names are on disk.
// Every published thing is durable before the step that makes it visible:
// a layer's contents (the worker's syncfs after unpacking or squashing),
// its short link (fsync of l/) and its records (fsync of each file before
// its rename, of its dir after) before its rename into layers/, which is
// fsynced before the layer counts as published; the image's record, dirs
// and images/ entry before Create returns. Delete and clean make their
// rename into the trash durable before removing anything, so a cut never
// brings back a record whose content is gone. A cut during a create,
// delete or clean leaves debris only, which Check with Repair removes;
// Check with Quick finds what a cut leaves on a store without Sync (empty
// records, files shorter than written) with a stat per file, for a run at
// boot.
//
// Files inside layers are owned by container IDs mapped to host IDs, which
// an unprivileged caller cannot create or remove itself: that work runs in
// a worker process (this same binary) inside a user namespace with the
// store's mapping; see RunWorker.
package store
