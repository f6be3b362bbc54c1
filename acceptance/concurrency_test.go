package acceptance

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// Garbage collection and many callers at once: real taproot processes
// against the suite's registry, some through a proxy that serves chosen
// blobs slowly.

// randomLayer is a gzip layer holding dir/data: n incompressible bytes
// seeded by seed (the same seed gives the same blob), and dir/id: seed.
func randomLayer(seed, dir string, n int) ib.Layer {
	data := make([]byte, n)
	var s int64
	for _, c := range seed {
		s = s*131 + int64(c)
	}
	rand.New(rand.NewSource(s)).Read(data)
	return layer(ib.Dir(dir), ib.File(dir+"/data", string(data)), ib.File(dir+"/id", seed+"\n"))
}

// uniq makes names unique per run, so that every test's images are new to
// the registry and its blobs are counted from zero.
func uniq(name string) string {
	return fmt.Sprintf("%s-%d-%d", name, os.Getpid(), time.Now().UnixNano()%1e9)
}

// blobProxy is a reverse proxy in front of the suite's registry. It counts
// the blob GETs it forwards and streams chosen blobs slowly: a slow blob's
// body is spread over its delay (bytes keep flowing, so no read stalls long
// enough to trip the registry timeout).
type blobProxy struct {
	addr string
	srv  *http.Server

	mu       sync.Mutex
	delay    map[string]time.Duration // blob digest -> time to serve its body over
	fail     map[string]bool          // blob digest -> answer GETs with 404
	gets     map[string]int           // blob digest -> GETs started
	inFlight map[string]int           // blob digest -> GETs whose body is not done
	started  map[string]chan struct{} // closed at the first GET of a digest
	sent     map[string]int64         // blob digest -> body bytes sent
	firstEnd time.Time                // when the first slow blob's body was done
	manifest []time.Time              // arrival of each manifest GET
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

func startBlobProxy(t testing.TB) *blobProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blobProxy{
		addr:     l.Addr().String(),
		delay:    map[string]time.Duration{},
		fail:     map[string]bool{},
		gets:     map[string]int{},
		inFlight: map[string]int{},
		started:  map[string]chan struct{}{},
		sent:     map[string]int64{},
	}
	target, _ := url.Parse("http://" + h.registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		m := blobPath.FindStringSubmatch(req.URL.Path)
		if req.Method != http.MethodGet || m == nil || resp.StatusCode != http.StatusOK {
			return nil
		}
		d := m[1]
		p.mu.Lock()
		delay := p.delay[d]
		p.inFlight[d]++
		p.mu.Unlock()
		resp.Body = &slowBody{rc: resp.Body, p: p, digest: d, total: resp.ContentLength, delay: delay, start: time.Now()}
		return nil
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			p.mu.Lock()
			if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
				p.gets[m[1]]++
				if c, ok := p.started[m[1]]; ok && p.gets[m[1]] == 1 {
					close(c)
				}
				if p.fail[m[1]] {
					p.mu.Unlock()
					http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`, http.StatusNotFound)
					return
				}
			} else if strings.Contains(r.URL.Path, "/manifests/") {
				p.manifest = append(p.manifest, time.Now())
			}
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})
	p.srv = &http.Server{Handler: handler}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// slow makes the proxy spread the blob's body over d, and returns a channel
// closed when its first GET arrives.
func (p *blobProxy) slow(digest string, d time.Duration) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[digest] = d
	if _, ok := p.started[digest]; !ok {
		p.started[digest] = make(chan struct{})
	}
	return p.started[digest]
}

func (p *blobProxy) count(digest string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[digest]
}

func (p *blobProxy) busy(digest string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight[digest] > 0
}

func (p *blobProxy) bytesSent(digest string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[digest]
}

// ref is the reference of repo:latest through the proxy.
func (p *blobProxy) ref(repo string) string { return "docker://" + p.addr + "/" + repo + ":latest" }

type slowBody struct {
	rc     io.ReadCloser
	p      *blobProxy
	digest string
	total  int64
	delay  time.Duration
	start  time.Time
	n      int64
	once   sync.Once
}

func (b *slowBody) Read(buf []byte) (int, error) {
	if b.delay > 0 && b.total > 0 {
		if len(buf) > 16<<10 {
			buf = buf[:16<<10]
		}
		// Send byte n no earlier than n/total of the delay.
		due := b.start.Add(time.Duration(float64(b.delay) * float64(b.n) / float64(b.total)))
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
	}
	n, err := b.rc.Read(buf)
	b.n += int64(n)
	b.p.mu.Lock()
	b.p.sent[b.digest] += int64(n)
	b.p.mu.Unlock()
	if err != nil {
		b.done()
	}
	return n, err
}

func (b *slowBody) Close() error {
	b.done()
	return b.rc.Close()
}

func (b *slowBody) done() {
	b.once.Do(func() {
		b.p.mu.Lock()
		b.p.inFlight[b.digest]--
		if b.delay > 0 && b.p.firstEnd.IsZero() {
			b.p.firstEnd = time.Now()
		}
		b.p.mu.Unlock()
	})
}

// createArgs are the arguments of a create through the proxy.
func (p *blobProxy) createArgs(ref, id string) []string {
	return []string{"create", "--insecure-registry", p.addr, ref, id}
}

// staleLocks lists lock files that guard nothing: a layer, image or
// scratch dir that is not there, or a fetch that is not running (the
// callers make sure none is). init.lock is the store's own.
func staleLocks(t *testing.T, store string) []string {
	t.Helper()
	var out []string
	for _, n := range dirEntries(t, filepath.Join(store, "locks")) {
		name, _ := strings.CutSuffix(n, ".lock")
		kind, rest, _ := strings.Cut(name, "-")
		ok := false
		switch kind {
		case "init":
			ok = name == "init"
		case "layer":
			ok = exists(filepath.Join(store, "layers", rest))
		case "image":
			ok = exists(filepath.Join(store, "images", rest))
		case "tmp":
			ok = exists(filepath.Join(store, "tmp", rest))
		}
		if !ok {
			out = append(out, n)
		}
	}
	return out
}

// concurrently runs f(0..n-1) in goroutines, all released at once.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			f(i)
		}()
	}
	close(gate)
	wg.Wait()
}

// 20 processes create the same image, new to the store, at once: all
// succeed, each layer blob is downloaded exactly once (the registry's log
// and the proxy agree), and the creates really overlapped the download.
func TestConcurrentCreatesOfOneImage(t *testing.T) {
	need(t)
	t.Parallel()
	const n = 20
	name := uniq("conc-one")
	ref0, b := pushImage(t, name, busyboxImage(
		randomLayer(name+"-1", "one", 1<<20),
		randomLayer(name+"-2", "two", 1<<20),
		randomLayer(name+"-3", "three", 512<<10),
	))
	_ = ref0
	repo := "acceptance/" + name
	p := startBlobProxy(t)
	for _, l := range b.Layers {
		// Slow enough that the creates pile up behind the first download:
		// with 2 s, 9 of 20 creates had asked for the manifest in time once
		// at a load of 8 on 2 cores (20 process starts take that long).
		p.slow(l.Digest.String(), 4*time.Second)
	}
	store := newStore(t)
	results := make([]result, n)
	start := time.Now()
	concurrently(n, func(i int) {
		results[i] = taproot(t, store, p.createArgs(p.ref(repo), fmt.Sprintf("c%02d", i))...)
	})
	wall := time.Since(start)
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("create c%02d failed:\n%s", i, r)
		} else if _, err := parseFragment(r.stdout); err != nil {
			t.Errorf("create c%02d: %v\nstdout: %s", i, err, r.stdout)
		}
	}
	for i, l := range b.Layers {
		if got := registryBlobGets(t, repo, l.Digest); got != 1 {
			t.Errorf("layer %d (%s): registry log shows %d GETs, want exactly 1", i, l.Digest, got)
		}
		if got := p.count(l.Digest.String()); got != 1 {
			t.Errorf("layer %d (%s): proxy forwarded %d GETs, want exactly 1", i, l.Digest, got)
		}
	}
	// The test means something only if the creates were in flight together.
	p.mu.Lock()
	overlapped := 0
	for _, at := range p.manifest {
		if at.Before(p.firstEnd) {
			overlapped++
		}
	}
	p.mu.Unlock()
	t.Logf("%d creates in %v; %d manifest GETs arrived before the first layer download ended", n, wall.Round(time.Millisecond), overlapped)
	if overlapped < n/2 {
		t.Errorf("only %d of %d creates asked for the manifest before the first layer was downloaded: they did not overlap", overlapped, n)
	}
	if got := listIDs(t, store); len(got) != n {
		t.Errorf("list shows %d images, want %d: %v", len(got), n, got)
	}
	if got := dirEntries(t, filepath.Join(store, "layers")); len(got) != len(b.Layers) {
		t.Errorf("layers/ holds %v, want the %d layers", got, len(b.Layers))
	}
	if got := dirEntries(t, filepath.Join(store, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after the creates", got)
	}
	if got := lockFiles(t, store, "fetch-", "tmp-"); len(got) != 0 {
		t.Errorf("locks/ still holds %v after the creates", got)
	}
	frag, err := parseFragment(results[n-1].stdout)
	if err == nil {
		if got := sh(t, store, frag, "cat /one/id /two/id /three/id"); got != name+"-1\n"+name+"-2\n"+name+"-3\n" {
			t.Errorf("container sees %q", got)
		}
	}
}

// Creates of two images that share no layer do not wait for each other:
// while one image's blob is still being served (slowly), a create of the
// other image starts and finishes.
func TestCreatesOfDifferentImagesOverlap(t *testing.T) {
	need(t)
	t.Parallel()
	nameA, nameB := uniq("overlap-a"), uniq("overlap-b")
	slowImg := ib.Image{Layers: []ib.Layer{randomLayer(nameA, "a", 2<<20)}, Config: ib.Config{Cmd: []string{"/a/id"}}}
	fastImg := ib.Image{Layers: []ib.Layer{randomLayer(nameB, "b", 1<<20), randomLayer(nameB+"-2", "b2", 64<<10)}, Config: ib.Config{Cmd: []string{"/b/id"}}}
	_, a := pushImage(t, nameA, slowImg)
	_, _ = pushImage(t, nameB, fastImg)
	p := startBlobProxy(t)
	slowDigest := a.Layers[0].Digest.String()
	started := p.slow(slowDigest, 8*time.Second)
	store := newStore(t)
	// The store exists before the two creates race for it.
	if r := taproot(t, store, "list"); r.code != 0 {
		t.Fatalf("list:\n%s", r)
	}

	doneA := make(chan result, 1)
	go func() { doneA <- taproot(t, store, p.createArgs(p.ref("acceptance/"+nameA), "a")...) }()
	select {
	case <-started:
	case r := <-doneA:
		t.Fatalf("create a ended before its blob was asked for:\n%s", r)
	case <-time.After(60 * time.Second):
		t.Fatal("create a never asked for its layer blob")
	}
	rB := taproot(t, store, p.createArgs(p.ref("acceptance/"+nameB), "b")...)
	slowBusy, slowBytes := p.busy(slowDigest), p.bytesSent(slowDigest)
	if rB.code != 0 {
		t.Fatalf("create b failed:\n%s", rB)
	}
	if !slowBusy {
		t.Errorf("create b finished only after image a's blob was served (in %v): creates of different images were serialized", rB.dur)
	} else {
		t.Logf("create b finished in %v while a's blob was at %d of %d bytes", rB.dur.Round(time.Millisecond), slowBytes, len(a.Layers[0].Data))
	}
	rA := <-doneA
	if rA.code != 0 {
		t.Fatalf("create a failed:\n%s", rA)
	}
	if rA.dur < 8*time.Second {
		t.Errorf("create a took %v, less than its blob's delay: the proxy did not slow it", rA.dur)
	}
	if got := listIDs(t, store); strings.Join(got, ",") != "a,b" {
		t.Errorf("list = %v, want [a b]", got)
	}
}

// Two deletes of one id at once both exit 0 (five ids, so that the
// interleavings vary), and leave no image and no lock file behind; delete of
// an unknown id exits 0 with a warning.
func TestConcurrentDeletes(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("conc-del")
	ref, _ := pushImage(t, name, busyboxImage(layer(ib.File("x", "x\n"))))
	store := newStore(t)
	const ids = 5
	for i := 0; i < ids; i++ {
		create(t, store, ref, fmt.Sprintf("d%d", i))
	}
	results := make([]result, 2*ids)
	concurrently(2*ids, func(i int) {
		results[i] = taproot(t, store, "delete", fmt.Sprintf("d%d", i/2))
	})
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("delete d%d (#%d) failed:\n%s", i/2, i%2, r)
		}
	}
	if got := dirEntries(t, filepath.Join(store, "images")); len(got) != 0 {
		t.Errorf("images/ holds %v after deleting every image", got)
	}
	if got := listIDs(t, store); len(got) != 0 {
		t.Errorf("list = %v after deleting every image", got)
	}
	if got := lockFiles(t, store, "image-"); len(got) != 0 {
		t.Errorf("locks/ holds %v after the deletes", got)
	}
	r := taproot(t, store, "delete", "never-was")
	if r.code != 0 {
		t.Errorf("delete of an unknown id:\n%s", r)
	}
	if !strings.Contains(strings.ToLower(r.stderr), "not found") || r.stdout != "" {
		t.Errorf("delete of an unknown id: want a warning on stderr and nothing on stdout:\n%s", r)
	}
	if got := lockFiles(t, store, "image-"); len(got) != 0 {
		t.Errorf("delete of an unknown id left %v", got)
	}
}

// A create killed with SIGKILL in the middle of a download blocks nothing:
// the next create of the same image (same id) succeeds, clean removes what
// the killed one left (tmp/ empty, no stale lock files) and check says the
// store is healthy.
func TestKilledCreateDuringDownload(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("killed")
	_, b := pushImage(t, name, busyboxImage(randomLayer(name, "k", 2<<20)))
	repo := "acceptance/" + name
	p := startBlobProxy(t)
	slowDigest := b.Layers[1].Digest.String()
	started := p.slow(slowDigest, 60*time.Second)
	store := newStore(t)

	argv := asUser(append([]string{h.taproot, "--store", store}, p.createArgs(p.ref(repo), "k")...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = userEnv()
	cmd.Dir = "/"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("create ended (%v) before downloading:\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("create never asked for its layer")
	}
	for deadline := time.Now().Add(10 * time.Second); p.bytesSent(slowDigest) < 64<<10 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	// setpriv execs taproot: the pid is taproot's.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	t.Logf("killed create after %d of %d bytes of its layer", p.bytesSent(slowDigest), len(b.Layers[1].Data))
	if got := dirEntries(t, filepath.Join(store, "tmp")); len(got) == 0 {
		t.Errorf("the killed create left nothing in tmp/: it was not killed mid-download")
	}

	p.slow(slowDigest, 0)
	r := taproot(t, store, p.createArgs(p.ref(repo), "k")...)
	if r.code != 0 {
		t.Fatalf("create after the killed one:\n%s", r)
	}
	if r.dur > 60*time.Second {
		t.Errorf("create after the killed one took %v", r.dur)
	}
	frag, err := parseFragment(r.stdout)
	if err != nil {
		t.Fatal(err)
	}
	if got := sh(t, store, frag, "cat /k/id"); got != name+"\n" {
		t.Errorf("container sees %q", got)
	}

	r = taproot(t, store, "clean")
	if r.code != 0 {
		t.Fatalf("clean:\n%s", r)
	}
	if got := dirEntries(t, filepath.Join(store, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after clean", got)
	}
	if got := staleLocks(t, store); len(got) != 0 {
		t.Errorf("locks/ holds %v after clean", got)
	}
	r = taproot(t, store, "check")
	var rep struct {
		Healthy bool `json:"healthy"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.Healthy {
		t.Errorf("check after clean is not healthy:\n%s", r)
	}
	// The image made after the kill is whole: clean removed none of it.
	if got := sh(t, store, frag, "cat /k/id"); got != name+"\n" {
		t.Errorf("container after clean sees %q", got)
	}
}

// A create whose layer cannot be downloaded fails and leaves nothing
// behind: no image, no scratch dir, no lock file; the layers it did get
// stay (a retry needs them) until clean removes them.
func TestFailedCreateLeavesNoLocks(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("failed")
	_, b := pushImage(t, name, busyboxImage(randomLayer(name, "f", 64<<10)))
	p := startBlobProxy(t)
	p.mu.Lock()
	p.fail[b.Layers[1].Digest.String()] = true
	p.mu.Unlock()
	store := newStore(t)
	r := taproot(t, store, p.createArgs(p.ref("acceptance/"+name), "f")...)
	if r.code == 0 {
		t.Fatalf("create with a missing blob succeeded:\n%s", r)
	}
	if got := dirEntries(t, filepath.Join(store, "images")); len(got) != 0 {
		t.Errorf("images/ holds %v after a failed create", got)
	}
	if got := dirEntries(t, filepath.Join(store, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v after a failed create", got)
	}
	if got := staleLocks(t, store); len(got) != 0 {
		t.Errorf("a failed create left lock files %v\n%s", got, r)
	}
	before := dirEntries(t, filepath.Join(store, "layers"))
	if c := clean(t, store, nil); *c.LayersRemoved != len(before) {
		t.Errorf("clean removed %d layers, want the %d the failed create left (%v)", *c.LayersRemoved, len(before), before)
	}
	if got := dirEntries(t, filepath.Join(store, "layers")); len(got) != 0 {
		t.Errorf("layers/ holds %v after clean", got)
	}
	if got := dirEntries(t, filepath.Join(store, "locks")); strings.Join(got, ",") != "init.lock" {
		t.Errorf("locks/ holds %v after clean, want only init.lock", got)
	}
}

type cleanJSON struct {
	ReclaimedBytes *int64 `json:"reclaimed_bytes"`
	LayersRemoved  *int   `json:"layers_removed"`
}

func clean(t *testing.T, store string, global []string, args ...string) cleanJSON {
	t.Helper()
	r := tp(t, store, nil, global, append([]string{"clean"}, args...)...)
	var c cleanJSON
	if r.code != 0 {
		t.Fatalf("clean %v:\n%s", args, r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.ReclaimedBytes == nil || c.LayersRemoved == nil {
		t.Fatalf("clean %v printed %q, want {\"reclaimed_bytes\":N,\"layers_removed\":M} (%v)", args, r.stdout, err)
	}
	return c
}

// committedSize sums the sizes the store's layer records hold.
func committedSize(t *testing.T, store string) int64 {
	t.Helper()
	var n int64
	for _, k := range dirEntries(t, filepath.Join(store, "layers")) {
		var rec struct {
			Size int64 `json:"size"`
		}
		data, err := os.ReadFile(filepath.Join(store, "layers", k, "layer.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &rec); err != nil || rec.Size <= 0 {
			t.Fatalf("layers/%s/layer.json: size %d (%v)", k, rec.Size, err)
		}
		n += rec.Size
	}
	return n
}

// clean --threshold-bytes removes nothing while the layers take no more
// than the threshold, and every unreferenced layer (and only those) above
// it; clean is idempotent; [create] with_clean makes create clean first
// above [clean] threshold_bytes (TestCreateWithClean has the flags).
// list --format table prints the images as a table.
func TestCleanThreshold(t *testing.T) {
	need(t)
	t.Parallel()
	name := uniq("thresh")
	refA, a := pushImage(t, name+"-a", busyboxImage(randomLayer(name+"-a", "a", 256<<10)))
	refB, bb := pushImage(t, name+"-b", busyboxImage(randomLayer(name+"-b", "b", 256<<10)))
	refC, c := pushImage(t, name+"-c", busyboxImage(randomLayer(name+"-c", "c", 256<<10)))
	store := newStore(t)
	create(t, store, refA, "a")
	fragB := create(t, store, refB, "b")

	r := taproot(t, store, "list", "--format", "table")
	if r.code != 0 {
		t.Fatalf("list --format table:\n%s", r)
	}
	rows := lines(r.stdout)
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "ID") || !strings.HasPrefix(rows[1], "a ") || !strings.Contains(rows[1], name+"-a") || !strings.HasPrefix(rows[2], "b ") {
		t.Errorf("list --format table printed:\n%s", r.stdout)
	}

	if r := taproot(t, store, "delete", "a"); r.code != 0 {
		t.Fatalf("delete a:\n%s", r)
	}
	size := committedSize(t, store)
	aTop := layerDir(store, a.Layers[1].DiffID)

	// At or under the threshold: nothing.
	for _, th := range []int64{size, size * 10} {
		got := clean(t, store, nil, "--threshold-bytes", fmt.Sprint(th))
		if *got.LayersRemoved != 0 || *got.ReclaimedBytes != 0 {
			t.Errorf("clean --threshold-bytes %d with %d bytes of layers removed %d layers (%d bytes), want none", th, size, *got.LayersRemoved, *got.ReclaimedBytes)
		}
		if !exists(aTop) {
			t.Fatalf("clean --threshold-bytes %d removed a's layer", th)
		}
	}
	// Above it: a's own layer only (the base is b's too).
	got := clean(t, store, nil, "--threshold-bytes", fmt.Sprint(size-1))
	if *got.LayersRemoved != 1 || *got.ReclaimedBytes <= 256<<10 {
		t.Errorf("clean --threshold-bytes %d removed %d layers (%d bytes), want 1 layer of more than 256 KiB", size-1, *got.LayersRemoved, *got.ReclaimedBytes)
	}
	if exists(aTop) {
		t.Errorf("a's layer is still there after clean")
	}
	for _, l := range bb.Layers {
		if !exists(layerDir(store, l.DiffID)) {
			t.Errorf("clean removed layer %s that b uses", l.DiffID)
		}
	}
	if again := clean(t, store, nil); *again.LayersRemoved != 0 || *again.ReclaimedBytes != 0 {
		t.Errorf("second clean removed %d layers (%d bytes), want nothing", *again.LayersRemoved, *again.ReclaimedBytes)
	}
	if got := sh(t, store, fragB, "cat /b/id"); got != name+"-b\n" {
		t.Errorf("b after clean sees %q", got)
	}

	// [create] with_clean: create cleans first when the store is above
	// [clean] threshold_bytes.
	if r := taproot(t, store, "delete", "b"); r.code != 0 {
		t.Fatalf("delete b:\n%s", r)
	}
	bTop := layerDir(store, bb.Layers[1].DiffID)
	high := []string{"--config", writeConfig(t, fmt.Sprintf("[create]\nwith_clean = true\n[clean]\nthreshold_bytes = %d\n", committedSize(t, store)))}
	mustCreate(t, tp(t, store, nil, high, "create", "--insecure-registry", h.registry, refC, "c1"), "create c1 under the threshold")
	if !exists(bTop) {
		t.Errorf("create with the store under clean.threshold_bytes removed b's unused layer")
	}
	low := []string{"--config", writeConfig(t, "[create]\nwith_clean = true\n[clean]\nthreshold_bytes = 1\n")}
	mustCreate(t, tp(t, store, nil, low, "create", "--insecure-registry", h.registry, refC, "c2"), "create c2 over the threshold")
	if exists(bTop) {
		t.Errorf("create with the store over clean.threshold_bytes did not clean first: b's unused layer is still there")
	}
	for _, l := range c.Layers {
		if !exists(layerDir(store, l.DiffID)) {
			t.Errorf("the clean before create c2 removed layer %s that c1 uses", l.DiffID)
		}
	}
}

// lockFiles lists locks/ entries with one of the prefixes.
func lockFiles(t *testing.T, store string, prefixes ...string) []string {
	t.Helper()
	var out []string
	for _, n := range dirEntries(t, filepath.Join(store, "locks")) {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				out = append(out, n)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// BenchmarkConcurrentColdCreates compares 20 concurrent creates of one
// image new to the store with a single cold create of it, straight from the
// loopback registry and through the proxy with each layer blob spread over
// a second (a slow network). It reports wall times, their ratio and the
// registry's GETs per layer blob in the concurrent case (1 = each blob once).
// Run: TAPROOT_BIN=$PWD/bin/taproot go test ./acceptance/ -run '^$' -bench ConcurrentColdCreates -v
func BenchmarkConcurrentColdCreates(b *testing.B) {
	if h.skip != "" {
		b.Skip(h.skip)
	}
	if h.fatal != nil || h.taprootErr != nil {
		b.Fatalf("acceptance setup: %v %v", h.fatal, h.taprootErr)
	}
	for _, bc := range []struct {
		name  string
		delay time.Duration
	}{{"loopback", 0}, {"slow-network-1s-per-blob", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 20
			var single, conc time.Duration
			var fetches float64
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				name := uniq("bench")
				img := busyboxImage(randomLayer(name+"-1", "one", 1<<20), randomLayer(name+"-2", "two", 1<<20))
				built := benchLayout(b, name, img)
				for _, repo := range []string{name + "-single", name + "-conc"} {
					if err := ib.Push(b.Context(), built, h.registry, "acceptance/"+repo); err != nil {
						b.Fatal(err)
					}
				}
				p := startBlobProxy(b)
				for _, l := range built.Layers {
					p.slow(l.Digest.String(), bc.delay)
				}
				run := func(store, repo, id string) error {
					if err := mkdirOwned(filepath.Dir(store)); err != nil {
						return err
					}
					argv := asUser(append([]string{h.taproot, "--store", store}, p.createArgs(p.ref("acceptance/"+repo), id)...)...)
					cmd := exec.Command(argv[0], argv[1:]...)
					cmd.Env, cmd.Dir = userEnv(), "/"
					out, err := cmd.CombinedOutput()
					if err != nil {
						return fmt.Errorf("create %s: %v\n%s", id, err, out)
					}
					return nil
				}
				b.StartTimer()
				start := time.Now()
				if err := run(filepath.Join(h.work, "stores", name+"-single", "store"), name+"-single", "s"); err != nil {
					b.Fatal(err)
				}
				single += time.Since(start)
				start = time.Now()
				errs := make([]error, n)
				concurrently(n, func(i int) {
					errs[i] = run(filepath.Join(h.work, "stores", name+"-conc", "store"), name+"-conc", fmt.Sprintf("c%02d", i))
				})
				conc += time.Since(start)
				b.StopTimer()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				gets := 0
				data, _ := os.ReadFile(h.regLog)
				for _, l := range built.Layers {
					re := regexp.MustCompile(`"GET /v2/acceptance/` + regexp.QuoteMeta(name+"-conc") + `/blobs/` + regexp.QuoteMeta(l.Digest.String()) + ` HTTP/[0-9.]+" (200|206) `)
					gets += len(re.FindAll(data, -1))
				}
				fetches += float64(gets) / float64(len(built.Layers))
				p.srv.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(single.Milliseconds())/float64(b.N), "ms/single-cold-create")
			b.ReportMetric(float64(conc.Milliseconds())/float64(b.N), "ms/20-concurrent-cold-creates")
			b.ReportMetric(float64(conc)/float64(single), "x-single")
			b.ReportMetric(fetches/float64(b.N), "GETs/blob")
			b.ReportMetric(0, "ns/op")
		})
	}
}
