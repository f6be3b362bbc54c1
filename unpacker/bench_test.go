package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTime is the process's user+sys time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// entriesTar is a layer of n empty files, 1,000 per directory; with dups,
// n/2 files then the same n/2 paths again (the last entry wins). Empty
// files are the worst case for duplicate detection: a duplicate with
// content marks the layer unverifiable once and stops the search.
func entriesTar(tb testing.TB, n int, dups bool) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	distinct := n
	if dups {
		distinct = n / 2
	}
	for i := 0; i < n; i++ {
		j := i % distinct
		h := tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%03d/f%06d", j/1000, j), Mode: 0o644, ModTime: testTime}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkUnpackEntries measures UnpackLayer (tar-split recording
// included) per entry: linear work means the same ns/entry at every size,
// duplicates or not.
func BenchmarkUnpackEntries(b *testing.B) {
	for _, n := range []int{20000, 40000, 80000, 160000} {
		for _, dups := range []bool{false, true} {
			name := fmt.Sprintf("%dk/distinct", n/1000)
			if dups {
				name = fmt.Sprintf("%dk/half-duplicates", n/1000)
			}
			b.Run(name, func(b *testing.B) {
				data := entriesTar(b, n, dups)
				base := b.TempDir()
				var cpu time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					dest := filepath.Join(base, fmt.Sprint(i))
					c0 := cpuTime(b)
					if _, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{}); err != nil {
						b.Fatal(err)
					}
					cpu += cpuTime(b) - c0
					b.StopTimer()
					if err := os.RemoveAll(dest); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
				// CPU time (user+sys) is the figure to compare on a busy
				// machine, where wall time mostly measures the others.
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/entry")
			})
		}
	}
}
