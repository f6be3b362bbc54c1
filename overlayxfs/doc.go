// Package overlayxfs plans overlay mounts (lowerdir/upperdir/workdir, kept
// under mount(2)'s one-page option limit and overlay's stack depth) and
// talks to XFS: filesystem checks, loop-backed stores, and project quotas
// through the setuid taproot-quota helper.
package overlayxfs
