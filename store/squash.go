package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/worker"
)

// planLowers turns an image's layer keys (base first) into the lowers it
// mounts (top first): duplicates dropped and, when overlay could not stack
// them in one page of options or 500 layers, the lowest ones replaced by
// one cached squashed layer.
func (s *Store) planLowers(ctx context.Context, keys []string, id string, held heldLayers) ([]string, error) {
	// A layer that appears twice needs only its top occurrence: everything
	// it holds, hides or makes opaque is decided there already.
	var top []string
	seen := map[string]bool{}
	for i := len(keys) - 1; i >= 0; i-- {
		if !seen[keys[i]] {
			seen[keys[i]] = true
			top = append(top, keys[i])
		}
	}
	if len(top) == 0 {
		return nil, fmt.Errorf("image %q has no layers", id)
	}
	plan := overlayxfs.Plan{Upper: s.imageSub(id, upperDir), Work: s.imageSub(id, workDir)}
	for _, key := range top {
		short, err := s.shortOf(key)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", key, err)
		}
		plan.Lowers = append(plan.Lowers, s.linkPath(short))
	}
	squashKey := squashKeyOf(top)
	keep := plan.KeepOnTop(s.linkPath(shortName(squashKey, 16)))
	if keep == len(top) {
		return top, nil
	}
	base := top[keep:]
	squashKey = squashKeyOf(base)
	if err := s.ensureSquashed(ctx, squashKey, base, held); err != nil {
		return nil, err
	}
	s.log.Info("squashed lowest layers so overlay can mount them", "id", id, "squashed", len(base), "kept", keep)
	s.progress(Progress{Kind: Squashed, Layers: len(base)})
	return append(append([]string(nil), top[:keep]...), squashKey), nil
}

// squashKeyOf names the squashed layer of lowers (top first).
func squashKeyOf(lowers []string) string {
	h := sha256.New()
	for _, k := range lowers {
		h.Write([]byte(k + "\n"))
	}
	return "squash-" + hex.EncodeToString(h.Sum(nil))
}

func (s *Store) ensureSquashed(ctx context.Context, key string, lowersTopFirst []string, held heldLayers) error {
	// Built under its fetch lock, as a missing layer is fetched.
	ex, err := s.acquireLayer(ctx, key, held)
	if err != nil || ex == nil {
		return err
	}
	defer ex.RemoveAndRelease()
	return s.buildSquashed(ctx, key, lowersTopFirst)
}

func (s *Store) buildSquashed(ctx context.Context, key string, lowersTopFirst []string) error {
	t, err := s.newWorkerTmp(ctx, tmpSquash)
	if err != nil {
		return err
	}
	defer s.removeTmp(ctx, t)
	var layers []worker.LayerRef
	var merged []string
	for i := len(lowersTopFirst) - 1; i >= 0; i-- {
		k := lowersTopFirst[i]
		lr, err := s.readLayer(k)
		if err != nil {
			return err
		}
		layers = append(layers, worker.LayerRef{Dir: s.layerDir(k), DiffID: lr.DiffID, ListOnly: lr.Unverifiable})
		merged = append(merged, string(lr.DiffID))
	}
	start := time.Now()
	size, err := s.worker().Squash(ctx, t.diff(), layers)
	if err != nil {
		return fmt.Errorf("squash %d layers: %w", len(layers), err)
	}
	rec := LayerRecord{
		DiffID:   digest.Digest(""),
		Size:     size,
		Squashed: merged,
		Created:  time.Now().UTC(),
	}
	s.log.Debug("squashed layers", "count", len(merged), "elapsed", time.Since(start), "first", strings.Join(merged[:1], ""))
	return s.publishLayer(key, t, &rec)
}
