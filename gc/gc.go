package gc

import (
	"context"
	"fmt"

	"github.com/taproot-dev/taproot/store"
)

// Options configure Collect.
type Options struct {
	// ThresholdBytes: do nothing unless the store's committed size is
	// above it (0 = always collect).
	ThresholdBytes int64
}

// Result says what Collect reclaimed.
type Result struct {
	ReclaimedBytes int64
	LayersRemoved  int
	LinksRemoved   int
	DebrisRemoved  int
	Skipped        bool // under the threshold
}

// Collect removes unreferenced layers and debris from st.
func Collect(ctx context.Context, st *store.Store, opts Options) (Result, error) {
	var res Result
	if opts.ThresholdBytes > 0 {
		size, err := st.CommittedSize()
		if err != nil {
			return res, err
		}
		if size <= opts.ThresholdBytes {
			res.Skipped = true
			return res, nil
		}
	}
	// Wait for deferred deletes in flight, then take what is left.
	if err := st.Reclaim(ctx); err != nil {
		return res, fmt.Errorf("reclaim deleted images: %w", err)
	}
	debris, err := st.RemoveDebris(ctx)
	if err != nil {
		return res, fmt.Errorf("remove debris: %w", err)
	}
	res.DebrisRemoved += len(debris)
	unfinished, err := st.RemoveUnfinishedImages(ctx)
	if err != nil {
		return res, fmt.Errorf("remove unfinished images: %w", err)
	}
	res.DebrisRemoved += len(unfinished)

	keys, err := st.LayerKeys()
	if err != nil {
		return res, err
	}
	// A first look skips layers that are plainly in use; candidates are
	// checked again under their lock.
	inUse, err := st.ReferencedLayers()
	if err != nil {
		return res, err
	}
	var candidates []string
	for _, key := range keys {
		if !inUse[key] {
			candidates = append(candidates, key)
		}
	}
	// The store checks them again under their locks.
	n, size, err := st.RemoveUnreferencedLayers(ctx, candidates)
	res.LayersRemoved += n
	res.ReclaimedBytes += size
	if err != nil {
		return res, err
	}
	st.RemoveStaleLocalRecords()
	st.RemoveUnreferencedBlobs()
	res.LinksRemoved, err = st.RemoveDanglingLinks()
	return res, err
}
