package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// fixture is a hand-built OCI layout with:
//   - tag "v1": one linux/GOARCH image with a gzip, a zstd and an
//     uncompressed layer, Env FOO=bar, Cmd /bin/tool x;
//   - tag "multi": an OCI index of a linux/GOARCH image (Env ARCH=native)
//     and a linux/otherArch one (Env ARCH=other).
type fixture struct {
	dir           string
	single        builtImage
	native, other builtImage
	multiDesc     imgspecv1.Descriptor
	multiBlob     []byte
}

func buildFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{dir: filepath.Join(t.TempDir(), "layout")}
	l := newLayout(t, fx.dir)
	fx.single = l.addImage(t, runtime.GOARCH,
		[]string{"PATH=/bin", "FOO=bar"}, []string{"/bin/tool", "x"},
		layerSpec{comp: "gzip", entries: []tarEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hello", body: "hello\n"}}},
		layerSpec{comp: "zstd", entries: []tarEntry{{name: "bin/", typ: tar.TypeDir}, {name: "bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o755}}},
		layerSpec{comp: "none", entries: []tarEntry{{name: "etc/hello", body: "hello again\n"}, {name: "etc/link", typ: tar.TypeSymlink, link: "hello"}}},
	)
	l.tag(t, fx.single.desc, "v1")
	fx.native = l.addImage(t, runtime.GOARCH, []string{"ARCH=native"}, []string{"/native"},
		layerSpec{comp: "gzip", entries: []tarEntry{{name: "native", body: "n"}}})
	fx.other = l.addImage(t, otherArch(), []string{"ARCH=other"}, []string{"/other"},
		layerSpec{comp: "gzip", entries: []tarEntry{{name: "other", body: "o"}}})
	fx.multiDesc, fx.multiBlob = l.addIndex(t, fx.other, fx.native) // other first: the choice must be made, not defaulted
	l.tag(t, fx.multiDesc, "multi")
	return fx
}

// testFetcher returns a Fetcher isolated from the host's registries.conf
// and logging to the test.
func testFetcher(t *testing.T, o Options) *Fetcher {
	t.Helper()
	if o.RegistriesConfPath == "" {
		o.RegistriesConfPath = emptyRegistriesConf(t)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return New(o)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustParse(t *testing.T, s string) Reference {
	t.Helper()
	r, err := ParseRef(s)
	if err != nil {
		t.Fatalf("ParseRef(%q): %v", s, err)
	}
	return r
}

func mustOpen(t *testing.T, f *Fetcher, s string) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := f.Open(ctx, mustParse(t, s))
	if err != nil {
		t.Fatalf("Open(%q): %v", s, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// checkSingle checks an opened copy of fx.single whose blobs are the built
// ones (registry, oci layout, oci-archive).
func checkSingle(t *testing.T, src *Source, want builtImage) {
	t.Helper()
	img := src.Image()
	if img.ManifestDigest != want.manifestDigest {
		t.Errorf("ManifestDigest %s, want %s", img.ManifestDigest, want.manifestDigest)
	}
	if img.ListDigest != "" {
		t.Errorf("ListDigest %s, want none", img.ListDigest)
	}
	checkConfigAndLayers(t, src, want)
}

func checkConfigAndLayers(t *testing.T, src *Source, want builtImage) {
	t.Helper()
	img := src.Image()
	if got, w := strings.Join(img.Config.Config.Env, ","), strings.Join(want.config.Config.Env, ","); got != w {
		t.Errorf("Env %q, want %q", got, w)
	}
	if got, w := strings.Join(img.Config.Config.Cmd, " "), strings.Join(want.config.Config.Cmd, " "); got != w {
		t.Errorf("Cmd %q, want %q", got, w)
	}
	if img.Config.Config.WorkingDir != "/w" || img.Config.Config.User != "1000:1000" {
		t.Errorf("WorkingDir %q User %q", img.Config.Config.WorkingDir, img.Config.Config.User)
	}
	if len(img.Layers) != len(want.layers) {
		t.Fatalf("%d layers, want %d", len(img.Layers), len(want.layers))
	}
	for i, l := range img.Layers {
		w := want.layers[i]
		if l.BlobDigest != w.digest || l.DiffID != w.diffID || l.Size != int64(len(w.blob)) {
			t.Errorf("layer %d: %+v, want digest %s diffID %s size %d", i, l, w.digest, w.diffID, len(w.blob))
		}
	}
	blobs := checkBlobs(t, src)
	for i := range blobs {
		if !bytes.Equal(blobs[i], want.layers[i].blob) {
			t.Errorf("layer %d: bytes differ from the built blob", i)
		}
	}
}

func TestParseRef(t *testing.T) {
	dir := t.TempDir()
	tarball := filepath.Join(dir, "rootfs.tar.gz")
	gz, _ := compress(t, layerTar(t, []tarEntry{{name: "a", body: "a"}}), "gzip")
	if err := os.WriteFile(tarball, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	notTar := filepath.Join(dir, "notes.tar")
	if err := os.WriteFile(notTar, []byte("just text, named like a tar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dgst := "sha256:" + strings.Repeat("ab", 32)

	good := []struct {
		in, canonical string
		kind          Kind
		registry      string
		pinned        bool
	}{
		{"docker://127.0.0.1:5000/repo:tag", "docker://127.0.0.1:5000/repo:tag", Docker, "127.0.0.1:5000", false},
		{"docker://127.0.0.1:5000/a/b/repo", "docker://127.0.0.1:5000/a/b/repo:latest", Docker, "127.0.0.1:5000", false},
		{"docker://127.0.0.1:5000/repo@" + dgst, "docker://127.0.0.1:5000/repo@" + dgst, Docker, "127.0.0.1:5000", true},
		{"docker://127.0.0.1:5000/repo:tag@" + dgst, "docker://127.0.0.1:5000/repo@" + dgst, Docker, "127.0.0.1:5000", true},
		{"docker://localhost:5000/repo#v2", "docker://localhost:5000/repo:v2", Docker, "localhost:5000", false},
		{"docker://registry.example.com/team/app:1.0", "docker://registry.example.com/team/app:1.0", Docker, "registry.example.com", false},
		// GrootFS / Docker Hub forms.
		{"docker:///busybox", "docker://docker.io/library/busybox:latest", Docker, "docker.io", false},
		{"docker:///busybox#1.36", "docker://docker.io/library/busybox:1.36", Docker, "docker.io", false},
		{"docker:///busybox:1.36", "docker://docker.io/library/busybox:1.36", Docker, "docker.io", false},
		{"docker:///cfgarden/empty#v0.1.0", "docker://docker.io/cfgarden/empty:v0.1.0", Docker, "docker.io", false},
		{"docker://busybox", "docker://docker.io/library/busybox:latest", Docker, "docker.io", false},
		{"docker:///library/busybox@" + dgst, "docker://docker.io/library/busybox@" + dgst, Docker, "docker.io", true},
		// Files.
		{"oci:" + dir + ":v1", "oci:" + dir + ":v1", OCILayout, "", false},
		{"oci:" + dir, "oci:" + dir, OCILayout, "", false},
		{"oci-archive:" + dir + "/img.tar:v1", "oci-archive:" + dir + "/img.tar:v1", OCIArchive, "", false},
		{"oci-archive:" + dir + "/img.tar", "oci-archive:" + dir + "/img.tar", OCIArchive, "", false},
		{"docker-archive:" + dir + "/img.tar", "docker-archive:" + dir + "/img.tar", DockerArchive, "", false},
		{"docker-archive:" + dir + "/img.tar:app:1", "docker-archive:" + dir + "/img.tar:docker.io/library/app:1", DockerArchive, "", false},
		{dir, dir, LocalDir, "", false},
		{"file://" + dir, dir, LocalDir, "", false},
		{tarball, tarball, LocalTarball, "", false},
	}
	for _, tc := range good {
		r, err := ParseRef(tc.in)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.in, err)
			continue
		}
		if r.Kind != tc.kind || r.Canonical != tc.canonical || r.Registry != tc.registry || r.Pinned != tc.pinned || r.Raw != tc.in {
			t.Errorf("ParseRef(%q) = kind %v canonical %q registry %q pinned %v raw %q; want %v %q %q %v",
				tc.in, r.Kind, r.Canonical, r.Registry, r.Pinned, r.Raw, tc.kind, tc.canonical, tc.registry, tc.pinned)
		}
		if tc.pinned && r.Digest.String() != dgst {
			t.Errorf("ParseRef(%q).Digest = %q", tc.in, r.Digest)
		}
	}

	// Relative paths resolve against the working directory.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, tarball)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseRef(rel); err != nil || r.Kind != LocalTarball || r.Path != tarball {
		t.Errorf("ParseRef(%q) = %+v, %v", rel, r, err)
	}

	bad := []string{
		"",
		"docker:busybox",
		"docker:/busybox",
		"docker://",
		"docker:///",
		"docker://127.0.0.1:5000/Repo:tag", // upper case repository
		"docker://127.0.0.1:5000/repo:bad tag",
		"docker://127.0.0.1:5000/repo#",
		"docker://127.0.0.1:5000/repo:a#b",
		"docker://127.0.0.1:5000/repo@sha256:123",
		"oci:",
		"oci-archive:",
		"docker-archive:",
		"oci::v1", // no path: not the working directory
		"oci-archive::v1",
		"docker-archive::app:1",
		"containers-storage:busybox",
		"dir:/tmp/x",
		"http://127.0.0.1:5000/repo",
		notTar,
	}
	for _, in := range bad {
		_, err := ParseRef(in)
		if !errors.Is(err, ErrBadReference) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadReference", in, err)
			continue
		}
		if in != "" && !strings.Contains(err.Error(), in) {
			t.Errorf("ParseRef(%q) error does not name the ref: %v", in, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseRef(%q) error is not one line: %q", in, err)
		}
	}

	for in, want := range map[string]string{"oci::v1": "oci: needs a directory", "oci-archive::v1": "oci-archive: needs a file", "docker-archive::app:1": "docker-archive: needs a file"} {
		if _, err := ParseRef(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRef(%q) = %v, want %q", in, err, want)
		}
	}

	// A path that does not exist is "not found", with a hint.
	_, err = ParseRef(filepath.Join(dir, "nope"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "docker://") {
		t.Errorf("missing path: %v", err)
	}
	if _, err := ParseRef("oci:" + filepath.Join(dir, "no", "such", "dir")); !errors.Is(err, ErrNotFound) {
		t.Errorf("oci: under a missing dir: %v", err)
	}
}

// A transport typo is an unknown transport, not a missing local path.
func TestParseRefUnknownTransport(t *testing.T) {
	for _, tc := range []struct{ in, scheme, hint string }{
		{"dokcer://127.0.0.1:5000/repo:tag", "dokcer", "did you mean docker://?"},
		{"ocl:/srv/layout:v1", "ocl", "did you mean oci:?"},
		{"docker-achive:/tmp/x.tar", "docker-achive", "did you mean docker-archive:?"},
		{"nosuchtransport:foo", "nosuchtransport", ""},
	} {
		_, err := ParseRef(tc.in)
		if !errors.Is(err, ErrBadReference) || errors.Is(err, ErrNotFound) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadReference and not ErrNotFound", tc.in, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("unknown transport %q", tc.scheme)) || !strings.Contains(msg, tc.hint) {
			t.Errorf("ParseRef(%q) = %q, want unknown transport %q and %q", tc.in, msg, tc.scheme, tc.hint)
		}
		if tc.hint == "" && strings.Contains(msg, "did you mean") {
			t.Errorf("ParseRef(%q) = %q: a suggestion for a far-off name", tc.in, msg)
		}
	}
	// A relative path with a colon that exists is still a path.
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("rootfs:v1", 0o755); err != nil {
		t.Fatal(err)
	}
	if r, err := ParseRef("rootfs:v1"); err != nil || r.Kind != LocalDir || r.Path != filepath.Join(dir, "rootfs:v1") {
		t.Errorf("ParseRef(rootfs:v1) = %+v, %v; want the local dir", r, err)
	}
}

func TestSniff(t *testing.T) {
	raw := layerTar(t, []tarEntry{{name: "a", body: "a"}})
	for _, tc := range []struct {
		comp string
		want compression
	}{{"none", compNone}, {"gzip", compGzip}, {"zstd", compZstd}} {
		b, _ := compress(t, raw, tc.comp)
		if got := sniff(b); got != tc.want {
			t.Errorf("%s: sniff = %v, want %v", tc.comp, got, tc.want)
		}
	}
	if got := sniff([]byte("hello")); got != compUnknown {
		t.Errorf("text: sniff = %v", got)
	}
}

func TestLocalTarball(t *testing.T) {
	raw := layerTar(t, []tarEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hello", body: "hi\n"}})
	f := testFetcher(t, Options{})
	for _, tc := range []struct{ comp, name, mediaType string }{
		{"none", "rootfs.img", imgspecv1.MediaTypeImageLayer}, // the name says nothing
		{"gzip", "rootfs.tar", imgspecv1.MediaTypeImageLayerGzip},
		{"zstd", "rootfs", imgspecv1.MediaTypeImageLayerZstd},
	} {
		b, _ := compress(t, raw, tc.comp)
		p := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		src := mustOpen(t, f, p)
		img := src.Image()
		if img.Ref.Kind != LocalTarball || img.ManifestDigest != "" || len(img.Layers) != 1 {
			t.Fatalf("%s: %+v", tc.comp, img)
		}
		l := img.Layers[0]
		if l.MediaType != tc.mediaType || l.Size != int64(len(b)) || l.BlobDigest != "" || l.DiffID != "" {
			t.Errorf("%s: layer %+v", tc.comp, l)
		}
		if img.Config.OS != runtime.GOOS || img.Config.Architecture != runtime.GOARCH {
			t.Errorf("%s: config platform %s/%s", tc.comp, img.Config.OS, img.Config.Architecture)
		}
		rc, err := src.OpenLayer(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: OpenLayer gave %d bytes (%v), want the file", tc.comp, len(got), err)
		}
		if _, err := src.OpenLayer(context.Background(), 1); err == nil {
			t.Errorf("OpenLayer(1) on a one-layer image succeeded")
		}
	}
}

func TestOCILayoutAndArchives(t *testing.T) {
	fx := buildFixture(t)
	f := testFetcher(t, Options{})

	t.Run("oci", func(t *testing.T) {
		src := mustOpen(t, f, "oci:"+fx.dir+":v1")
		if src.Image().Ref.Kind != OCILayout {
			t.Errorf("kind %v", src.Image().Ref.Kind)
		}
		checkSingle(t, src, fx.single)
	})
	t.Run("oci index picks this platform", func(t *testing.T) {
		src := mustOpen(t, f, "oci:"+fx.dir+":multi")
		img := src.Image()
		if img.ListDigest != fx.multiDesc.Digest || img.ManifestDigest != fx.native.manifestDigest {
			t.Errorf("list %s manifest %s; want %s %s", img.ListDigest, img.ManifestDigest, fx.multiDesc.Digest, fx.native.manifestDigest)
		}
		if !envHas(img.Config.Config.Env, "ARCH=native") {
			t.Errorf("env %v", img.Config.Config.Env)
		}
		checkBlobs(t, src)
	})
	t.Run("oci index, Arch option", func(t *testing.T) {
		other := testFetcher(t, Options{Arch: otherArch()})
		src := mustOpen(t, other, "oci:"+fx.dir+":multi")
		if img := src.Image(); img.ManifestDigest != fx.other.manifestDigest || !envHas(img.Config.Config.Env, "ARCH=other") {
			t.Errorf("manifest %s env %v", img.ManifestDigest, img.Config.Config.Env)
		}
	})
	t.Run("oci index, no such platform", func(t *testing.T) {
		none := testFetcher(t, Options{Arch: "riscv64"})
		_, err := none.Open(context.Background(), mustParse(t, "oci:"+fx.dir+":multi"))
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("err %v, want ErrNotFound", err)
		}
	})
	t.Run("oci-archive", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "img.tar")
		tarDir(t, fx.dir, file)
		src := mustOpen(t, f, "oci-archive:"+file+":v1")
		checkSingle(t, src, fx.single)
	})
	t.Run("docker-archive", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "img.tar")
		want := writeDockerArchive(t, fx.single, file, "app:v1")
		for _, s := range []string{"docker-archive:" + file, "docker-archive:" + file + ":app:v1"} {
			src := mustOpen(t, f, s)
			img := src.Image()
			if img.Ref.Kind != DockerArchive || img.ManifestDigest == "" {
				t.Errorf("%s: kind %v manifest %q", s, img.Ref.Kind, img.ManifestDigest)
			}
			// Layers are stored uncompressed: blob digest = diffID.
			for i, l := range img.Layers {
				if l.DiffID != fx.single.layers[i].diffID || l.BlobDigest != l.DiffID {
					t.Errorf("%s: layer %d: %+v, want diffID %s", s, i, l, fx.single.layers[i].diffID)
				}
			}
			checkConfigAndLayers(t, src, want)
		}
	})
	t.Run("not found", func(t *testing.T) {
		missingDir := filepath.Join(t.TempDir(), "nope")
		for _, s := range []string{
			"oci:" + fx.dir + ":nosuchtag",
			"oci:" + missingDir + ":v1",
			"oci-archive:" + missingDir + ".tar:v1",
			"docker-archive:" + missingDir + ".tar",
		} {
			ref, err := ParseRef(s)
			if err == nil {
				_, err = f.Open(context.Background(), ref)
			}
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", s, err)
				continue
			}
			if !strings.Contains(err.Error(), missingDir) && !strings.Contains(err.Error(), "nosuchtag") {
				t.Errorf("%s: error does not name the ref: %v", s, err)
			}
			t.Logf("%s: %v", s, err)
		}
	})
	t.Run("policy reject", func(t *testing.T) {
		policy := filepath.Join(t.TempDir(), "policy.json")
		os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644)
		rf := testFetcher(t, Options{PolicyPath: policy})
		_, err := rf.Open(context.Background(), mustParse(t, "oci:"+fx.dir+":v1"))
		if !errors.Is(err, ErrPolicyDenied) {
			t.Errorf("err %v, want ErrPolicyDenied", err)
		}
		// A policy that rejects everything but oci: lets it through.
		os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[{"type":"insecureAcceptAnything"}]}}}`), 0o644)
		src, err := rf.Open(context.Background(), mustParse(t, "oci:"+fx.dir+":v1"))
		if err != nil {
			t.Fatalf("allowed by transport scope: %v", err)
		}
		src.Close()
		// A missing explicit policy file is an error, not "accept all".
		mf := testFetcher(t, Options{PolicyPath: policy + ".missing"})
		if _, err := mf.Open(context.Background(), mustParse(t, "oci:"+fx.dir+":v1")); err == nil {
			t.Errorf("missing PolicyPath accepted")
		}
	})
}

// TestRegistry runs against a real docker-registry on loopback.
func TestRegistry(t *testing.T) {
	reg := startRegistry(t, "")
	fx := buildFixture(t)
	host := reg.host
	pushImage(t, host, "test/img", "v1", fx.single)
	pushImage(t, host, "test/multi", "", fx.native)
	pushImage(t, host, "test/multi", "", fx.other)
	pushManifest(t, host, "test/multi", "v1", imgspecv1.MediaTypeImageIndex, fx.multiBlob)

	f := testFetcher(t, Options{InsecureRegistries: []string{host}, UserAgent: "taproot-test"})
	base := "docker://" + host

	t.Run("tag", func(t *testing.T) {
		src := mustOpen(t, f, base+"/test/img:v1")
		if r := src.Image().Ref; r.Kind != Docker || r.Canonical != base+"/test/img:v1" || r.Pinned {
			t.Errorf("ref %+v", r)
		}
		checkSingle(t, src, fx.single)
	})
	t.Run("#tag", func(t *testing.T) {
		checkSingle(t, mustOpen(t, f, base+"/test/img#v1"), fx.single)
	})
	t.Run("digest", func(t *testing.T) {
		src := mustOpen(t, f, base+"/test/img@"+fx.single.manifestDigest.String())
		if !src.Image().Ref.Pinned {
			t.Errorf("not pinned")
		}
		checkSingle(t, src, fx.single)
	})
	t.Run("insecure entry with scheme", func(t *testing.T) {
		g := testFetcher(t, Options{InsecureRegistries: []string{"http://" + host + "/"}})
		mustOpen(t, g, base+"/test/img:v1")
	})
	t.Run("index picks this platform", func(t *testing.T) {
		src := mustOpen(t, f, base+"/test/multi:v1")
		img := src.Image()
		if img.ListDigest != fx.multiDesc.Digest || img.ManifestDigest != fx.native.manifestDigest || !envHas(img.Config.Config.Env, "ARCH=native") {
			t.Errorf("list %s manifest %s env %v", img.ListDigest, img.ManifestDigest, img.Config.Config.Env)
		}
		checkBlobs(t, src)
		// Pinned to the index digest.
		src = mustOpen(t, f, base+"/test/multi@"+fx.multiDesc.Digest.String())
		if img := src.Image(); img.ManifestDigest != fx.native.manifestDigest {
			t.Errorf("by index digest: manifest %s", img.ManifestDigest)
		}
		// Another platform on request.
		g := testFetcher(t, Options{InsecureRegistries: []string{host}, OS: "linux", Arch: otherArch()})
		src = mustOpen(t, g, base+"/test/multi:v1")
		if img := src.Image(); img.ManifestDigest != fx.other.manifestDigest {
			t.Errorf("other arch: manifest %s", img.ManifestDigest)
		}
		checkBlobs(t, src)
	})
	t.Run("unknown tag", func(t *testing.T) {
		ref := base + "/test/img:nope"
		_, err := f.Open(context.Background(), mustParse(t, ref))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
		if want := "fetch " + ref + ": image not found: "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q does not start with %q", err, want)
		}
		t.Log(err)
	})
	t.Run("unknown repo", func(t *testing.T) {
		_, err := f.Open(context.Background(), mustParse(t, base+"/no/such:1"))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
		t.Log(err)
	})
	t.Run("unknown digest", func(t *testing.T) {
		_, err := f.Open(context.Background(), mustParse(t, base+"/test/img@"+digest.FromString("x").String()))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
	})
	t.Run("plain http without insecure", func(t *testing.T) {
		g := testFetcher(t, Options{})
		_, err := g.Open(context.Background(), mustParse(t, base+"/test/img:v1"))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "--insecure-registry "+host) {
			t.Fatalf("err %v, want ErrUnreachable with a hint", err)
		}
		t.Log(err)
	})
	t.Run("policy reject", func(t *testing.T) {
		policy := filepath.Join(t.TempDir(), "policy.json")
		os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"`+host+`/test":[{"type":"reject"}]}}}`), 0o644)
		g := testFetcher(t, Options{InsecureRegistries: []string{host}, PolicyPath: policy})
		_, err := g.Open(context.Background(), mustParse(t, base+"/test/img:v1"))
		if !errors.Is(err, ErrPolicyDenied) {
			t.Fatalf("err %v, want ErrPolicyDenied", err)
		}
		t.Log(err)
	})
	t.Run("closed source", func(t *testing.T) {
		src := mustOpen(t, f, base+"/test/img:v1")
		src.Close()
		if _, err := src.OpenLayer(context.Background(), 0); err == nil {
			t.Errorf("OpenLayer after Close succeeded")
		}
	})
}

