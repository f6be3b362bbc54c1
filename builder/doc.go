// Package builder holds taproot's use cases: Create, Delete, Pull, Stats,
// List, Metrics, Clean, Check, InitStore, DeleteStore and Capacity. Each
// takes a context and a request struct and returns a result value; the
// command line (internal/cli) only parses flags into the request, calls one
// use case and encodes the result. This package imports no cobra and
// prints nothing on stdout.
//
// # Config precedence, once
//
// A Builder is made from the loaded config file (New). A request field the
// caller may leave out is optional on purpose: a nil pointer
// (CreateRequest.DiskLimitSizeBytes, ExcludeImageFromQuota,
// CleanRequest.ThresholdBytes), a pair of With/Without bools both false, or
// a nil mapping list means "not given", and only then does the config's key
// apply, else the default. So --disk-limit-size-bytes 0 and
// --exclude-image-from-quota=false override the config. The resolution of
// a create is one function (resolveCreate) that a unit test reads back.
//
// # One create, from request to fragment
//
// `taproot create docker://registry.example.com/app:1.2 web-1` goes:
//
//  1. internal/cli (create.go) fills a CreateRequest from the flags,
//     plugs its progress bars and JSON events into CreateRequest.Hooks,
//     and calls Builder.Create.
//  2. Create resolves the request against the config (resolveCreate):
//     id (store.ValidateID, so a bad id fails before any network),
//     limits, mappings, the clean and mount policy, the reference
//     (fetcher.ParseRef).
//  3. It opens the store (store.Open, made on first use with the request's
//     mappings), with the quota helper taproot-quota as its disk Limiter
//     when one is installed (quotaLimiter, quotaHelperPath).
//  4. With [create] with_clean (or --with-clean) it runs gc.Collect above
//     [clean] threshold_bytes first; a failed clean only warns.
//  5. It opens the image with the fetcher (source.go): registry settings
//     from [registry] and the request, the store as the fetcher's cache of
//     manifests and configs. Hooks.Resolved sees the image.
//  6. store.Create gets the image's layers as store.Layer values
//     (storeLayers): each opens its stream from the fetcher through
//     Hooks.Layer; a local rootfs dir or tarball carries a cache key of its
//     path, size and mtime (localVersion), so an unchanged local source is
//     not unpacked again. The store fetches and unpacks missing layers in
//     its user-namespace worker (this binary re-run, package worker),
//     squashes too-deep images, makes the upper/work dirs with the disk
//     limit and writes the image record last.
//  7. From here a failure deletes the image again, with
//     context.WithoutCancel so that a signal does not leave it half made.
//  8. The image user ("app", "1000:staff") is resolved in the image's own
//     /etc/passwd and /etc/group (user.go), read from the topmost of the
//     lower dirs that has them: the lowerdir of the overlay mount the store
//     planned and returned in the record (rec.Mounts[0].Lowers), so the
//     builder asks the store nothing more about the image's layout. Those
//     files are the image author's, or a broken-out container's, and root
//     may read them: they are opened beneath the layer (openat2
//     RESOLVE_IN_ROOT), as an O_PATH|O_NOFOLLOW fd first, only a regular
//     file is then opened, O_NONBLOCK (a FIFO cannot hang create), and at
//     most 1 MiB is read.
//  9. With --with-mount (root) the record's mounts are performed here
//     (overlayxfs.Mount.Mount) and none is printed; otherwise each becomes
//     a runtime-spec mount (Mount.SpecMount) for the runtime to perform.
//     spec.Fragment assembles the runtime-spec fragment: root.path, the
//     mounts, process (env, cwd, args, user), the store's ID mappings
//     (st.Meta), annotations.
//  10. cli prints CreateResult.Fragment as JSON on stdout.
//
// So a create reads each package once: cli calls Create; Create calls the
// fetcher (ParseRef, Open), the store (Open, Create; besides them only the
// pure ValidateID and the Meta accessor), spec and overlayxfs as
// libraries, each returning before the next step. The only calls back up
// are values the builder hands down: the store pulls each layer's stream
// through the store.Layer.Open closures of step 6 (fetcher, then
// Hooks.Layer), reports layer progress through store.Options.Progress
// (Hooks.Event), sets disk limits through quotaLimiter (overlayxfs's
// client of taproot-quota), and the fetcher reads and fills the store's
// blob cache through its fetcher.Cache interface.
//
// # The other use cases
//
// Delete unmounts a --with-mount, has the store move the image aside and
// starts `taproot __reclaim` (ReclaimCommand) in its own session to remove
// the files, so delete returns at once; Reclaim is that command's body.
// Stats, List and Metrics read the store's records (and the quota for
// stats). Clean is gc.Collect with clean's threshold; Check is the store's
// verification, failing with ErrStoreDamaged when damage stays. InitStore
// and DeleteStore (root) make and remove a store's filesystem (loop XFS or
// an existing XFS mount), its ownership and its entry in the quota
// helper's list of stores; Capacity is the store filesystem's size.
//
// Errors keep their classes: the store's, the fetcher's and the
// unpacker's sentinels (the last rebuilt by package worker across its
// process boundary) pass through wrapped, and the builder adds
// ErrBadInput (BadInput), ErrNoStore and ErrStoreDamaged. ClassOf
// (errors.go) names the class of any use case's failure with errors.Is/As
// (ClassBadInput ... ClassDamaged); the command line turns that class into
// its exit code, and never matches text.
//
// # What this package must not do
//
// It is the use-case layer: it imports store, fetcher, gc, spec,
// overlayxfs, internal/config and idmap (and unpacker, for its
// error sentinels), never cobra, internal/cli or quotahelper (the setuid
// helper is reached only as a program, through overlayxfs.QuotaHelper),
// and it prints nothing on stdout: results are values the caller encodes.
// internal/depcheck's TestLayering pins these imports.
package builder
