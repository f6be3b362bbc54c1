package fetcher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containers/image/v5/docker"
	dockerarchive "github.com/containers/image/v5/docker/archive"
	"github.com/containers/image/v5/docker/reference"
	ociarchive "github.com/containers/image/v5/oci/archive"
	ocilayout "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
)

// Kind says where an image comes from.
type Kind int

// The kinds of reference ParseRef understands.
const (
	Docker        Kind = iota + 1 // docker://host/repo:tag, docker:///repo (Docker Hub)
	OCILayout                     // oci:DIR[:tag]
	OCIArchive                    // oci-archive:FILE[:tag]
	DockerArchive                 // docker-archive:FILE[:ref]
	LocalDir                      // a plain path to a rootfs directory
	LocalTarball                  // a plain path to a (compressed) tar of a rootfs
)

func (k Kind) String() string {
	switch k {
	case Docker:
		return "docker"
	case OCILayout:
		return "oci"
	case OCIArchive:
		return "oci-archive"
	case DockerArchive:
		return "docker-archive"
	case LocalDir:
		return "local-dir"
	case LocalTarball:
		return "local-tarball"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Reference is a parsed image reference.
type Reference struct {
	Kind Kind
	// Raw is the string given to ParseRef.
	Raw string
	// Canonical is the fully spelled-out form: docker://docker.io/library/busybox:1.36,
	// docker://127.0.0.1:5000/repo@sha256:…, oci:/abs/dir:tag,
	// oci-archive:/abs/file, docker-archive:/abs/file, or the absolute path of
	// a local dir or tarball.
	Canonical string
	// Pinned is true for a docker reference by digest.
	Pinned bool
	// Digest is the pinned digest ("" unless Pinned).
	Digest digest.Digest
	// Registry is the registry host[:port] of a docker reference as written
	// ("docker.io" for Docker Hub); "" for other kinds.
	Registry string
	// Path is the absolute path of the OCI layout dir, archive file, local
	// dir or local tarball; "" for docker references.
	Path string

	imgRef types.ImageReference // nil for LocalDir and LocalTarball
}

func (r Reference) String() string {
	if r.Canonical != "" {
		return r.Canonical
	}
	return r.Raw
}

// Transports we deliberately do not support; a ref starting with one of
// these is a bad reference, not a local path.
var unsupportedTransports = []string{
	"containers-storage:", "dir:", "docker-daemon:", "sif:", "tarball:",
	"ostree:", "http:", "https:", "oci-layout:", "registry:",
}

// ParseRef parses an image reference. Accepted forms:
//
//	docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]   a registry
//	docker:///REPO[:TAG]    Docker Hub, GrootFS style (library/ added for one-part names)
//	docker://…/REPO#TAG     GrootFS style tag (docker:///busybox#1.36)
//	oci:DIR[:TAG|:@INDEX]   an OCI image layout directory
//	oci-archive:FILE[:TAG]  a tar of an OCI layout
//	docker-archive:FILE[:REF|:@INDEX]  a "docker save" tarball
//	PATH, file://PATH       a rootfs directory, or a tar/tar.gz/tar.zst of one
//
// A docker reference without tag or digest means :latest. A reference with
// both a tag and a digest keeps the digest. Local paths are looked at to tell a
// directory from a tarball (by its first bytes, not its name); a path that
// does not exist gives an error wrapping ErrNotFound. Bad syntax, and a
// transport ParseRef does not know ("dokcer://…", unless a file of that name
// exists), give an error wrapping ErrBadReference.
func ParseRef(s string) (Reference, error) {
	r, err := parseRef(s)
	if err != nil {
		err = fileNotFound(err)
		if classify(err) == nil {
			return Reference{}, fmt.Errorf("parse image reference %q: %w: %w", s, ErrBadReference, err)
		}
		return Reference{}, fmt.Errorf("parse image reference %q: %w", s, err)
	}
	r.Raw = s
	return r, nil
}

// fileTransport is a transport whose reference is a local path and an
// optional :tag (or, for docker-archive, :ref or :@index), which
// containers/image parses.
type fileTransport struct {
	prefix   string // "oci:"
	kind     Kind
	names    string // what the path names: "directory", "file"
	imageRef func(string) (types.ImageReference, error)
}

var fileTransports = []fileTransport{
	{"oci:", OCILayout, "directory", ocilayout.ParseReference},
	{"oci-archive:", OCIArchive, "file", ociarchive.ParseReference},
	{"docker-archive:", DockerArchive, "file", dockerarchive.ParseReference},
}

// parse parses rest, the reference after t.prefix.
func (t fileTransport) parse(rest string) (Reference, error) {
	// "oci::tag" (likewise the archives) names no path: containers/image
	// would take the working directory, and the canonical form would not
	// parse.
	if p, _, _ := strings.Cut(rest, ":"); p == "" {
		return Reference{}, fmt.Errorf("%s needs a %s", t.prefix, t.names)
	}
	ir, err := t.imageRef(rest)
	if err != nil {
		return Reference{}, err
	}
	// An oci: reference with no tag reads back as "dir:"; docker-archive's
	// never ends in ":" (its path stops at the first one).
	return Reference{Kind: t.kind, Canonical: t.prefix + strings.TrimSuffix(ir.StringWithinTransport(), ":"), Path: pathOf(rest), imgRef: ir}, nil
}

func parseRef(s string) (Reference, error) {
	if s == "" {
		return Reference{}, ErrBadReference
	}
	if rest, ok := strings.CutPrefix(s, "docker:"); ok {
		return parseDocker(rest)
	}
	for _, t := range fileTransports {
		if rest, ok := strings.CutPrefix(s, t.prefix); ok {
			return t.parse(rest)
		}
	}
	for _, p := range unsupportedTransports {
		if strings.HasPrefix(s, p) {
			return Reference{}, fmt.Errorf("transport %q is not supported (use docker://, oci:, oci-archive:, docker-archive: or a path)", strings.TrimSuffix(p, ":"))
		}
	}
	if err := unknownTransport(s); err != nil {
		return Reference{}, err
	}
	path := s
	if rest, ok := strings.CutPrefix(s, "file://"); ok {
		if !strings.HasPrefix(rest, "/") {
			return Reference{}, errors.New("file:// needs an absolute path (file:///dir)")
		}
		path = rest
	}
	return parseLocal(path)
}

// knownTransports are the prefixes ParseRef takes, for suggestions.
var knownTransports = []string{"docker", "oci", "oci-archive", "docker-archive", "file"}

// unknownTransport returns an error for s that starts like a transport
// ("dokcer://…", "ocl:/dir") none of which ParseRef knows, unless a file of
// that name exists (a relative path may contain ':'). Without it a typo was
// read as a local path and reported as "image not found".
func unknownTransport(s string) error {
	scheme, _, ok := strings.Cut(s, ":")
	if !ok || scheme == "file" || !isScheme(scheme) {
		return nil
	}
	if _, err := os.Lstat(s); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	hint := ""
	for _, k := range knownTransports {
		if editDistance(strings.ToLower(scheme), k) <= 2 {
			sep := ":"
			if k == "docker" || k == "file" {
				sep = "://"
			}
			hint = fmt.Sprintf("; did you mean %s%s?", k, sep)
			break
		}
	}
	return fmt.Errorf("unknown transport %q (use docker://, oci:, oci-archive:, docker-archive: or a path)%s", scheme, hint)
}

// isScheme reports whether s looks like a URL scheme / transport name:
// a letter, then letters, digits, '+', '-' or '.'.
func isScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// editDistance is the Levenshtein distance of two short ASCII strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// pathOf returns the absolute file or directory part of an oci:,
// oci-archive: or docker-archive: reference.
func pathOf(rest string) string {
	p, _, _ := strings.Cut(rest, ":")
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// parseDocker parses what follows "docker:".
func parseDocker(rest string) (Reference, error) {
	name, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return Reference{}, errors.New("docker references start with docker:// (docker://HOST/REPO:TAG or docker:///REPO:TAG)")
	}
	// GrootFS: docker:///repo means Docker Hub.
	name = strings.TrimPrefix(name, "/")
	// GrootFS: repo#tag.
	if base, tag, found := strings.Cut(name, "#"); found {
		if tag == "" || strings.ContainsAny(tag, "#@:/") {
			return Reference{}, fmt.Errorf("bad tag %q after #", tag)
		}
		if _, isTagged := parseNamedForCheck(base); isTagged {
			return Reference{}, errors.New("both :tag and #tag given")
		}
		name = base + ":" + tag
	}
	if name == "" {
		return Reference{}, errors.New("no repository name")
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return Reference{}, err
	}
	// A tag and a digest: the digest decides (containers/image refuses both).
	if c, ok := named.(reference.Canonical); ok {
		if _, tagged := named.(reference.NamedTagged); tagged {
			named, err = reference.WithDigest(reference.TrimNamed(named), c.Digest())
			if err != nil {
				return Reference{}, err
			}
		}
	}
	named = reference.TagNameOnly(named)
	ir, err := docker.NewReference(named)
	if err != nil {
		return Reference{}, err
	}
	r := Reference{
		Kind:      Docker,
		Canonical: "docker://" + named.String(),
		Registry:  reference.Domain(named),
		imgRef:    ir,
	}
	if c, ok := named.(reference.Canonical); ok {
		r.Pinned = true
		r.Digest = c.Digest()
	}
	return r, nil
}

// parseNamedForCheck reports whether name (the part before '#') already
// carries a tag.
func parseNamedForCheck(name string) (reference.Named, bool) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, false
	}
	_, tagged := named.(reference.NamedTagged)
	return named, tagged
}

