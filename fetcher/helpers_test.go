package fetcher

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// ---- layer tars ----

type tarEntry struct {
	name string
	typ  byte // tar.TypeReg if 0
	body string
	mode int64
	link string
}

func layerTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link,
			ModTime: time.Unix(1700000000, 0), Uid: 0, Gid: 0}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress returns data compressed with comp ("gzip", "zstd" or "none")
// and the matching OCI layer media type.
func compress(t *testing.T, data []byte, comp string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	switch comp {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), imgspecv1.MediaTypeImageLayerGzip
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), imgspecv1.MediaTypeImageLayerZstd
	case "none":
		return data, imgspecv1.MediaTypeImageLayer
	}
	t.Fatalf("unknown compression %q", comp)
	return nil, ""
}

// ---- OCI layout written by hand ----

type builtLayer struct {
	blob      []byte
	digest    digest.Digest
	diffID    digest.Digest
	mediaType string
}

type builtImage struct {
	manifest       []byte
	configBlob     []byte
	manifestDigest digest.Digest
	desc           imgspecv1.Descriptor
	config         imgspecv1.Image
	layers         []builtLayer
}

type layout struct {
	dir   string
	index imgspecv1.Index
}

func newLayout(t *testing.T, dir string) *layout {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &layout{dir: dir, index: imgspecv1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}}
	writeJSON(t, filepath.Join(dir, "oci-layout"), imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
	l.save(t)
	return l
}

func (l *layout) putBlob(t *testing.T, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

type layerSpec struct {
	entries []tarEntry
	comp    string
}

// addImage writes the blobs of a one-platform image and returns it; it is
// not tagged (see tag).
func (l *layout) addImage(t *testing.T, arch string, env, cmd []string, layers ...layerSpec) builtImage {
	t.Helper()
	var img builtImage
	cfg := imgspecv1.Image{
		Platform: imgspecv1.Platform{OS: "linux", Architecture: arch},
		Config:   imgspecv1.ImageConfig{Env: env, Cmd: cmd, WorkingDir: "/w", User: "1000:1000"},
		RootFS:   imgspecv1.RootFS{Type: "layers"},
	}
	m := imgspecv1.Manifest{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest}
	for _, ls := range layers {
		raw := layerTar(t, ls.entries)
		blob, mt := compress(t, raw, ls.comp)
		bl := builtLayer{blob: blob, digest: l.putBlob(t, blob), diffID: digest.FromBytes(raw), mediaType: mt}
		img.layers = append(img.layers, bl)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, bl.diffID)
		m.Layers = append(m.Layers, imgspecv1.Descriptor{MediaType: mt, Digest: bl.digest, Size: int64(len(blob))})
	}
	cfgBlob := mustJSON(t, cfg)
	m.Config = imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: l.putBlob(t, cfgBlob), Size: int64(len(cfgBlob))}
	mBlob := mustJSON(t, m)
	img.manifestDigest = l.putBlob(t, mBlob)
	img.manifest = mBlob
	img.configBlob = cfgBlob
	img.config = cfg
	img.desc = imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: img.manifestDigest, Size: int64(len(mBlob)),
		Platform: &imgspecv1.Platform{OS: "linux", Architecture: arch}}
	return img
}

// addIndex writes a nested OCI index over the given images.
func (l *layout) addIndex(t *testing.T, imgs ...builtImage) (imgspecv1.Descriptor, []byte) {
	t.Helper()
	idx := imgspecv1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	for _, img := range imgs {
		idx.Manifests = append(idx.Manifests, img.desc)
	}
	b := mustJSON(t, idx)
	return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageIndex, Digest: l.putBlob(t, b), Size: int64(len(b))}, b
}

func (l *layout) tag(t *testing.T, desc imgspecv1.Descriptor, name string) {
	t.Helper()
	desc.Platform = nil
	desc.Annotations = map[string]string{imgspecv1.AnnotationRefName: name}
	l.index.Manifests = append(l.index.Manifests, desc)
	l.save(t)
}

func (l *layout) save(t *testing.T) {
	t.Helper()
	writeJSON(t, filepath.Join(l.dir, "index.json"), l.index)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.WriteFile(path, mustJSON(t, v), 0o644); err != nil {
		t.Fatal(err)
	}
}

// otherArch is an architecture that is not this machine's.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// ---- pushing to a registry by hand (distribution API) ----

// pushBlob uploads b to repo on host (monolithic upload).
func pushBlob(t *testing.T, host, repo string, b []byte) {
	t.Helper()
	d := digest.FromBytes(b)
	resp, err := http.Head("http://" + host + "/v2/" + repo + "/blobs/" + d.String())
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return
		}
	}
	resp, err = http.Post("http://"+host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload to %s: %s", repo, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s to %s: %s %s", d, repo, resp.Status, body)
	}
}

// pushManifest puts a manifest (or index) under ref (tag or digest).
func pushManifest(t *testing.T, host, repo, ref, mediaType string, b []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://"+host+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest %s:%s: %s %s", repo, ref, resp.Status, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != digest.FromBytes(b).String() {
		t.Fatalf("registry digest %s, want %s", got, digest.FromBytes(b))
	}
}

