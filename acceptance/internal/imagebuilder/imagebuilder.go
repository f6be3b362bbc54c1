// Package imagebuilder builds OCI images for the acceptance tests from
// declarative lists of layer entries, writes them as OCI layouts and pushes
// them to a registry with containers/image.
//
// Layer tars are written exactly as listed: no parent directories are added,
// names carry no leading "/" or "./", and timestamps are fixed so the same
// entries always give the same bytes (and so the same digests).
package imagebuilder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultMTime is the modification time of entries that set none.
var DefaultMTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// Kind is the type of a layer entry.
type Kind int

const (
	KindDir Kind = iota
	KindFile
	KindSymlink
	KindHardlink
	KindFifo
)

// Entry is one tar entry of a layer.
type Entry struct {
	Kind     Kind
	Path     string // inside the image, with or without leading "/"
	Content  []byte // KindFile
	Linkname string // KindSymlink: target as written; KindHardlink: path of the target in this layer
	Mode     int64  // permission bits incl. setuid/setgid/sticky; 0 means the kind's default
	UID, GID int
	MTime    time.Time         // zero means DefaultMTime
	Xattrs   map[string]string // written as PAX SCHILY.xattr.<name>
}

// Dir is a directory entry (mode 0755 unless changed).
func Dir(p string) Entry { return Entry{Kind: KindDir, Path: p} }

// File is a regular file (mode 0644 unless changed).
func File(p, content string) Entry { return Entry{Kind: KindFile, Path: p, Content: []byte(content)} }

// Symlink is a symbolic link at p pointing to target.
func Symlink(p, target string) Entry { return Entry{Kind: KindSymlink, Path: p, Linkname: target} }

// Hardlink is a hard link at p to the entry target of the same layer.
func Hardlink(p, target string) Entry { return Entry{Kind: KindHardlink, Path: p, Linkname: target} }

// Fifo is a named pipe.
func Fifo(p string) Entry { return Entry{Kind: KindFifo, Path: p} }

// Whiteout deletes p from the layers below: an empty file named .wh.<base>.
func Whiteout(p string) Entry {
	dir, base := path.Split(strings.TrimPrefix(p, "/"))
	return Entry{Kind: KindFile, Path: dir + ".wh." + base}
}

// Opaque hides everything the layers below have in dir: .wh..wh..opq.
func Opaque(dir string) Entry {
	return Entry{Kind: KindFile, Path: path.Join(strings.TrimPrefix(dir, "/"), ".wh..wh..opq")}
}

// WithMode returns e with permission bits m (e.g. 0o4755, 0o1777).
func (e Entry) WithMode(m int64) Entry { e.Mode = m; return e }

// WithOwner returns e owned by uid:gid (container IDs).
func (e Entry) WithOwner(uid, gid int) Entry { e.UID, e.GID = uid, gid; return e }

// WithMTime returns e with modification time t.
func (e Entry) WithMTime(t time.Time) Entry { e.MTime = t; return e }

// WithXattr returns e with the extended attribute name=value (e.g. "user.foo").
func (e Entry) WithXattr(name, value string) Entry {
	x := make(map[string]string, len(e.Xattrs)+1)
	for k, v := range e.Xattrs {
		x[k] = v
	}
	x[name] = value
	e.Xattrs = x
	return e
}

// Compression of a layer blob.
type Compression int

const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	default:
		return "none"
	}
}

func (c Compression) mediaType() string {
	switch c {
	case Gzip:
		return v1.MediaTypeImageLayerGzip
	case Zstd:
		return v1.MediaTypeImageLayerZstd
	default:
		return v1.MediaTypeImageLayer
	}
}

// Layer is a list of entries and how to compress them.
type Layer struct {
	Entries     []Entry
	Compression Compression
}

