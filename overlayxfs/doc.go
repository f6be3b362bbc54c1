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
// XFS (xfs.go, quota.go): filesystem facts (type, capacity, project quotas
// on, read from /proc/self/mountinfo through moby/sys/mountinfo),
// loop-backed XFS stores for init-store, and project quotas through the
// setuid taproot-quota helper.
package overlayxfs
