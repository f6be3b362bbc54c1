package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// manyFilesLayer is a layer of n files of 1 B to 8 KiB (seeded), the shape
// whose metadata durability costs most.
func manyFilesLayer(seed uint64, dir string, n int) ib.Layer {
	r := mrand.New(mrand.NewPCG(seed, seed))
	entries := []ib.Entry{ib.Dir(dir)}
	for i := 0; i < n; i++ {
		b := make([]byte, 1+r.IntN(8<<10))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		entries = append(entries, ib.File(fmt.Sprintf("%s/f%04d", dir, i), string(b)))
	}
	return layer(entries...)
}

func medianMS(v []time.Duration) float64 {
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	return float64((s[len(s)/2-1] + s[len(s)/2]).Microseconds()) / 2000
}

// BenchmarkDurableCreate measures what durability costs (issue 15), on the
// filesystem of the acceptance work dir: cold creates (each into a new
// store) with the default sync = true and with sync = false, alternating
// in one run, and `check --quick` (the boot-time check) against the full
// `check` on a store with 100 images (10 distinct images of 4 layers,
// 2,500 files each, sharing 3 of them).
// Run: TAPROOT_BIN=$PWD/bin/taproot go test ./acceptance/ -run '^$' -bench DurableCreate -v
func BenchmarkDurableCreate(b *testing.B) {
	if h.skip != "" {
		b.Skip(h.skip)
	}
	if h.fatal != nil || h.taprootErr != nil {
		b.Fatalf("acceptance setup: %v %v", h.fatal, h.taprootErr)
	}
	name := uniq("durable")
	dir := filepath.Join(h.work, "durable-bench", name)
	if err := mkdirOwned(dir); err != nil {
		b.Fatal(err)
	}
	noSync := filepath.Join(dir, "nosync.toml")
	if err := os.WriteFile(noSync, []byte("[create]\nsync = false\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	push := func(repo string, img ib.Image) string {
		layout := filepath.Join(dir, "layouts", repo)
		if err := mkdirOwned(layout); err != nil {
			b.Fatal(err)
		}
		built, err := ib.WriteLayout(layout, "latest", img)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := ib.Push(ctx, built, h.registry, "acceptance/"+repo); err != nil {
			b.Fatal(err)
		}
		return "docker://" + h.registry + "/acceptance/" + repo + ":latest"
	}
	shared := []ib.Layer{manyFilesLayer(1, "usr/share/a", 2000), randomLayer(name+"-blob", "opt/blob", 2<<20)}
	var refs []string
	for i := 0; i < 10; i++ {
		refs = append(refs, push(fmt.Sprintf("%s-%d", name, i), busyboxImage(append(append([]ib.Layer(nil), shared...), manyFilesLayer(uint64(100+i), "app", 200))...)))
	}
	run := func(args ...string) (time.Duration, string) {
		argv := asUser(append([]string{h.taproot}, args...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Dir = userEnv(), "/"
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("taproot %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return d, stdout.String()
	}
	stores := 0
	coldCreate := func(extra ...string) time.Duration {
		stores++
		st := filepath.Join(dir, "stores", fmt.Sprint(stores), "store")
		if err := mkdirOwned(filepath.Dir(st)); err != nil {
			b.Fatal(err)
		}
		d, _ := run(append(append([]string{"--store", st}, extra...), "create", "--insecure-registry", h.registry, refs[0], "img")...)
		return d
	}

	const n = 7
	var on, off []time.Duration
	coldCreate() // warm the registry and the page cache of its blobs
	for i := 0; i < n*b.N; i++ {
		// Alternate which goes first, so that neither gets the warmer machine.
		if i%2 == 0 {
			on = append(on, coldCreate())
			off = append(off, coldCreate("--config", noSync))
		} else {
			off = append(off, coldCreate("--config", noSync))
			on = append(on, coldCreate())
		}
	}

	// 100 images on one store, then the boot-time check and the full one.
	st := filepath.Join(dir, "stores", "hundred", "store")
	if err := mkdirOwned(filepath.Dir(st)); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		run("--store", st, "create", "--insecure-registry", h.registry, refs[i%len(refs)], fmt.Sprintf("i%03d", i))
	}
	var quick, full []time.Duration
	var rep struct {
		Healthy       bool `json:"healthy"`
		LayersChecked int  `json:"layers_checked"`
	}
	for i := 0; i < 3; i++ {
		d, out := run("--store", st, "check", "--quick")
		quick = append(quick, d)
		if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Healthy {
			b.Fatalf("check --quick of the 100-image store: %v\n%s", err, out)
		}
	}
	d, _ := run("--store", st, "check")
	full = append(full, d)

	fs := "?"
	if out, err := exec.Command("stat", "-f", "-c", "%T", dir).Output(); err == nil {
		fs = strings.TrimSpace(string(out))
	}
	onMS, offMS := medianMS(on), medianMS(off)
	fmt.Printf("BENCH durable-create fs=%s n=%d cold_create_sync_on_median_ms=%.0f cold_create_sync_off_median_ms=%.0f ratio=%.2f cost_ms=%.0f check_quick_100_images_ms=%.0f check_full_100_images_ms=%.0f layers=%d\n",
		fs, len(on), onMS, offMS, onMS/offMS, onMS-offMS, medianMS(quick), medianMS(full), rep.LayersChecked)
	b.ReportMetric(onMS, "ms/cold-create-sync")
	b.ReportMetric(offMS, "ms/cold-create-nosync")
	b.ReportMetric(onMS/offMS, "x-nosync")
	b.ReportMetric(medianMS(quick), "ms/check-quick-100-images")
	b.ReportMetric(medianMS(full), "ms/check-full-100-images")
	b.ReportMetric(0, "ns/op")
}