// Tar returns the uncompressed tar stream of the layer.
func (l Layer) Tar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range l.Entries {
		h, err := e.header()
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", e.Path, err)
		}
		if e.Kind == KindFile && len(e.Content) > 0 {
			if _, err := tw.Write(e.Content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (e Entry) header() (*tar.Header, error) {
	name := strings.TrimPrefix(e.Path, "/")
	if name == "" {
		return nil, fmt.Errorf("entry with empty path")
	}
	mt := e.MTime
	if mt.IsZero() {
		mt = DefaultMTime
	}
	h := &tar.Header{Name: name, Uid: e.UID, Gid: e.GID, ModTime: mt, Format: tar.FormatPAX}
	mode := e.Mode
	switch e.Kind {
	case KindDir:
		h.Typeflag = tar.TypeDir
		h.Name = strings.TrimSuffix(name, "/") + "/"
		if mode == 0 {
			mode = 0o755
		}
	case KindFile:
		h.Typeflag = tar.TypeReg
		h.Size = int64(len(e.Content))
		if mode == 0 {
			mode = 0o644
		}
	case KindSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.Linkname
		if mode == 0 {
			mode = 0o777
		}
	case KindHardlink:
		h.Typeflag = tar.TypeLink
		h.Linkname = strings.TrimPrefix(e.Linkname, "/")
		if mode == 0 {
			mode = 0o644
		}
	case KindFifo:
		h.Typeflag = tar.TypeFifo
		if mode == 0 {
			mode = 0o644
		}
	default:
		return nil, fmt.Errorf("entry %s: unknown kind %d", e.Path, e.Kind)
	}
	h.Mode = mode
	if len(e.Xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h, nil
}

// Blob is a built layer: its compressed bytes and identities.
type Blob struct {
	Data      []byte
	Digest    digest.Digest // of Data
	DiffID    digest.Digest // of the uncompressed tar
	MediaType string
}

// Build tars and compresses the layer.
func (l Layer) Build() (Blob, error) {
	raw, err := l.Tar()
	if err != nil {
		return Blob{}, err
	}
	data, err := compress(raw, l.Compression)
	if err != nil {
		return Blob{}, err
	}
	return Blob{
		Data:      data,
		Digest:    digest.FromBytes(data),
		DiffID:    digest.FromBytes(raw),
		MediaType: l.Compression.mediaType(),
	}, nil
}

func compress(raw []byte, c Compression) ([]byte, error) {
	var buf bytes.Buffer
	switch c {
	case Uncompressed:
		return raw, nil
	case Gzip:
		zw := kgzip.NewWriter(&buf)
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case Zstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown compression %d", c)
	}
	return buf.Bytes(), nil
}

// Config is the part of the image config that tests set.
type Config struct {
	Env        []string
	WorkingDir string
	User       string
	Entrypoint []string
	Cmd        []string
	Labels     map[string]string
}

// Image is a list of layers (lowest first) and a config.
type Image struct {
	Layers []Layer
	Config Config
}

// Built is what WriteLayout wrote.
type Built struct {
	Manifest       v1.Manifest
	ManifestBytes  []byte
	ManifestDigest digest.Digest
	ConfigBytes    []byte
	ConfigDigest   digest.Digest
	Layers         []Blob // lowest first
}

// DiffIDs returns the layers' diffIDs, lowest first.
func (b Built) DiffIDs() []digest.Digest {
	var ids []digest.Digest
	for _, l := range b.Layers {
		ids = append(ids, l.DiffID)
	}
	return ids
}

// WriteLayout writes img as an OCI image layout in dir (created if needed)
// under the tag; an existing layout in dir gains the tag.
func WriteLayout(dir, tag string, img Image) (Built, error) {
	var b Built
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return b, err
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return b, err
	}
	var diffIDs []digest.Digest
	for i, l := range img.Layers {
		blob, err := l.buildCached()
		if err != nil {
			return b, fmt.Errorf("layer %d: %w", i, err)
		}
		if err := writeBlob(dir, blob.Digest, blob.Data); err != nil {
			return b, err
		}
		b.Layers = append(b.Layers, blob)
		diffIDs = append(diffIDs, blob.DiffID)
		b.Manifest.Layers = append(b.Manifest.Layers, v1.Descriptor{
			MediaType: blob.MediaType, Digest: blob.Digest, Size: int64(len(blob.Data)),
		})
	}
	created := DefaultMTime
	cfg := v1.Image{
		Created:  &created,
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		Config: v1.ImageConfig{
			Env: img.Config.Env, WorkingDir: img.Config.WorkingDir, User: img.Config.User,
			Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd, Labels: img.Config.Labels,
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return b, err
	}
	b.ConfigBytes = cfgBytes
	b.ConfigDigest = digest.FromBytes(cfgBytes)
	if err := writeBlob(dir, b.ConfigDigest, cfgBytes); err != nil {
		return b, err
	}
	b.Manifest.Versioned = specs.Versioned{SchemaVersion: 2}
	b.Manifest.MediaType = v1.MediaTypeImageManifest
	b.Manifest.Config = v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: b.ConfigDigest, Size: int64(len(cfgBytes))}
	manBytes, err := json.Marshal(b.Manifest)
	if err != nil {
		return b, err
	}
	b.ManifestBytes = manBytes
	b.ManifestDigest = digest.FromBytes(manBytes)
	if err := writeBlob(dir, b.ManifestDigest, manBytes); err != nil {
		return b, err
	}
	return b, addToIndex(dir, tag, v1.Descriptor{
		MediaType: v1.MediaTypeImageManifest, Digest: b.ManifestDigest, Size: int64(len(manBytes)),
	})
}

func writeBlob(dir string, d digest.Digest, data []byte) error {
	return os.WriteFile(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()), data, 0o644)
}

func addToIndex(dir, tag string, desc v1.Descriptor) error {
	p := filepath.Join(dir, v1.ImageIndexFile)
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	if data, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	var kept []v1.Descriptor
	for _, m := range idx.Manifests {
		if m.Annotations[v1.AnnotationRefName] != tag {
			kept = append(kept, m)
		}
	}
	desc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	idx.Manifests = append(kept, desc)
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// Layers are built again for every image that uses them; the busybox layer
// (about 1 MB) is in every test image, so built blobs are cached by content.
var (
	cacheMu sync.Mutex
	cache   = map[string]Blob{}
)

func (l Layer) buildCached() (Blob, error) {
	raw, err := l.Tar()
	if err != nil {
		return Blob{}, err
	}
	sum := sha256.Sum256(raw)
	key := hex.EncodeToString(sum[:]) + "/" + l.Compression.String()
	cacheMu.Lock()
	b, ok := cache[key]
	cacheMu.Unlock()
	if ok {
		return b, nil
	}
	b, err = l.Build()
	if err != nil {
		return Blob{}, err
	}
	cacheMu.Lock()
	cache[key] = b
	cacheMu.Unlock()
	return b, nil
}

// Applets busybox is linked as in BusyboxLayer when `busybox --list` cannot
// be asked.
var fallbackApplets = []string{
	"sh", "ash", "ls", "cat", "id", "echo", "stat", "readlink", "test", "[",
	"mkdir", "rm", "touch", "wc", "sort", "head", "tail", "grep", "find", "chmod",
	"chown", "ln", "mv", "cp", "sleep", "true", "false", "env", "printf", "pwd",
	"mknod", "uname", "hostname", "df", "du", "sha256sum", "md5sum", "dd",
}

// BusyboxLayer is a base layer with the static busybox at /bin/busybox, a
// symlink /bin/<applet> → busybox for each applet, the usual top-level dirs
// and an /etc/passwd and /etc/group naming root and user 1000.
func BusyboxLayer(busyboxPath string, c Compression) (Layer, error) {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return Layer{}, err
	}
	applets := fallbackApplets
	if out, err := exec.Command(busyboxPath, "--list").Output(); err == nil {
		applets = strings.Fields(string(out))
	}
	l := Layer{Compression: c}
	l.Entries = append(l.Entries,
		Dir("bin"), Dir("dev"), Dir("etc"), Dir("proc"), Dir("sys"),
		Dir("root").WithMode(0o700), Dir("tmp").WithMode(0o1777),
		Dir("usr"), Dir("usr/bin"), Dir("var"),
		Entry{Kind: KindFile, Path: "bin/busybox", Content: bin, Mode: 0o755},
		File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		File("etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"),
	)
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		l.Entries = append(l.Entries, Symlink("bin/"+a, "busybox"))
	}
	return l, nil
}
