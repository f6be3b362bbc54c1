package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkCleanPerRemovedLayer measures what clean pays per layer it
// removes in stores of 10, 100 and 1,000 images: reading the records once
// per batch of locked layers (removeUnreferencedLayers) against once per
// candidate (the way clean worked before), in the same run.
func BenchmarkCleanPerRemovedLayer(b *testing.B) {
	for _, images := range []int{10, 100, 1000} {
		for _, mode := range []string{"batched", "per-layer"} {
			b.Run(fmt.Sprintf("images=%d/%s", images, mode), func(b *testing.B) {
				st := testStore(b)
				ctx := context.Background()
				base := &fakeLayer{data: layerTar(b, entry{name: "f", body: "x"})}
				for i := 0; i < images; i++ {
					if _, err := st.Create(ctx, CreateRequest{ID: fmt.Sprintf("i%d", i), Layers: []Layer{base.layer()}}); err != nil {
						b.Fatal(err)
					}
				}
				const orphans = 100
				var total time.Duration
				for i := 0; i < b.N; i++ {
					var layers []Layer
					for j := 0; j < orphans; j++ {
						l := &fakeLayer{data: layerTar(b, entry{name: fmt.Sprintf("o%d-%d", i, j), body: "y"})}
						layers = append(layers, l.layer())
					}
					keys, err := st.Pull(ctx, layers)
					if err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					n := 0
					if mode == "batched" {
						n, _, err = st.removeUnreferencedLayers(ctx, keys)
					} else {
						for _, k := range keys {
							ok, _, e := st.removeLayerIfUnused(ctx, k, func() (bool, error) {
								refs, err := st.referencedLayers()
								return !refs[k], err
							})
							if e != nil {
								err = e
							}
							if ok {
								n++
							}
						}
					}
					total += time.Since(start)
					if err != nil || n != orphans {
						b.Fatalf("removed %d of %d: %v", n, orphans, err)
					}
				}
				b.ReportMetric(float64(total.Microseconds())/float64(b.N*orphans)/1000, "ms/removed-layer")
			})
		}
	}
}

// BenchmarkUsage measures Usage in a store of 1,000 images on one layer:
// all of it (every layer and image record read once, for metrics) against
// LayersOnly (what the clean threshold reads before every create).
func BenchmarkUsage(b *testing.B) {
	st := testStore(b)
	ctx := context.Background()
	base := &fakeLayer{data: layerTar(b, entry{name: "f", body: "x"})}
	for i := 0; i < 1000; i++ {
		if _, err := st.Create(ctx, CreateRequest{ID: fmt.Sprintf("i%d", i), Layers: []Layer{base.layer()}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("usage", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if u, err := st.Usage(ctx, UsageOptions{}); err != nil || u.Images != 1000 {
				b.Fatal(u, err)
			}
		}
	})
	b.Run("layers-only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if u, err := st.Usage(ctx, UsageOptions{LayersOnly: true}); err != nil || u.Layers != 1 {
				b.Fatal(u, err)
			}
		}
	})
}
