// Package overlayxfs has the two things taproot asks of the kernel's
// filesystems.
//
// Overlay mounts as data (overlay.go): a Plan is an image's dirs (lowers
// top first, upper, work, rootfs), kept under mount(2)'s one-page option
// limit and overlay's stack depth (KeepOnTop says how many lowers stay when
// the rest are squashed); Plan.Mount turns it into the one Mount value
// {Type, Source, Target, Options} that is persisted in the image record,
// printed in the runtime-spec fragment (Mount.SpecMount), performed by
// --with-mount (Mount.Mount) and undone by delete (Mount.Unmount). A path
// overlay's options cannot carry (',' ':' '\' or a newline) is refused
// there, with ErrMountPath.
//
// Mount.Lowers reads the lower dirs back from the data (the builder resolves
// the image user in them; the store checks a persisted mount's names).
//
// XFS (xfs.go, quota.go, storeslist.go): filesystem facts (FilesystemType,
// Capacity, ProjectQuotaEnabled, IsMountPoint, read from
// /proc/self/mountinfo through moby/sys/mountinfo), loop-backed XFS stores
// for init-store (MakeLoopXFS, UnmountLoopXFS), the root-owned list of
// quota stores (StoresListPath, RegisterStore, UnregisterStore), and
// project quotas through the setuid taproot-quota helper: QuotaHelper is
// its client, running it as a program and decoding its one JSON line.
//
// A leaf: of taproot's packages it imports only internal/fsname (the
// filesystem-name table it shares with the helper). It never imports
// quotahelper, whose code runs setuid and must not be linked into the
// taproot binary; internal/depcheck pins both rules.
package overlayxfs
