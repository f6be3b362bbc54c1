package unpacker

import (
	"bufio"
	"bytes"
	"context"
	_ "crypto/sha256" // go-digest needs the hash implementations linked in
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// Names inside a layer directory written by UnpackLayer.
const (
	DiffDirName  = "diff"
	TarSplitName = "tar-split.json.gz"
)

// LayerSpec describes the blob handed to UnpackLayer.
type LayerSpec struct {
	BlobDigest digest.Digest // "" = unknown (local tarball/dir): not checked
	DiffID     digest.Digest // "" = unknown: computed and returned
	MediaType  string        // hint only: compression is detected by magic bytes
}

// LayerResult is Unpack's Result plus what UnpackLayer measured.
type LayerResult struct {
	Result
	DiffID            digest.Digest // digest of the uncompressed tar (computed)
	BlobDigest        digest.Digest // digest of the raw blob (computed)
	CompressedBytes   int64         // raw blob bytes read
	UncompressedBytes int64         // uncompressed tar bytes
	// Unverifiable: the tar names a file with content twice, or whites out
	// content it wrote itself, so the earlier copy is not on disk and
	// Reassemble cannot rebuild the tar.
	Unverifiable bool `json:",omitempty"`
}

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte{'B', 'Z', 'h'}
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ratioReader refuses a compressed layer that inflates more than max times
// (uncompressed over compressed bytes read so far) once past ratioMinBytes.
type ratioReader struct {
	r   io.Reader
	raw *countingReader
	n   int64
	max int64
}

func (c *ratioReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.max > 0 && c.n > ratioMinBytes && c.n/c.max > c.raw.n {
		return n, &LimitError{Limit: "max_compression_ratio", Value: c.max,
			What: fmt.Sprintf("%d compressed bytes inflate to %d", c.raw.n, c.n)}
	}
	return n, err
}

func algorithmOf(d digest.Digest) digest.Algorithm {
	if d == "" {
		return digest.Canonical
	}
	return d.Algorithm()
}

// UnpackLayer reads a (possibly compressed) layer blob in one streaming pass:
// it verifies BlobDigest over the raw bytes and DiffID over the uncompressed
// tar, records tar-split metadata in dest/tar-split.json.gz and unpacks into
// dest/diff, which must not exist yet. The whole blob is read to EOF, so the
// digests cover every byte. On any error, dest/diff and dest/tar-split.json.gz
// are removed: nothing partial is left.
func UnpackLayer(ctx context.Context, blob io.Reader, dest string, spec LayerSpec, opts Options) (res LayerResult, err error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return res, err
	}
	diffDir := filepath.Join(dest, DiffDirName)
	tsPath := filepath.Join(dest, TarSplitName)
	if err := os.Mkdir(diffDir, 0o755); err != nil {
		return res, err // an existing diff dir is not ours to replace
	}
	tsFile, err := os.OpenFile(tsPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		os.Remove(diffDir)
		return res, err
	}
	res, err = UnpackLayerTo(ctx, blob, diffDir, tsFile, spec, opts)
	if err == nil {
		err = tsFile.Close()
	} else {
		tsFile.Close()
	}
	if err != nil {
		if cerr := errors.Join(os.RemoveAll(diffDir), os.Remove(tsPath)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up after a failed unpack: %w", cerr))
		}
	}
	return res, err
}