// parseLocal classifies a filesystem path.
func parseLocal(path string) (Reference, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Reference{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Reference{}, fmt.Errorf("%w: %s does not exist (for a registry image write docker://HOST/REPO:TAG or docker:///REPO:TAG)", ErrNotFound, abs)
		}
		return Reference{}, err
	}
	if fi.IsDir() {
		return Reference{Kind: LocalDir, Canonical: abs, Path: abs}, nil
	}
	if !fi.Mode().IsRegular() {
		return Reference{}, fmt.Errorf("%s is neither a directory nor a regular file", abs)
	}
	comp, err := sniffFile(abs)
	if err != nil {
		return Reference{}, err
	}
	switch comp {
	case compNone, compGzip, compZstd:
	case compBzip2, compXz:
		return Reference{}, fmt.Errorf("%s: bzip2 and xz tarballs are not supported (use plain tar, gzip or zstd)", abs)
	default:
		return Reference{}, fmt.Errorf("%s is not a tar archive (plain, gzip or zstd)", abs)
	}
	return Reference{Kind: LocalTarball, Canonical: abs, Path: abs}, nil
}

type compression int

const (
	compUnknown compression = iota
	compNone                // plain tar
	compGzip
	compZstd
	compBzip2
	compXz
)

// sniffFile reads the first bytes of a file and tells its format. It only
// classifies the path for ParseRef (Open and OpenLayer open the file again,
// by their rules) but must not hang: the file is opened without blocking
// and must be regular.
func sniffFile(path string) (compression, error) {
	f, err := openSourceFile(path, false)
	if err != nil {
		return compUnknown, err
	}
	defer f.Close()
	return sniffReader(f)
}

// sniffReader tells the format of what r starts with.
func sniffReader(r io.Reader) (compression, error) {
	head := make([]byte, 512)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return compUnknown, err
	}
	return sniff(head[:n]), nil
}

// sniff tells a tar stream's compression from its first bytes.
func sniff(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return compGzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return compZstd
	case bytes.HasPrefix(b, []byte("BZh")):
		return compBzip2
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return compXz
	case len(b) >= 262 && bytes.Equal(b[257:262], []byte("ustar")):
		return compNone
	case len(b) == 0:
		return compUnknown
	}
	return compUnknown
}