// pushImage uploads img's blobs and manifest and tags it (tag "" = by digest only).
func pushImage(t *testing.T, host, repo, tag string, img builtImage) {
	t.Helper()
	for _, l := range img.layers {
		pushBlob(t, host, repo, l.blob)
	}
	pushBlob(t, host, repo, img.configBlob)
	ref := tag
	if ref == "" {
		ref = img.manifestDigest.String()
	}
	pushManifest(t, host, repo, ref, imgspecv1.MediaTypeImageManifest, img.manifest)
}

// ---- archives ----

// tarDir writes a tar of dir's regular files and dirs to file (an
// oci-archive is a tar of an OCI layout).
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(out)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = out.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writeDockerArchive writes img (its layers decompressed) as a docker-archive
// through containers/image's docker-archive destination, tagged tag.
func writeDockerArchive(t *testing.T, img builtImage, file, tag string) builtImage {
	t.Helper()
	ref, err := ParseRef("docker-archive:" + file + ":" + tag)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	ctx := context.Background()
	dest, err := ref.imgRef.NewImageDestination(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	out := builtImage{config: img.config}
	m := manifest.Schema2{SchemaVersion: 2, MediaType: manifest.DockerV2Schema2MediaType}
	for _, l := range img.layers {
		raw := decompress(t, l.blob, l.mediaType)
		d := digest.FromBytes(raw)
		if _, err := dest.PutBlob(ctx, bytes.NewReader(raw), types.BlobInfo{Digest: d, Size: int64(len(raw))}, none.NoCache, false); err != nil {
			t.Fatal(err)
		}
		m.LayersDescriptors = append(m.LayersDescriptors, manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2LayerMediaType, Digest: d, Size: int64(len(raw))})
		out.layers = append(out.layers, builtLayer{blob: raw, digest: d, diffID: l.diffID, mediaType: manifest.DockerV2Schema2LayerMediaType})
	}
	cd := digest.FromBytes(img.configBlob)
	if _, err := dest.PutBlob(ctx, bytes.NewReader(img.configBlob), types.BlobInfo{Digest: cd, Size: int64(len(img.configBlob))}, none.NoCache, true); err != nil {
		t.Fatal(err)
	}
	m.ConfigDescriptor = manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2ConfigMediaType, Digest: cd, Size: int64(len(img.configBlob))}
	mb := mustJSON(t, m)
	if err := dest.PutManifest(ctx, mb, nil); err != nil {
		t.Fatal(err)
	}
	if err := dest.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func decompress(t *testing.T, b []byte, mediaType string) []byte {
	t.Helper()
	var r io.Reader
	switch mediaType {
	case imgspecv1.MediaTypeImageLayerGzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case imgspecv1.MediaTypeImageLayerZstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// emptyRegistriesConf writes a registries.conf with nothing in it, so that
// the host's configuration does not leak into tests.
func emptyRegistriesConf(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(p, []byte("# empty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- a real registry (Debian's docker-registry) ----

type registry struct {
	host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRegistry starts docker-registry on a free loopback port with its
// storage under a temp dir and stops it when the test ends. extraYAML is
// appended to the config (e.g. an auth section). It skips the test if the
// binary is missing.
func startRegistry(t *testing.T, extraYAML string) *registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed (apt-get install docker-registry): skipping registry tests")
	}
	dir := t.TempDir()
	var r *registry
	for try := 0; try < 3; try++ {
		port := freePort(t)
		host := fmt.Sprintf("127.0.0.1:%d", port)
		conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: taproot-test
%s`, filepath.Join(dir, "data"), host, extraYAML)
		confPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		log := &bytes.Buffer{}
		cmd := exec.Command(bin, "serve", confPath)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r = &registry{host: host, cmd: cmd, log: log}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if waitRegistry(host, done) {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-done
			})
			return r
		}
		cmd.Process.Kill()
		<-done
		t.Logf("registry on %s did not come up: %s", host, log.String())
	}
	t.Fatal("could not start docker-registry")
	return nil
}

// waitRegistry polls /v2/ until the registry answers (200 or 401).
func waitRegistry(host string, exited <-chan error) bool {
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := client.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || resp.StatusCode == 401 {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// ---- checks ----

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readAllLayers opens every layer of src at once and reads them in
// parallel, returning their bytes.
func readAllLayers(t *testing.T, src *Source) [][]byte {
	t.Helper()
	n := len(src.Image().Layers)
	out := make([][]byte, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			rc, err := src.OpenLayer(context.Background(), i)
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			out[i], errs[i] = io.ReadAll(rc)
		}(i)
	}
	for i := 0; i < n; i++ {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	return out
}

// checkBlobs checks that every layer's bytes hash to its BlobDigest and
// that sizes match.
func checkBlobs(t *testing.T, src *Source) [][]byte {
	t.Helper()
	img := src.Image()
	blobs := readAllLayers(t, src)
	for i, l := range img.Layers {
		if got := "sha256:" + sha256Hex(blobs[i]); got != l.BlobDigest.String() {
			t.Errorf("layer %d: bytes hash to %s, BlobDigest is %s", i, got, l.BlobDigest)
		}
		if l.Size != -1 && l.Size != int64(len(blobs[i])) {
			t.Errorf("layer %d: Size %d, read %d bytes", i, l.Size, len(blobs[i]))
		}
	}
	return blobs
}

func envHas(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// htpasswdLine returns "user:bcrypt-hash\n" for the registry's htpasswd auth.
func htpasswdLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h) + "\n"
}
