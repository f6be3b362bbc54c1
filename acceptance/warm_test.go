package acceptance

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// connCounter is a TCP relay in front of the test registry that counts
// the connections made to it: a request the registry never logs (the
// HTTPS probe containers/image sends first, which a plain-HTTP registry
// answers with a 400 it does not log) still shows here.
type connCounter struct {
	addr  string
	conns atomic.Int64
}

func startConnCounter(t testing.TB) *connCounter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{addr: l.Addr().String()}
	var wg sync.WaitGroup
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				out, err := net.Dial("tcp", h.registry)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				io.Copy(in, out)
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return c
}

var accessLine = regexp.MustCompile(`"(GET|HEAD) (/v2/[^ "]*) HTTP/[0-9.]+" ([0-9]{3}) `)

// regRequest is one request in the registry's access log.
type regRequest struct{ method, path, status string }

// regRequestsSince returns the requests logged after offset for repo (and
// the /v2/ pings), and the log's new size.
func regRequestsSince(t *testing.T, offset int64, repo string) ([]regRequest, int64) {
	t.Helper()
	data, err := os.ReadFile(h.regLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []regRequest
	for _, m := range accessLine.FindAllSubmatch(data[offset:], -1) {
		p := string(m[2])
		if p == "/v2/" || strings.HasPrefix(p, "/v2/"+repo+"/") {
			out = append(out, regRequest{string(m[1]), p, string(m[3])})
		}
	}
	return out, int64(len(data))
}

func logSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(h.regLog)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// waitLog gives the registry a moment to write its access log lines.
func waitLog() { time.Sleep(200 * time.Millisecond) }

// TestWarmCreateNoNetwork: with the manifest, config and layers in the
// store, a create by digest makes no connection at all, one by tag makes
// one manifest request and fetches no blob, a create after pull fetches no
// blob, and a cached config rewritten on disk is refetched, never used.
func TestWarmCreateNoNetwork(t *testing.T) {
	needHarness(t)
	name := uniq("warm")
	_, built := pushImage(t, name, busyboxImage(layer(ib.File("/etc/warm", "warm\n"))))
	repo := "acceptance/" + name
	cc := startConnCounter(t)
	byTag := "docker://" + cc.addr + "/" + repo + ":latest"
	byDigest := "docker://" + cc.addr + "/" + repo + "@" + built.ManifestDigest.String()
	store := newStore(t)
	run := func(ref, id string) {
		t.Helper()
		r := taproot(t, store, "create", "--insecure-registry", cc.addr, ref, id)
		if r.code != 0 {
			t.Fatalf("create %s %s:\n%s", ref, id, r)
		}
	}

	t.Run("pull-then-create", func(t *testing.T) {
		if r := taproot(t, store, "pull", "--insecure-registry", cc.addr, byTag); r.code != 0 {
			t.Fatalf("pull: %s", r)
		}
		waitLog()
		off := logSize(t)
		run(byTag, "after-pull")
		waitLog()
		reqs, _ := regRequestsSince(t, off, repo)
		for _, r := range reqs {
			if strings.Contains(r.path, "/blobs/") {
				t.Errorf("create after pull fetched a blob: %+v (all: %+v)", r, reqs)
			}
		}
	})

	t.Run("by-digest", func(t *testing.T) {
		waitLog()
		before := cc.conns.Load()
		off := logSize(t)
		run(byDigest, "by-digest")
		waitLog()
		reqs, _ := regRequestsSince(t, off, repo)
		if n := cc.conns.Load() - before; n != 0 || len(reqs) != 0 {
			t.Errorf("warm create by digest: %d connections, requests %+v; want none", n, reqs)
		}
	})

	t.Run("by-tag", func(t *testing.T) {
		waitLog()
		before := cc.conns.Load()
		off := logSize(t)
		run(byTag, "by-tag")
		waitLog()
		reqs, _ := regRequestsSince(t, off, repo)
		if len(reqs) != 1 || !strings.Contains(reqs[0].path, "/manifests/latest") {
			t.Errorf("warm create by tag: requests %+v; want one manifest request", reqs)
		}
		if n := cc.conns.Load() - before; n != 1 {
			t.Errorf("warm create by tag: %d connections; want 1 (no HTTPS probe)", n)
		}
	})

	t.Run("registries.conf-insecure", func(t *testing.T) {
		conf := writeUserFile(t, "registries.conf", "[[registry]]\nlocation = \""+cc.addr+"\"\ninsecure = true\n")
		global := withConfig(t, "registries_conf = \""+conf+"\"")
		waitLog()
		before := cc.conns.Load()
		off := logSize(t)
		mustCreate(t, tp(t, store, nil, global, "create", byTag, "conf-insecure"), "create by tag, insecure in registries.conf")
		waitLog()
		reqs, _ := regRequestsSince(t, off, repo)
		if n := cc.conns.Load() - before; n != 1 || len(reqs) != 1 {
			t.Errorf("warm create by tag, insecure in registries.conf: %d connections, requests %+v; want one", n, reqs)
		}
	})

	t.Run("blocked", func(t *testing.T) {
		// The cache does not get around a block.
		conf := writeUserFile(t, "registries.conf", "[[registry]]\nlocation = \""+cc.addr+"\"\nblocked = true\n")
		r := tp(t, store, nil, withConfig(t, "registries_conf = \""+conf+"\""), "create", "--insecure-registry", cc.addr, byDigest, "blocked")
		mustFail(t, r, "warm create by digest from a blocked registry", "blocked")
	})

	t.Run("tag-moved", func(t *testing.T) {
		// The cache is by digest: a tag pushed again gives the new image.
		_, moved := pushImage(t, name, busyboxImage(layer(ib.File("/etc/warm", "moved\n"))))
		r := taproot(t, store, "create", "--insecure-registry", cc.addr, byTag, "moved")
		if r.code != 0 {
			t.Fatalf("create after the tag moved: %s", r)
		}
		if !strings.Contains(r.stdout, moved.ManifestDigest.String()) || strings.Contains(r.stdout, built.ManifestDigest.String()) {
			t.Errorf("create after the tag moved: fragment does not name the new manifest %s:\n%s", moved.ManifestDigest, r.stdout)
		}
	})

	t.Run("tampered-config", func(t *testing.T) {
		p := filepath.Join(store, "meta", "blobs", "sha256", built.ConfigDigest.Encoded())
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("the config is not cached where expected: %v", err)
		}
		fi, err := os.Stat(filepath.Dir(p))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("cache dir %s: mode %v, err %v; want 0700", filepath.Dir(p), fi.Mode().Perm(), err)
		}
		// Same length, other content: an Env the image does not have.
		bad := strings.Replace(string(orig), "PATH=/bin:/usr/bin", "PATH=/evil:/usrbin", 1)
		if bad == string(orig) {
			t.Fatal("config has no PATH to tamper with")
		}
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		gets := registryBlobGets(t, repo, built.ConfigDigest)
		r := taproot(t, store, "create", "--insecure-registry", cc.addr, byDigest, "tampered")
		if r.code != 0 {
			t.Fatalf("create with a tampered cached config: %s", r)
		}
		if strings.Contains(r.stdout, "/evil") {
			t.Errorf("the tampered config was used:\n%s", r.stdout)
		}
		waitLog()
		if n := registryBlobGets(t, repo, built.ConfigDigest) - gets; n != 1 {
			t.Errorf("config GETs after tampering: %d, want 1 (refetched)", n)
		}
		if now, _ := os.ReadFile(p); string(now) != string(orig) {
			t.Errorf("cached config not restored after the refetch")
		}
	})
}

