// Package fetcher turns an image reference into a manifest, a config and
// streamed layer blobs, on top of github.com/containers/image/v5.
//
// Usage:
//
//	ref, err := fetcher.ParseRef("docker://127.0.0.1:5000/app:1")
//	f := fetcher.New(fetcher.Options{InsecureRegistries: []string{"127.0.0.1:5000"}})
//	src, err := f.Open(ctx, ref)
//	defer src.Close()
//	img := src.Image()           // manifest digest, OCI config, layers (base first)
//	rc, err := src.OpenLayer(ctx, 0) // blob as stored: caller verifies digest, decompresses
//
// # References
//
// ParseRef accepts docker://HOST[:PORT]/REPO[:TAG|@DIGEST], GrootFS's
// docker:///REPO (Docker Hub, library/ added for one-part names) and its
// #TAG suffix, oci:DIR[:TAG], oci-archive:FILE[:TAG],
// docker-archive:FILE[:REF], and a plain path (or file:///path) to a rootfs
// directory or to a plain, gzip or zstd tarball (told apart by their first
// bytes, not by name). Only the docker, oci, oci-archive and docker-archive
// transports are linked in (never alltransports or the containers-storage
// transport, which would pull in storage drivers and cgo).
//
// # Registries
//
// Credentials: Options.Username/Password, else auth.json and credential
// helpers as containers/image finds them (Options.AuthFilePath overrides the
// path). registries.conf (mirrors, blocked registries, its own insecure
// flags) applies; Options.RegistriesConfPath overrides its path. A registry
// listed in Options.InsecureRegistries is contacted with TLS verification off
// and, when HTTPS fails, over plain HTTP. Each registry operation is bounded
// by Options.Timeout (a layer download only per stalled read) and transient
// failures (5xx, 429, refused or reset connections) are retried with
// exponential backoff; containers/image itself resumes blob bodies that break
// mid-stream.
//
// # Cache
//
// With Options.Cache (the store), manifests and configs of docker
// references are kept by digest and checked against it when read. A
// reference by digest whose manifest (list and instance) and config are
// cached opens with no request at all; the registry source is opened only
// when a layer, a signature or a missing manifest is needed. A reference
// by tag to a registry configured as insecure (Options.InsecureRegistries
// or registries.conf insecure = true, with no mirrors and no rewritten
// location) costs one anonymous HEAD of the manifest over plain HTTP; when
// that manifest is cached, nothing more. Otherwise containers/image is
// asked as without a cache (it probes HTTPS first even for an insecure
// registry: it has no setting to skip the probe), and the config still
// comes from the cache when the manifest names a cached one.
//
// # Policy
//
// Open checks every containers/image reference against policy.json
// (Options.PolicyPath, else ~/.config/containers/policy.json, else
// /etc/containers/policy.json). When none exists, any image is accepted and
// this is logged at debug level. Local directories and tarballs are not
// subject to the policy.
//
// # Platforms
//
// For a manifest list or OCI index, the instance for Options.OS/Arch/Variant
// (default: this machine) is chosen; Image.ManifestDigest is that instance's
// digest and Image.ListDigest the list's.
//
// # Local sources
//
// A directory is one layer: OpenLayer streams an uncompressed tar built on
// the fly (see openDirTar for what it holds). A tarball is one layer streamed
// as is. Neither has digests: BlobDigest and DiffID are "", and the config is
// empty but for the platform.
//
// Threat model: as root, taproot reads files no other user can, into layers
// that containers read; another local user who can change the source (or a
// directory on its path) would like to steer that read to /etc/shadow by
// swapping an entry for a symlink mid-walk. So the walk never resolves a
// path: every entry is opened relative to its parent's directory fd with
// O_PATH|O_NOFOLLOW, its header comes from fstat of that fd, files are read
// through an fd of the same inode, symlinks are stored as symlinks
// (localdir.go). As root, the source path is resolved by hand from "/" and
// refused (ErrUnsafeSource, one line naming the directory, its mode and
// owner) unless no other user can replace any entry on it and the source
// directory is writable by root alone; directories inside the source may be
// writable by others, as a rootfs's /tmp is (localsafe.go). Tarballs are
// opened the same way, without blocking, and must be regular files. As
// root, the paths of oci:, oci-archive: and docker-archive: references pass
// the same check before containers/image opens them by path (for an OCI
// layout also its blobs/ and blobs/<alg>/ dirs).
//
// # Errors
//
// Errors are one line naming the reference ("fetch docker://…: image not
// found: …") and wrap ErrBadReference, ErrNotFound, ErrUnauthorized,
// ErrPolicyDenied or ErrUnreachable where one fits; test with errors.Is.
//
// A leaf: it imports no other taproot package (the store reaches it only
// as a Cache value), as internal/depcheck pins; it is the one package that
// links containers/image.
package fetcher
