package gc

import (
	"context"

	"github.com/taproot-dev/taproot/store"
)

// Options configure Collect.
type Options struct {
	// ThresholdBytes: do nothing unless the store's committed layer bytes
	// are above it (0 = always collect).
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

// Collect cleans st unless its layers hold no more than the threshold.
func Collect(ctx context.Context, st *store.Store, opts Options) (Result, error) {
	if opts.ThresholdBytes > 0 {
		u, err := st.Usage(ctx, store.UsageOptions{LayersOnly: true})
		if err != nil {
			return Result{}, err
		}
		if u.LayerBytes <= opts.ThresholdBytes {
			return Result{Skipped: true}, nil
		}
	}
	r, err := st.Clean(ctx)
	return Result{ReclaimedBytes: r.ReclaimedBytes, LayersRemoved: r.LayersRemoved, LinksRemoved: r.LinksRemoved, DebrisRemoved: r.DebrisRemoved}, err
}
