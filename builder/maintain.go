package builder

import (
	"context"
	"fmt"

	"github.com/taproot-dev/taproot/gc"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
)

// CleanRequest asks for unused layers and debris to be removed.
type CleanRequest struct {
	// ThresholdBytes: do nothing unless the layers take more (0 = always);
	// nil is the config's [clean] threshold_bytes.
	ThresholdBytes *int64
}

// Clean removes layers no image uses and what killed processes left
// behind. No store: nothing removed.
func (b *Builder) Clean(ctx context.Context, req CleanRequest) (spec.CleanResult, error) {
	st, ok, err := b.openExistingStore(ctx)
	if err != nil || !ok {
		return spec.CleanResult{}, err
	}
	threshold := b.cfg.Clean.ThresholdBytes
	if req.ThresholdBytes != nil {
		threshold = *req.ThresholdBytes
	}
	res, err := gc.Collect(ctx, st, gc.Options{ThresholdBytes: threshold})
	if err != nil {
		return spec.CleanResult{}, err
	}
	if res.Skipped {
		b.log.Info("store is under the threshold; nothing removed", "threshold_bytes", threshold)
	}
	return spec.CleanResult{ReclaimedBytes: res.ReclaimedBytes, LayersRemoved: res.LayersRemoved}, nil
}

// CheckRequest asks for the store to be verified.
type CheckRequest struct {
	// Quick compares file sizes with the tar metadata instead of reading
	// every file; Repair removes what is damaged (see store.CheckOptions).
	Quick, Repair bool
}

// Check verifies the store. The report is returned whenever the check
// ran; the error then wraps ErrStoreDamaged if the store is damaged and
// was not repaired.
func (b *Builder) Check(ctx context.Context, req CheckRequest) (*store.CheckReport, error) {
	st, ok, err := b.openExistingStore(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, b.noStore()
	}
	rep, err := st.Check(ctx, store.CheckOptions{Quick: req.Quick, Repair: req.Repair})
	if err != nil {
		return nil, err
	}
	if !rep.Healthy && !rep.Repaired {
		return &rep, fmt.Errorf("%w; run taproot check --repair", ErrStoreDamaged)
	}
	return &rep, nil
}