// BenchmarkWarmCreate times creates of an image whose layers (and, with
// the cache, manifest and config) are in the store: by digest and by tag,
// median of 10 each, through the loopback registry marked insecure, next
// to `taproot list` on the same store (process start and store open, the
// floor of any command run this way through setpriv).
// Run: TAPROOT_BIN=$PWD/bin/taproot go test ./acceptance/ -run '^$' -bench WarmCreate -benchtime 1x -v
func BenchmarkWarmCreate(b *testing.B) {
	if h.skip != "" {
		b.Skip(h.skip)
	}
	if h.fatal != nil || h.taprootErr != nil {
		b.Fatalf("acceptance setup: %v %v", h.fatal, h.taprootErr)
	}
	name := uniq("warmbench")
	img := busyboxImage(randomLayer(name+"-1", "one", 1<<20), randomLayer(name+"-2", "two", 1<<20))
	built := benchLayout(b, name, img)
	repo := "acceptance/" + name
	if err := ib.Push(b.Context(), built, h.registry, repo); err != nil {
		b.Fatal(err)
	}
	store := filepath.Join(h.work, "stores", name, "store")
	if err := mkdirOwned(filepath.Dir(store)); err != nil {
		b.Fatal(err)
	}
	n := 0
	run := func(ref string) time.Duration {
		n++
		argv := asUser(h.taproot, "--store", store, "create", "--insecure-registry", h.registry, ref, "i"+itoa(n))
		if ref == "" {
			// The floor: the same process start and store open, no image.
			argv = asUser(h.taproot, "--store", store, "list")
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Dir = userEnv(), "/"
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("create %s: %v\n%s", ref, err, out)
		}
		return d
	}
	tag := "docker://" + h.registry + "/" + repo + ":latest"
	dig := "docker://" + h.registry + "/" + repo + "@" + built.ManifestDigest.String()
	run(tag)
	median := func(ref string) time.Duration {
		var ds []time.Duration
		for i := 0; i < 10; i++ {
			ds = append(ds, run(ref))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return (ds[4] + ds[5]) / 2
	}
	for it := 0; it < b.N; it++ {
		d, tg, fl := median(dig), median(tag), median("")
		b.ReportMetric(float64(d.Microseconds())/1000, "ms-by-digest")
		b.ReportMetric(float64(tg.Microseconds())/1000, "ms-by-tag")
		b.ReportMetric(float64(fl.Microseconds())/1000, "ms-list-floor")
	}
}

// benchLayout writes img as an OCI layout named name under the harness's
// work dir (a benchmark has no per-test dir), owned by the test user.
func benchLayout(b *testing.B, name string, img ib.Image) ib.Built {
	b.Helper()
	dir := filepath.Join(h.work, "layouts", name)
	if err := mkdirOwned(dir); err != nil {
		b.Fatal(err)
	}
	built, err := ib.WriteLayout(dir, "latest", img)
	if err != nil {
		b.Fatal(err)
	}
	return built
}