// UnpackLayerTo is UnpackLayer into diffDir, an existing empty directory,
// with the tar-split metadata written to tarSplit (the store opens that file
// itself and hands the worker only its fd). On error diffDir is emptied;
// what was written to tarSplit is the caller's to discard.
func UnpackLayerTo(ctx context.Context, blob io.Reader, diffDir string, tarSplit io.Writer, spec LayerSpec, opts Options) (res LayerResult, err error) {
	for _, d := range []digest.Digest{spec.BlobDigest, spec.DiffID} {
		if d == "" {
			continue
		}
		if err := d.Validate(); err != nil {
			return res, fmt.Errorf("unpacker: invalid digest %q: %w", d, err)
		}
	}
	if entries, err := os.ReadDir(diffDir); err != nil {
		return res, err
	} else if len(entries) > 0 {
		return res, fmt.Errorf("unpacker: %s is not empty", diffDir) // not ours to replace
	}
	defer func() {
		if err == nil {
			return
		}
		if cerr := emptyDir(diffDir); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up after a failed unpack: %w", cerr))
		}
	}()
	// Mkdir obeyed the umask; the layer root's mode must not depend on it.
	if err := os.Chmod(diffDir, 0o755); err != nil {
		return res, err
	}

	blobHash := algorithmOf(spec.BlobDigest).Digester()
	raw := &countingReader{r: io.TeeReader(blob, blobHash.Hash())}
	br := bufio.NewReaderSize(raw, 64<<10)
	// A short blob simply gives a short peek; tar parsing reports it.
	magic, _ := br.Peek(6)
	var tarStream io.Reader
	compressed := true
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("reading gzip layer: %w", err)
		}
		defer gz.Close()
		tarStream = gz
	case bytes.HasPrefix(magic, magicZstd):
		// One decoder goroutine per layer: layers are already decoded in
		// parallel, and the default (GOMAXPROCS block decoders, each with
		// its own buffers) costs tens of MiB per layer for no speed-up.
		zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return res, fmt.Errorf("reading zstd layer: %w", err)
		}
		defer zd.Close()
		tarStream = zd
	case bytes.HasPrefix(magic, magicXz), bytes.HasPrefix(magic, magicBzip2):
		return res, fmt.Errorf("unsupported layer compression (xz or bzip2; media type %q)", spec.MediaType)
	default:
		tarStream = br
		compressed = false
	}
	diffHash := algorithmOf(spec.DiffID).Digester()
	uncompressed := &countingReader{r: tarStream}

	// The tar-split metadata is small and read rarely (squash, check):
	// compress it at the fastest level, not the default one.
	// Buffered: the gzip writer hands its output on in pieces of ≈250
	// bytes, one write(2) each (12,781 of them for small60k's 60,330
	// entries; strace -c).
	tsBuf := bufio.NewWriterSize(tarSplit, 64<<10)
	gzw, err := gzip.NewWriterLevel(tsBuf, gzip.BestSpeed)
	if err != nil {
		return res, err
	}
	packer := newEntryPacker(gzw)
	var stream io.Reader = uncompressed
	if compressed && opts.MaxRatio > 0 {
		stream = &ratioReader{r: uncompressed, raw: raw, max: opts.MaxRatio}
	}
	// Reading, hashing the blob and decompressing run ahead in their own
	// goroutine (readahead.go); raw and uncompressed are its until Close.
	// The tar's SHA-256 is taken on this side: inflate is the longer half
	// (big1: inflate 4.7 s, blob SHA-256 0.65 s, tar SHA-256 1.05 s against
	// 3.8 s of parse, CRC-64 and writes), so this balances the two.
	ra := newReadAhead(stream)
	defer ra.Close() // before gz/zd.Close (deferred earlier)
	res.Result, err = unpack(ctx, io.TeeReader(ra, diffHash.Hash()), diffDir, opts, packer)
	ra.Close()
	if err != nil {
		return res, err
	}
	// Bytes after the compressed stream (if any) still belong to the blob.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return res, fmt.Errorf("reading layer blob: %w", err)
	}
	if err := gzw.Close(); err != nil {
		return res, fmt.Errorf("writing tar-split metadata: %w", err)
	}
	if err := tsBuf.Flush(); err != nil {
		return res, fmt.Errorf("writing tar-split metadata: %w", err)
	}

	res.Unverifiable = packer.shadowed || res.Result.contentRemoved
	res.BlobDigest = blobHash.Digest()
	res.DiffID = diffHash.Digest()
	res.CompressedBytes = raw.n
	res.UncompressedBytes = uncompressed.n
	if spec.BlobDigest != "" && res.BlobDigest != spec.BlobDigest {
		return res, fmt.Errorf("%w: layer blob: expected %s, got %s", ErrDigestMismatch, spec.BlobDigest, res.BlobDigest)
	}
	if spec.DiffID != "" && res.DiffID != spec.DiffID {
		return res, fmt.Errorf("%w: layer diffID: expected %s, got %s", ErrDigestMismatch, spec.DiffID, res.DiffID)
	}
	return res, nil
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Reassemble rebuilds the exact original uncompressed tar of a layer from its
// tar-split metadata and the files in diffDir, writing it to w. File contents
// are opened beneath diffDir without following any symlink, and only regular
// files are read.
func Reassemble(ctx context.Context, diffDir string, tarSplitGz io.Reader, w io.Writer) error {
	rootfd, err := unix.Open(diffDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", diffDir, err)
	}
	defer unix.Close(rootfd)
	gz, err := gzip.NewReader(tarSplitGz)
	if err != nil {
		return fmt.Errorf("reading tar-split metadata: %w", err)
	}
	defer gz.Close()
	if err := assemble(beneathGetter{rootfd}, &entryReader{dec: json.NewDecoder(gz)}, &ctxWriter{ctx, w}); err != nil {
		return fmt.Errorf("reassembling layer tar from %s: %w", diffDir, err)
	}
	return nil
}

