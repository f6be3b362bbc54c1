package acceptance

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// soakDuration is TAPROOT_SOAK_SECONDS (default 30; `make soak` sets more).
func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("TAPROOT_SOAK_SECONDS")
	if s == "" {
		return 30 * time.Second
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("TAPROOT_SOAK_SECONDS=%q: want a positive number of seconds", s)
	}
	return time.Duration(n) * time.Second
}

// Soak: workers loop create (one of a few images that share layers) → run a
// container with runc that checks it sees its files → delete, while another
// loop runs `taproot clean`. Every create, container, delete and clean must
// succeed; afterwards clean reclaims everything and the store holds its
// metadata and nothing else (no layers, links, images, scratch dirs or lock
// files but init.lock), and check says it is healthy.
func TestSoak(t *testing.T) {
	need(t)
	t.Parallel()
	dur := soakDuration(t)
	const workers = 3
	name := uniq("soak")
	shared := randomLayer(name+"-shared", "shared", 128<<10)
	type img struct {
		ref  string
		want string
	}
	var imgs []img
	for i := 0; i < 3; i++ {
		own := randomLayer(fmt.Sprintf("%s-own%d", name, i), "own", 64<<10)
		layers := []ib.Layer{shared, own}
		if i == 2 {
			// One image stacks the shared layer on a layer of its own, so
			// the images share layers at different depths.
			layers = []ib.Layer{own, shared}
		}
		ref, _ := pushImage(t, fmt.Sprintf("%s-%d", name, i), busyboxImage(layers...))
		imgs = append(imgs, img{ref: ref, want: fmt.Sprintf("%s-shared\n%s-own%d\n", name, name, i)})
	}
	store := newStore(t)
	deadline := time.Now().Add(dur)
	var (
		wg                       sync.WaitGroup
		cycles, runs, cleans     atomic.Int64
		reclaimed, layersRemoved atomic.Int64
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + time.Now().UnixNano()))
			for i := 0; time.Now().Before(deadline); i++ {
				im := imgs[rng.Intn(len(imgs))]
				id := fmt.Sprintf("w%d-%d", w, i)
				r := taproot(t, store, "create", "--insecure-registry", h.registry, im.ref, id)
				if r.code != 0 {
					t.Errorf("create %s:\n%s", id, r)
					return
				}
				frag, err := parseFragment(r.stdout)
				if err != nil {
					t.Errorf("create %s: %v", id, err)
					return
				}
				cr := inContainer(t, runc, store, frag, "cat /shared/id /own/id && test -s /shared/data && test -s /own/data && busybox true")
				runs.Add(1)
				if cr.code != 0 || cr.stdout != im.want {
					t.Errorf("container of %s (%s): want %q\n%s", id, im.ref, im.want, cr)
				}
				if r := taproot(t, store, "delete", id); r.code != 0 {
					t.Errorf("delete %s:\n%s", id, r)
					return
				}
				cycles.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			r := taproot(t, store, "clean")
			var c cleanJSON
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &c) != nil || c.LayersRemoved == nil || c.ReclaimedBytes == nil {
				t.Errorf("clean during the soak:\n%s", r)
				return
			}
			cleans.Add(1)
			layersRemoved.Add(int64(*c.LayersRemoved))
			reclaimed.Add(*c.ReclaimedBytes)
		}
	}()
	wg.Wait()
	t.Logf("soak %v: %d create/run/delete cycles (%d containers) by %d workers, %d cleans removed %d layers (%d bytes)",
		dur, cycles.Load(), runs.Load(), workers, cleans.Load(), layersRemoved.Load(), reclaimed.Load())
	if t.Failed() {
		return
	}
	if cycles.Load() < workers || cleans.Load() < 2 {
		t.Errorf("the soak did too little to mean anything: %d cycles, %d cleans", cycles.Load(), cleans.Load())
	}
	if layersRemoved.Load() == 0 && dur >= 20*time.Second {
		t.Errorf("no clean during the soak removed a layer: clean never raced a create")
	}

	// Everything deleted: clean takes the rest.
	c := clean(t, store, nil)
	t.Logf("final clean: %d layers, %d bytes", *c.LayersRemoved, *c.ReclaimedBytes)
	for _, d := range []string{"layers", "l", "images", "tmp"} {
		if got := dirEntries(t, filepath.Join(store, d)); len(got) != 0 {
			t.Errorf("%s/ holds %v after the final clean", d, got)
		}
	}
	// Background reclaimers of the last deletes may still be finishing:
	// their lock files go when they do.
	var locks []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		locks = dirEntries(t, filepath.Join(store, "locks"))
		if strings.Join(locks, ",") == "init.lock" || time.Now().After(end) {
			break
		}
	}
	if strings.Join(locks, ",") != "init.lock" {
		t.Errorf("locks/ holds %v after the final clean, want only init.lock", locks)
	}
	if got := dirEntries(t, filepath.Join(store, "meta")); strings.Join(got, ",") != "store.json" {
		t.Errorf("meta/ holds %v, want store.json", got)
	}
	r := taproot(t, store, "check")
	var rep struct {
		Healthy bool `json:"healthy"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.Healthy {
		t.Errorf("check after the soak:\n%s", r)
	}
}
