package builder

import (
	"context"
	"fmt"

	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
)

// StatsRequest asks for an image's disk usage.
type StatsRequest struct {
	ID string
}

// Stats returns an image's disk usage: exclusive is what the container
// wrote (from its XFS project quota, else a walk of its upper dir), total
// adds the image's own size and inodes.
func (b *Builder) Stats(ctx context.Context, req StatsRequest) (spec.Stats, error) {
	st, ok, err := b.openExistingStore(ctx)
	if err != nil {
		return spec.Stats{}, err
	}
	if !ok {
		return spec.Stats{}, fmt.Errorf("image %q: %w", req.ID, store.ErrImageNotFound)
	}
	u, err := st.Stats(ctx, req.ID)
	if err != nil {
		return spec.Stats{}, err
	}
	return spec.Stats{DiskUsage: spec.DiskUsage(u)}, nil
}

// ListRequest asks for the store's images.
type ListRequest struct{}

// List returns the store's images, in the store's order (by id); none
// when there is no store.
func (b *Builder) List(ctx context.Context, _ ListRequest) ([]spec.ListEntry, error) {
	entries := []spec.ListEntry{}
	st, ok, err := b.openExistingStore(ctx)
	if err != nil || !ok {
		return entries, err
	}
	recs, err := st.Images(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		entries = append(entries, spec.ListEntry{ID: r.ID, ImageRef: r.Ref, Created: r.Created, BaseSize: r.BaseSize})
	}
	return entries, nil
}

// MetricsRequest asks for the store's totals.
type MetricsRequest struct{}

// Metrics are the store's totals (all zero when there is no store).
type Metrics struct {
	Images int
	// Layers counts layers and squashed layers; LayersUnreferenced those no
	// image uses (clean removes them).
	Layers, LayersUnreferenced int
	// LayerBytes is the file content in the layers; ImageBaseBytes and
	// ImageDiskLimitBytes sum the images' base sizes and disk limits.
	LayerBytes, ImageBaseBytes, ImageDiskLimitBytes int64
}

// Metrics sums the store's images and layers.
func (b *Builder) Metrics(ctx context.Context, _ MetricsRequest) (Metrics, error) {
	var m Metrics
	st, ok, err := b.openExistingStore(ctx)
	if err != nil || !ok {
		return m, err
	}
	u, err := st.Usage(ctx, store.UsageOptions{})
	if err != nil {
		return m, err
	}
	return Metrics{
		Images:              u.Images,
		Layers:              u.Layers,
		LayersUnreferenced:  u.UnreferencedLayers,
		LayerBytes:          u.LayerBytes,
		ImageBaseBytes:      u.BaseBytes,
		ImageDiskLimitBytes: u.DiskLimitBytes,
	}, nil
}
