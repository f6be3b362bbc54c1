package store

import "github.com/opencontainers/go-digest"

// ProgressKind says what happened to a layer (or the image) during a
// create or pull, for Options.Progress.
type ProgressKind int

const (
	// LayerCached: the layer is in the store already; nothing is fetched.
	LayerCached ProgressKind = iota + 1
	// LayerUnpacked: the layer was fetched, its digests checked (Verified)
	// and unpacked, and it is published in the store.
	LayerUnpacked
	// Squashed: the lowest Layers layers were merged into one cached layer.
	Squashed
)

// Progress is one event of Options.Progress.
type Progress struct {
	Kind ProgressKind
	// DiffID names the layer ("" for Squashed).
	DiffID digest.Digest
	// Bytes: the unpacked size (LayerUnpacked).
	Bytes int64
	// Verified: the blob digest and diffID were checked against the
	// image's (false for a local rootfs, which has none to check).
	Verified bool
	// Layers: how many layers were squashed (Squashed).
	Layers int
}

func (s *Store) progress(p Progress) {
	if s.opts.Progress != nil {
		s.opts.Progress(p)
	}
}