// assemble is asm.WriteOutputTarStream for taproot's records: a sparse
// entry's payload is its data fragments, read at their offsets.
func assemble(g beneathGetter, up *entryReader, w io.Writer) error {
	buf := make([]byte, copyBufferSize)
	crc := crc64.New(storage.CRCTable)
	out := io.MultiWriter(w, crc)
	for {
		e, err := up.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar-split metadata: %w", err)
		}
		switch e.Type {
		case storage.SegmentType:
			if _, err := w.Write(e.Payload); err != nil {
				return err
			}
			continue
		case storage.FileType:
		default:
			return fmt.Errorf("unknown tar-split entry type %d", e.Type)
		}
		if e.Size == 0 {
			continue
		}
		name := e.GetName()
		f, err := g.Get(name)
		if err != nil {
			return err
		}
		// One byte more than recorded shows a grown file without copying it all.
		var src io.Reader = io.LimitReader(f, e.Size+1)
		if e.Sparse != nil {
			parts := make([]io.Reader, len(e.Sparse))
			for i, fr := range e.Sparse {
				parts[i] = io.NewSectionReader(f, fr[0], fr[1])
			}
			src = io.MultiReader(parts...)
		}
		crc.Reset()
		n, err := io.CopyBuffer(writerOnly{out}, src, buf)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != e.Size || !bytes.Equal(crc.Sum(nil), e.Payload) {
			return fmt.Errorf("file integrity checksum failed for %q", name)
		}
	}
}

// beneathGetter is a storage.FileGetter that opens regular files beneath a
// directory fd, refusing symlinks anywhere in the path.
type beneathGetter struct{ rootfd int }

func (g beneathGetter) Get(name string) (*os.File, error) {
	rel, err := cleanPath(name)
	if err != nil {
		return nil, err
	}
	// Check the type through O_PATH first: opening a fifo or device for
	// reading could block or have side effects.
	pfd, err := openLong(g.rootfd, rel, unix.O_PATH)
	if err != nil {
		return nil, resolveErr(rel, err)
	}
	var pst unix.Stat_t
	err = unix.Fstat(pfd, &pst)
	unix.Close(pfd)
	if err != nil {
		return nil, pathErr("fstat", rel, err)
	}
	if pst.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file", rel)
	}
	fd, err := openLong(g.rootfd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, resolveErr(rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != pst.Dev || st.Ino != pst.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: changed while being opened", rel)
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// ctxWriter stops a long copy once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