func TestUnreachableRegistry(t *testing.T) {
	port := freePort(t) // nothing listens there now
	host := fmt.Sprintf("127.0.0.1:%d", port)
	ref := "docker://" + host + "/repo:1"
	for _, insecure := range []bool{false, true} {
		o := Options{}
		if insecure {
			o.InsecureRegistries = []string{host}
		}
		f := testFetcher(t, o)
		start := time.Now()
		_, err := f.Open(context.Background(), mustParse(t, ref))
		took := time.Since(start)
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("err %v, want ErrUnreachable", err)
		}
		if !containsAll(err.Error(), "fetch "+ref, host, "connection refused") || strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one clear line naming the registry: %q", err)
		}
		if took > 10*time.Second {
			t.Errorf("took %s", took)
		}
		t.Logf("insecure=%v after %s: %v", insecure, took.Round(time.Millisecond), err)
	}
	// No retries: immediate.
	f := testFetcher(t, Options{Retries: -1})
	start := time.Now()
	if _, err := f.Open(context.Background(), mustParse(t, ref)); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("no-retry open: %v after %s", err, time.Since(start))
	}
}

// TestErrorClasses checks the mapping of errors that the tests cannot make
// for real here (no DNS lookups leave this machine in tests).
func TestErrorClasses(t *testing.T) {
	dnsErr := fmt.Errorf("pinging container registry no-such-host.invalid: %w",
		&url.Error{Op: "Get", URL: "https://no-such-host.invalid/v2/", Err: &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "no-such-host.invalid", IsNotFound: true}}})
	if classify(dnsErr) != ErrUnreachable || retryable(dnsErr) {
		t.Errorf("DNS not found: class %v retryable %v", classify(dnsErr), retryable(dnsErr))
	}
	refused := fmt.Errorf("x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if classify(refused) != ErrUnreachable || !retryable(refused) {
		t.Errorf("refused: class %v retryable %v", classify(refused), retryable(refused))
	}
	e := wrapErr("fetch", "docker://h/r:1", dnsErr)
	if !errors.Is(e, ErrUnreachable) || !strings.HasPrefix(e.Error(), "fetch docker://h/r:1: registry unreachable: pinging container registry no-such-host.invalid") {
		t.Errorf("wrapped: %v", e)
	}
	// A missing registries.conf is a plain error, not "image not found".
	f := New(Options{RegistriesConfPath: "/nonexistent/registries.conf", Retries: -1})
	_, err := f.Open(context.Background(), mustParse(t, "docker://127.0.0.1:1/x:1"))
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/nonexistent/registries.conf") {
		t.Errorf("missing registries.conf: %v", err)
	}
	// A sentinel already in the chain is not repeated.
	e = wrapErr("fetch", "oci:/x", fmt.Errorf("%w: no image for riscv64", ErrNotFound))
	if strings.Count(e.Error(), "image not found") != 1 {
		t.Errorf("repeated sentinel: %v", e)
	}
}

