package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/store"
)

// BenchmarkScale is issue 18's scale curve: a store of 10, 100 and 1,000
// images with 5 layers of their own each (50, 500 and 5,000 layers), and in
// each the median of scaleReps warm creates (every layer present), stats,
// deletes, lists and cleans with nothing to remove, and clean's cost per
// layer it removes (100 orphans a round). These are the store's own costs,
// in-process: `taproot` adds its process start (≈15 ms through setpriv,
// BenchmarkWarmCreate) to each. scripts/bench.sh prints the ratios of the
// 1,000-image figures to the 10-image ones.
func BenchmarkScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the store's worker needs a root-written user namespace mapping here: run as root (make bench does)")
	}
	const layersPerImage, scaleReps, orphans = 5, 15, 100
	for _, images := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("images=%d", images), func(b *testing.B) {
			st := scaleStore(b)
			ctx := context.Background()
			var first []store.Layer
			var all []store.Layer
			for i := range images {
				var ls []store.Layer
				for j := range layersPerImage {
					ls = append(ls, layer(fmt.Sprintf("i%d/l%d", i, j), fmt.Sprintf("content of image %d layer %d", i, j)))
				}
				if i == 0 {
					first = ls
				}
				all = append(all, ls...)
			}
			start := time.Now()
			// In batches: a pull opens a scratch dir and file per missing layer.
			for i := 0; i < len(all); i += 100 {
				if _, err := st.Pull(ctx, all[i:min(i+100, len(all))]); err != nil {
					b.Fatal(err)
				}
			}
			for i := range images {
				if _, err := st.Create(ctx, store.CreateRequest{ID: fmt.Sprintf("img%d", i), Layers: all[i*layersPerImage : (i+1)*layersPerImage]}); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%d images, %d layers made in %s", images, len(all), time.Since(start).Round(time.Millisecond))
			var warm, stats, del, list, cleanNone, cleanPer []float64
			for range b.N {
				for r := range scaleReps {
					id := fmt.Sprintf("warm%d", r)
					t := time.Now()
					if _, err := st.Create(ctx, store.CreateRequest{ID: id, Layers: first}); err != nil {
						b.Fatal(err)
					}
					warm = append(warm, ms(time.Since(t)))
					t = time.Now()
					if _, err := st.Stats(ctx, id); err != nil {
						b.Fatal(err)
					}
					stats = append(stats, ms(time.Since(t)))
					t = time.Now()
					recs, err := st.Images(ctx)
					if err != nil || len(recs) != images+1 {
						b.Fatalf("list: %d records, %v", len(recs), err)
					}
					list = append(list, ms(time.Since(t)))
					t = time.Now()
					if err := st.Delete(ctx, id); err != nil {
						b.Fatal(err)
					}
					del = append(del, ms(time.Since(t)))
					if err := st.Reclaim(ctx); err != nil {
						b.Fatal(err)
					}
					t = time.Now()
					res, err := Collect(ctx, st, Options{})
					if err != nil || res.LayersRemoved != 0 {
						b.Fatalf("clean with nothing to remove: %+v, %v", res, err)
					}
					cleanNone = append(cleanNone, ms(time.Since(t)))
				}
				for r := range 3 {
					var ls []store.Layer
					for j := range orphans {
						ls = append(ls, layer(fmt.Sprintf("o%d", j), fmt.Sprintf("orphan %d of round %d", j, r)))
					}
					if _, err := st.Pull(ctx, ls); err != nil {
						b.Fatal(err)
					}
					t := time.Now()
					res, err := Collect(ctx, st, Options{})
					if err != nil || res.LayersRemoved != orphans {
						b.Fatalf("clean of %d orphans: %+v, %v", orphans, res, err)
					}
					cleanPer = append(cleanPer, ms(time.Since(t))/orphans)
				}
			}
			b.ReportMetric(median(warm), "ms/warm-create")
			b.ReportMetric(median(stats), "ms/stats")
			b.ReportMetric(median(del), "ms/delete")
			b.ReportMetric(median(list), "ms/list")
			b.ReportMetric(median(cleanNone), "ms/clean-nothing")
			b.ReportMetric(median(cleanPer), "ms/clean-per-removed-layer")
			b.ReportMetric(float64(len(all)), "layers")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// scaleStore is a store with a real worker, as TestCollect makes it.
func scaleStore(b *testing.B) *store.Store {
	dir := b.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	maps := []idmap.Mapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	st, err := store.Open(context.Background(), filepath.Join(dir, "s"), store.Options{
		UIDMappings: maps, GIDMappings: maps, WorkerExe: "/proc/self/exe", DeferReclaim: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
