// Package store owns taproot's on-disk layout: layers keyed by diffID and
// shared by every image, per-image upper/work dirs, the records that
// describe them, the locks that let many processes use one store at once,
// and the recovery of what a killed process left behind.
//
// # One lifecycle
//
// Every lifecycle method takes a context and may run while other processes
// use the same store; the store's locks (locks.go) make them safe together.
//
//	st, err := store.Open(ctx, root, opts)
//
// Open makes the store on first use by its owner, or root makes it for an
// unprivileged owner with Init (init-store): both go one way (establish in
// init.go), which defaults the mapping, refuses one that does not map
// container root, takes the init lock before anything that depends on the
// mapping changes, and writes the meta record last. A store that others
// could write or swap is refused (perm.go).
//
//	keys, err := st.Pull(ctx, layers)
//	rec, err := st.Create(ctx, store.CreateRequest{ID: id, Layers: layers})
//
// Pull makes layers present. Create makes them present too and holds them
// (a shared reference lock per layer, so clean cannot take one), squashes
// the lowest if overlay could not stack them, makes the image's upper,
// work and rootfs dirs with its disk limit, and writes the image record
// last: until then the image does not exist, and a failed create leaves no
// image, no scratch dir and no lock file. An id that exists is refused
// with ErrImageExists.
//
//	rec, err = st.Image(ctx, id)        // or st.Images(ctx)
//	du, err := st.Stats(ctx, id)
//
// Image reads a record and checks every name in it (records are data,
// never paths: names.go). Stats adds the image's exclusive bytes, from its
// project quota or by walking its upper dir, to its base size.
//
//	err = st.Delete(ctx, id)
//
// Delete moves the image aside and removes it (with Options.DeferReclaim
// it leaves the removal to Reclaim, which a background process runs); an
// unknown id returns ErrImageNotFound and changes nothing. The layers stay
// until clean.
//
//	u, err := st.Usage(ctx, store.UsageOptions{})
//	res, err := st.Clean(ctx)
//
// Usage is what metrics report and what the clean threshold compares (gc
// holds that policy). Clean is the whole garbage collection: it waits for
// deferred deletes (Reclaim), removes debris (below), then in batches the
// layers no record names and no create holds, then local-rootfs records,
// cached manifests and configs and short links that lead nowhere.
//
//	rep, err := st.Check(ctx, store.CheckOptions{Repair: true})
//
// Check verifies every layer against its tar-split record and the records,
// dirs and links around them; with Repair it removes what is damaged (the
// next create makes it again) and the debris.
//
// Besides the lifecycle: ValidateID checks an id before anything is
// opened (the builder calls it first, so a bad id fails before the
// network); CachedBlob and CacheBlob are the fetcher's cache of manifests
// and configs (the store is a fetcher.Cache, handed to the fetcher by the
// builder, which the store never imports); Meta and Root describe the
// opened store; ReadStoreMeta reads a store's meta without opening it
// (init-store's one-owner-per-filesystem check). Create plans an image's
// overlay mount once and persists it in the record (ImageRecord.Mounts);
// Image checks it on every read and callers use it. Disk limits go through
// Options.Limiter, which the builder fills with its adapter of the setuid helper's client
// (overlayxfs.QuotaHelper): the store never runs taproot-quota itself.
//
// Debris, what a killed process leaves (a scratch dir under tmp/, an image
// dir without its record, a cache write before its rename, a lock file
// guarding nothing), is told from work in flight in one place (debris.go)
// by claiming its lock without waiting: check reports what repair removes
// (clean removes the same, but for image dirs taproot did not name), and
// none of them touches a create in flight. Package
// storetest holds these promises as a conformance suite that store's tests
// run against stores of both kinds of mapping, with sync on and off.
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
//	<store>/locks/<kind>-<what>.lock  init, layer-<hex>, fetch-<hex>, image-<id>, tmp-<name>
//	<store>/tmp/<kind>-<16 hex>/      scratch: layer, squash, trash
//	<store>/meta/local-<hex>.json     a local rootfs version's diffID
//
// Every path and lock name is spelled once, by the layout type
// (layout.go). Everything is published by rename(2) or by writing a record
// last, so a crash leaves only debris that clean and check --repair remove.
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
// store's mapping. The store fills one worker.Runner per call (worker.go)
// and calls one operation on it: Unpack (fetchLayers, unpackUnknown),
// Squash (squash.go), Verify (Check) or Remove (removeAll); see package
// worker for the protocol and its threat model.
//
// # What this package must not do
//
// The store is storage. It imports worker, unpacker, overlayxfs,
// internal/flock and idmap, never spec (the fragment is the
// builder's), fetcher or containers/image (layers arrive as store.Layer
// streams), gc or builder (nothing above it), or cobra; it writes nothing
// on stdout. internal/depcheck's TestLayering pins these imports.
package store