// flakyProxy forwards to a registry but answers 503 to the first `fail`
// requests whose path contains match.
type flakyProxy struct {
	proxy *httputil.ReverseProxy
	match string
	fail  int32
	seen  atomic.Int32
	hung  chan struct{} // if non-nil, matching requests block until closed
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, p.match) {
		if p.hung != nil {
			select {
			case <-p.hung:
			case <-r.Context().Done():
			}
			return
		}
		if p.seen.Add(1) <= p.fail {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

func TestRetryAndTimeout(t *testing.T) {
	reg := startRegistry(t, "")
	fx := buildFixture(t)
	pushImage(t, reg.host, "test/img", "v1", fx.single)
	target, _ := url.Parse("http://" + reg.host)

	newProxy := func(match string, fail int32) (*flakyProxy, string) {
		p := &flakyProxy{proxy: httputil.NewSingleHostReverseProxy(target), match: match, fail: fail}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		return p, strings.TrimPrefix(srv.URL, "http://")
	}

	t.Run("manifest 503 then ok", func(t *testing.T) {
		p, host := newProxy("/manifests/", 2)
		f := testFetcher(t, Options{InsecureRegistries: []string{host}, RetryDelay: 10 * time.Millisecond})
		src := mustOpen(t, f, "docker://"+host+"/test/img:v1")
		checkSingle(t, src, fx.single)
		if n := p.seen.Load(); n < 3 {
			t.Errorf("proxy saw %d manifest requests, want ≥ 3", n)
		}
	})
	t.Run("manifest 503 without retries", func(t *testing.T) {
		_, host := newProxy("/manifests/", 100)
		f := testFetcher(t, Options{InsecureRegistries: []string{host}, Retries: -1})
		_, err := f.Open(context.Background(), mustParse(t, "docker://"+host+"/test/img:v1"))
		if err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("err %v, want a 503", err)
		}
		t.Log(err)
	})
	t.Run("blob 503 then ok", func(t *testing.T) {
		p, host := newProxy("/blobs/"+fx.single.layers[1].digest.String(), 2)
		f := testFetcher(t, Options{InsecureRegistries: []string{host}, RetryDelay: 10 * time.Millisecond})
		src := mustOpen(t, f, "docker://"+host+"/test/img:v1")
		checkSingle(t, src, fx.single)
		if n := p.seen.Load(); n < 3 {
			t.Errorf("proxy saw %d blob requests, want ≥ 3", n)
		}
	})
	t.Run("blob stalls mid-body", func(t *testing.T) {
		blob := fx.single.layers[0]
		release := make(chan struct{})
		defer close(release)
		stall := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/blobs/"+blob.digest.String()) {
				httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(blob.blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(blob.blob[:len(blob.blob)/2])
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		srv := httptest.NewServer(stall)
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		f := testFetcher(t, Options{InsecureRegistries: []string{host}, Timeout: time.Second, Retries: -1})
		src := mustOpen(t, f, "docker://"+host+"/test/img:v1")
		rc, err := src.OpenLayer(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		start := time.Now()
		n, err := io.Copy(io.Discard, rc)
		if err == nil || !strings.Contains(err.Error(), "stalled") || !errors.Is(err, ErrUnreachable) {
			t.Fatalf("read %d bytes, err %v; want a stall error", n, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %s", took)
		}
		t.Logf("after %d bytes: %v", n, err)
	})
	t.Run("manifest hangs", func(t *testing.T) {
		p, host := newProxy("/manifests/", 0)
		p.hung = make(chan struct{})
		defer close(p.hung)
		f := testFetcher(t, Options{InsecureRegistries: []string{host}, Timeout: time.Second})
		start := time.Now()
		_, err := f.Open(context.Background(), mustParse(t, "docker://"+host+"/test/img:v1"))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "did not answer within 1s") {
			t.Fatalf("err %v, want a timeout", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s", took)
		}
		t.Log(err)
	})
}

// TestAuth uses the registry's htpasswd auth.
func TestAuth(t *testing.T) {
	if _, err := os.Stat("/usr/bin/docker-registry"); err != nil {
		t.Skip("docker-registry not installed (apt-get install docker-registry)")
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "alice", "s3cret")), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t, "auth:\n  htpasswd:\n    realm: test\n    path: "+htpasswd+"\n")
	fx := buildFixture(t)
	// Push through an authenticating proxy: our push helper is anonymous.
	target, _ := url.Parse("http://" + reg.host)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // upload Locations must point back at the proxy
		r.Out.SetBasicAuth("alice", "s3cret")
	}}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	pushImage(t, strings.TrimPrefix(srv.URL, "http://"), "test/img", "v1", fx.single)

	ref := "docker://" + reg.host + "/test/img:v1"
	authFile := filepath.Join(t.TempDir(), "auth.json") // empty: no credentials from the host
	os.WriteFile(authFile, []byte(`{"auths":{}}`), 0o600)

	anon := testFetcher(t, Options{InsecureRegistries: []string{reg.host}, AuthFilePath: authFile})
	_, err := anon.Open(context.Background(), mustParse(t, ref))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("anonymous: %v, want ErrUnauthorized", err)
	}
	t.Log(err)
	wrong := testFetcher(t, Options{InsecureRegistries: []string{reg.host}, AuthFilePath: authFile, Username: "alice", Password: "nope"})
	if _, err := wrong.Open(context.Background(), mustParse(t, ref)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong password: %v, want ErrUnauthorized", err)
	}
	good := testFetcher(t, Options{InsecureRegistries: []string{reg.host}, AuthFilePath: authFile, Username: "alice", Password: "s3cret"})
	checkSingle(t, mustOpen(t, good, ref), fx.single)

	// Credentials from an auth.json.
	os.WriteFile(authFile, []byte(`{"auths":{"`+reg.host+`":{"auth":"YWxpY2U6czNjcmV0"}}}`), 0o600) // alice:s3cret
	fromFile := testFetcher(t, Options{InsecureRegistries: []string{reg.host}, AuthFilePath: authFile})
	checkSingle(t, mustOpen(t, fromFile, ref), fx.single)
}
