package builder

import (
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/store"
)

// Hooks let the caller show a create's or pull's progress; each may be
// nil. Layer and Event are called from several goroutines at once.
type Hooks struct {
	// Resolved is called once the image's manifest and config are read,
	// before any layer is fetched.
	Resolved func(img Image)
	// Layer wraps the stream of layer i (Image.Layers[i]) as the store
	// reads it, e.g. to count its bytes.
	Layer func(i int, l Layer, rc io.ReadCloser) io.ReadCloser
	// Event receives what the store did with each layer.
	Event func(Event)
}

// Image is the image a create or pull resolved.
type Image struct {
	// Ref is the reference, normalized (docker://HOST/REPO:TAG, oci:DIR...).
	Ref            string
	ManifestDigest digest.Digest
	Layers         []Layer // base first
}

// Layer is one layer of an Image.
type Layer struct {
	BlobDigest digest.Digest
	// DiffID is "" for a local rootfs: it is known once unpacked.
	DiffID    digest.Digest
	MediaType string
	Size      int64 // -1: unknown
}

// EventKind says what happened to a layer (or the image).
type EventKind int

const (
	// LayerCached: the layer is in the store already; nothing is fetched.
	LayerCached EventKind = iota + 1
	// LayerUnpacked: the layer was fetched, checked and unpacked.
	LayerUnpacked
	// Squashed: the lowest Event.Layers layers were merged into one.
	Squashed
)

// Event is one report of the store during a create or pull.
type Event struct {
	Kind EventKind
	// DiffID names the layer ("" for Squashed).
	DiffID digest.Digest
	// Bytes is the unpacked size (LayerUnpacked).
	Bytes int64
	// Verified: the blob digest and diffID were checked (LayerUnpacked;
	// false for a local rootfs, which has none to check).
	Verified bool
	// Layers is how many layers were squashed (Squashed).
	Layers int
}

func imageOf(img fetcher.Image) Image {
	out := Image{Ref: img.Ref.String(), ManifestDigest: img.ManifestDigest}
	for _, l := range img.Layers {
		out.Layers = append(out.Layers, layerOf(l))
	}
	return out
}

func layerOf(l fetcher.Layer) Layer {
	return Layer{BlobDigest: l.BlobDigest, DiffID: l.DiffID, MediaType: l.MediaType, Size: l.Size}
}

// storeProgress turns the store's reports into Events for h (nil: none).
func (h Hooks) storeProgress() func(store.Progress) {
	if h.Event == nil {
		return nil
	}
	return func(p store.Progress) {
		var k EventKind
		switch p.Kind {
		case store.LayerCached:
			k = LayerCached
		case store.LayerUnpacked:
			k = LayerUnpacked
		case store.Squashed:
			k = Squashed
		default:
			return
		}
		h.Event(Event{Kind: k, DiffID: p.DiffID, Bytes: p.Bytes, Verified: p.Verified, Layers: p.Layers})
	}
}

// resolved tells h about img.
func (h Hooks) resolved(img fetcher.Image) {
	if h.Resolved != nil {
		h.Resolved(imageOf(img))
	}
}
