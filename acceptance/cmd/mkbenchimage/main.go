// Command mkbenchimage builds the images of `make bench` (scripts/bench.sh)
// as OCI image layouts, streaming (nothing is held in memory), and provides
// the small helpers the benchmark needs:
//
//	mkbenchimage debian     -out DIR -tag T [-compression gzip|zstd] [-budget N]
//	    three layers from the machine's own files: /usr/lib, /usr/share,
//	    /usr/bin + /etc (each cut at -budget uncompressed bytes)
//	mkbenchimage smallfiles -out DIR -tag T [-files 60000]
//	    one layer of N small (200 B – 4 KiB) text-like files, 200 per dir
//	mkbenchimage manylayers -out DIR -tag T [-layers 150]
//	    N small layers (a dir and 20 files each)
//	mkbenchimage bigsingle  -out DIR -tag T [-compression gzip|zstd]
//	    one layer of ≈1.45 GB in the shape of an ML or JVM image: model
//	    weights and jars (random: incompressible), class files and data
//	    files (text-like: compressible about 3:1), 20,000 small files and a
//	    preallocated zero-filled file
//	mkbenchimage decompress [-parallel] BLOB...
//	    decompresses gzip/zstd blobs to nowhere with klauspost (the library
//	    taproot uses), serially or one goroutine per blob, and prints
//	    "seconds=S uncompressed_bytes=N"
//	mkbenchimage fill -dir D -bytes N -files K
//	    writes K files of N/K bytes (allocated, not sparse) under D
//	mkbenchimage unpack -out DIR [-cpuprofile F] [-memprofile F] BLOB...
//	    runs unpacker.UnpackLayer on each blob (one goroutine each, as the
//	    store's worker does) into DIR/<n>, for profiling the unpack path
//	    without the registry, the worker and the user namespace (run it as
//	    root: owners are written as they are)
//
// The layouts are usable as oci:DIR:T and can be pushed with
// `skopeo copy oci:DIR:T docker://…`.
package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/taproot-dev/taproot/unpacker"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "debian", "smallfiles", "manylayers", "bigsingle":
		err = build(os.Args[1], os.Args[2:])
	case "decompress":
		err = decompress(os.Args[2:])
	case "fill":
		err = fill(os.Args[2:])
	case "unpack":
		err = unpack(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkbenchimage:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mkbenchimage debian|smallfiles|manylayers|bigsingle|decompress|fill|unpack [flags] (see the package comment)")
	os.Exit(2)
}

// epoch is every synthetic entry's mtime: the images are reproducible.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// layerSource writes one layer's tar entries.
type layerSource func(tw *tar.Writer) error

func build(kind string, args []string) error {
	fl := flag.NewFlagSet(kind, flag.ExitOnError)
	out := fl.String("out", "", "OCI layout directory to write (created if missing)")
	tag := fl.String("tag", "latest", "tag of the image in the layout")
	comp := fl.String("compression", "gzip", "layer compression: gzip or zstd")
	budget := fl.Int64("budget", 170<<20, "debian: uncompressed bytes of file content per layer, at most")
	files := fl.Int("files", 60000, "smallfiles: number of files")
	layers := fl.Int("layers", 150, "manylayers: number of layers")
	fl.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	if *comp != "gzip" && *comp != "zstd" {
		return fmt.Errorf("-compression %q: gzip or zstd", *comp)
	}
	var srcs []layerSource
	switch kind {
	case "debian":
		for _, roots := range [][]string{{"/usr/lib"}, {"/usr/share"}, {"/usr/bin", "/etc"}} {
			srcs = append(srcs, hostTree(roots, *budget))
		}
	case "smallfiles":
		srcs = append(srcs, smallFiles(*files))
	case "manylayers":
		for i := range *layers {
			srcs = append(srcs, tinyLayer(i))
		}
	case "bigsingle":
		srcs = append(srcs, bigSingle())
	}
	if err := os.MkdirAll(filepath.Join(*out, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	// Build layers concurrently (two at a time: compression is the cost).
	descs := make([]v1.Descriptor, len(srcs))
	diffIDs := make([]digest.Digest, len(srcs))
	errs := make([]error, len(srcs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			descs[i], diffIDs[i], errs[i] = writeLayer(*out, *comp, src)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	cfg := v1.Image{
		Created:  &epoch,
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		Config: v1.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
			Cmd:        []string{"/bin/sh"},
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgDesc, err := writeJSONBlob(*out, v1.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	man := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    descs,
	}
	manDesc, err := writeJSONBlob(*out, v1.MediaTypeImageManifest, man)
	if err != nil {
		return err
	}
	manDesc.Annotations = map[string]string{v1.AnnotationRefName: *tag}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	// Keep other tags of an existing layout.
	if data, err := os.ReadFile(filepath.Join(*out, v1.ImageIndexFile)); err == nil {
		var old v1.Index
		if json.Unmarshal(data, &old) == nil {
			for _, m := range old.Manifests {
				if m.Annotations[v1.AnnotationRefName] != *tag {
					idx.Manifests = append(idx.Manifests, m)
				}
			}
		}
	}
	idx.Manifests = append(idx.Manifests, manDesc)
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, v1.ImageIndexFile), data, 0o644); err != nil {
		return err
	}
	var total int64
	for _, d := range descs {
		total += d.Size
	}
	fmt.Printf("oci:%s:%s manifest %s, %d layers, %d compressed bytes\n", *out, *tag, manDesc.Digest, len(descs), total)
	return nil
}

func writeJSONBlob(dir, mediaType string, v any) (v1.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d := digest.FromBytes(data)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// writeLayer streams src → tar → (diffID hash) → compressor → (blob hash) →
// a temp file, then names the file by its digest.
func writeLayer(dir, comp string, src layerSource) (v1.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".layer-*")
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	blobHash := sha256.New()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	cw := io.MultiWriter(bw, blobHash)
	var zw io.WriteCloser
	mediaType := v1.MediaTypeImageLayerGzip
	if comp == "zstd" {
		mediaType = v1.MediaTypeImageLayerZstd
		zw, err = zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	} else {
		zw, err = gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	}
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	diffHash := sha256.New()
	tb := bufio.NewWriterSize(io.MultiWriter(zw, diffHash), 1<<20)
	tw := tar.NewWriter(tb)
	if err := src(tw); err != nil {
		return v1.Descriptor{}, "", err
	}
	// tar.Writer.Close writes the end marker; the buffers are flushed by
	// hand, innermost first.
	if err := tw.Close(); err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := tb.Flush(); err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := zw.Close(); err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := bw.Flush(); err != nil {
		return v1.Descriptor{}, "", err
	}
	// The blob's size: all of it went through bw into tmp.
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := tmp.Close(); err != nil {
		return v1.Descriptor{}, "", err
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(blobHash.Sum(nil)))
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(diffHash.Sum(nil)))
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil {
		return v1.Descriptor{}, "", err
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: size}, diffID, nil
}

// hostTree writes the trees under roots (absolute host paths, stored
// without the leading "/"), in lexical order, with their parent dirs, until
// budget bytes of file content are written. Unreadable files, sockets and
// device nodes are left out; hardlinks stay hardlinks; owners above 65535
// become 0 (the test user has 65536 sub-IDs).
func hostTree(roots []string, budget int64) layerSource {
	return func(tw *tar.Writer) error {
		var written int64
		links := map[[2]uint64]string{}
		parents := map[string]bool{}
		buf := make([]byte, 1<<20)
		for _, root := range roots {
			// Parent dirs first ("usr" for "/usr/lib").
			rel := strings.TrimPrefix(filepath.Clean(root), "/")
			parts := strings.Split(rel, "/")
			for i := 1; i < len(parts); i++ {
				p := strings.Join(parts[:i], "/")
				if !parents[p] {
					parents[p] = true
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
						return err
					}
				}
			}
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil // unreadable: leave it out
				}
				if written >= budget {
					return fs.SkipAll
				}
				info, err := d.Info()
				if err != nil {
					return nil
				}
				mode := info.Mode()
				if mode&(fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0 {
					return nil
				}
				link := ""
				if mode&fs.ModeSymlink != 0 {
					if link, err = os.Readlink(path); err != nil {
						return nil
					}
				}
				hdr, err := tar.FileInfoHeader(info, link)
				if err != nil {
					return nil
				}
				hdr.Name = strings.TrimPrefix(path, "/")
				if d.IsDir() {
					hdr.Name += "/"
				}
				hdr.Uname, hdr.Gname = "", ""
				hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
				hdr.ModTime = hdr.ModTime.Truncate(time.Second)
				hdr.Format = tar.FormatPAX
				if hdr.Uid > 65535 {
					hdr.Uid = 0
				}
				if hdr.Gid > 65535 {
					hdr.Gid = 0
				}
				st, _ := info.Sys().(*syscall.Stat_t)
				if mode.IsRegular() && st != nil && st.Nlink > 1 {
					key := [2]uint64{st.Dev, st.Ino}
					if first, ok := links[key]; ok {
						hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
						return tw.WriteHeader(hdr)
					}
				}
				if !mode.IsRegular() {
					return tw.WriteHeader(hdr)
				}
				f, err := os.Open(path)
				if err != nil {
					return nil
				}
				defer f.Close()
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
				if err == nil && n < hdr.Size {
					// Shrunk while read: pad so the archive stays valid.
					_, err = io.CopyN(tw, zeroReader{}, hdr.Size-n)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if st != nil && st.Nlink > 1 {
					links[[2]uint64{st.Dev, st.Ino}] = hdr.Name
				}
				written += hdr.Size
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// words make synthetic file contents compress like text (about 3:1).
var words = strings.Fields(`the of and to in is for that with on as are by this be from at or
an it not which have has but all can if will one more other its also new their there about
config value error return func package import const type struct string int bool nil true false
usr lib share bin etc var opt home root data cache log tmp run srv proc sys dev boot mnt media`)

func textContent(r *rand.Rand, size int) []byte {
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(words[r.Intn(len(words))])
		if r.Intn(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
		if r.Intn(40) == 0 {
			fmt.Fprintf(&b, "%x ", r.Uint64())
		}
	}
	return []byte(b.String()[:size])
}

func smallFiles(n int) layerSource {
	return func(tw *tar.Writer) error {
		r := rand.New(rand.NewSource(60000))
		for i := range n {
			dir := fmt.Sprintf("data/d%03d/s%03d", i/2000, (i/200)%10)
			if i%2000 == 0 {
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("data/d%03d/", i/2000), Mode: 0o755, ModTime: epoch}); err != nil {
					return err
				}
			}
			if i%200 == 0 {
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
					return err
				}
			}
			content := textContent(r, 200+r.Intn(3897))
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%s/f%05d.txt", dir, i), Mode: 0o644, Size: int64(len(content)), ModTime: epoch}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(content); err != nil {
				return err
			}
		}
		return nil
	}
}

// bigSingle is one layer of ≈1.45 GB of mixed content (see the package
// comment): 512 MiB of model weights and 160 MiB of jars (random bytes, as
// compressed or quantised data is), 14,000 class-like files of 4–64 KiB and
// 256 MiB of data files (text-like), 20,000 files of 200 B–4 KiB, and a
// 32 MiB zero-filled file.
func bigSingle() layerSource {
	return func(tw *tar.Writer) error {
		r := rand.New(rand.NewSource(1500))
		// Text-like content comes from slices of a 8 MiB pool at random
		// offsets: fast to make, and it compresses like text (the pool is
		// far larger than gzip's 32 KiB window).
		pool := textContent(r, 8<<20)
		rnd := make([]byte, 1<<20)
		dir := func(name string) error {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
		}
		file := func(name string, size int64, mode int64, content func(n int64) error) error {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: epoch}); err != nil {
				return err
			}
			return content(size)
		}
		random := func(n int64) error {
			for n > 0 {
				c := min(n, int64(len(rnd)))
				r.Read(rnd[:c])
				if _, err := tw.Write(rnd[:c]); err != nil {
					return err
				}
				n -= c
			}
			return nil
		}
		text := func(n int64) error {
			for n > 0 {
				c := min(n, 256<<10)
				off := r.Intn(len(pool) - int(c))
				if _, err := tw.Write(pool[off : off+int(c)]); err != nil {
					return err
				}
				n -= c
			}
			return nil
		}
		for _, d := range []string{"opt/", "opt/app/", "opt/app/models/", "opt/app/lib/", "opt/app/data/", "opt/app/classes/", "usr/", "usr/share/", "usr/share/doc/", "var/", "var/lib/"} {
			if err := dir(d); err != nil {
				return err
			}
		}
		for i := range 8 {
			if err := file(fmt.Sprintf("opt/app/models/shard-%02d.safetensors", i), 64<<20, 0o644, random); err != nil {
				return err
			}
		}
		for i := range 40 {
			if err := file(fmt.Sprintf("opt/app/lib/dep-%02d.jar", i), 4<<20, 0o644, random); err != nil {
				return err
			}
		}
		for i := range 14000 {
			if i%500 == 0 {
				if err := dir(fmt.Sprintf("opt/app/classes/p%02d/", i/500)); err != nil {
					return err
				}
			}
			size := int64(4<<10 + r.Intn(60<<10))
			if err := file(fmt.Sprintf("opt/app/classes/p%02d/C%05d.class", i/500, i), size, 0o644, text); err != nil {
				return err
			}
		}
		for i := range 4 {
			if err := file(fmt.Sprintf("opt/app/data/table-%d.csv", i), 64<<20, 0o644, text); err != nil {
				return err
			}
		}
		for i := range 20000 {
			if i%250 == 0 {
				if err := dir(fmt.Sprintf("usr/share/doc/pkg%03d/", i/250)); err != nil {
					return err
				}
			}
			size := int64(200 + r.Intn(3897))
			mode := int64(0o644)
			if i%10 == 0 {
				mode = 0o755
			}
			if err := file(fmt.Sprintf("usr/share/doc/pkg%03d/f%05d", i/250, i), size, mode, text); err != nil {
				return err
			}
		}
		return file("var/lib/prealloc.db", 32<<20, 0o600, func(n int64) error {
			_, err := io.CopyN(tw, zeroReader{}, n)
			return err
		})
	}
}

func tinyLayer(i int) layerSource {
	return func(tw *tar.Writer) error {
		r := rand.New(rand.NewSource(int64(i)))
		dir := fmt.Sprintf("layer%03d", i)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
		for j := range 20 {
			content := textContent(r, 100+r.Intn(2000))
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%s/f%02d", dir, j), Mode: 0o644, Size: int64(len(content)), ModTime: epoch}); err != nil {
				return err
			}
			if _, err := tw.Write(content); err != nil {
				return err
			}
		}
		return nil
	}
}

// decompress times klauspost decompression of blobs to io.Discard.
func decompress(args []string) error {
	fl := flag.NewFlagSet("decompress", flag.ExitOnError)
	parallel := fl.Bool("parallel", false, "one goroutine per blob (else one after another)")
	fl.Parse(args)
	blobs := fl.Args()
	var (
		total int64
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  = make([]error, len(blobs))
	)
	one := func(i int) {
		n, err := decompressOne(blobs[i])
		mu.Lock()
		total += n
		mu.Unlock()
		errs[i] = err
	}
	start := time.Now()
	for i := range blobs {
		if *parallel {
			wg.Add(1)
			go func() { defer wg.Done(); one(i) }()
		} else {
			one(i)
		}
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("seconds=%.3f uncompressed_bytes=%d\n", el.Seconds(), total)
	return nil
}

func decompressOne(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	var r io.Reader
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return 0, err
		}
		defer gz.Close()
		r = gz
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return 0, err
		}
		defer zd.Close()
		r = zd
	default:
		return 0, fmt.Errorf("%s: neither gzip nor zstd", path)
	}
	return io.CopyBuffer(io.Discard, r, make([]byte, 1<<20))
}

// fill writes files of allocated (non-sparse) bytes under dir.
func fill(args []string) error {
	fl := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fl.String("dir", "", "directory to fill (created if missing)")
	size := fl.Int64("bytes", 1<<30, "total bytes")
	files := fl.Int("files", 1024, "number of files")
	fl.Parse(args)
	if *dir == "" || *files <= 0 {
		return errors.New("-dir and a positive -files are required")
	}
	per := *size / int64(*files)
	names := make([]string, 0, *files)
	for i := range *files {
		names = append(names, filepath.Join(*dir, fmt.Sprintf("f%03d", i/100), fmt.Sprintf("%05d", i)))
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.MkdirAll(filepath.Dir(n), 0o755); err != nil {
			return err
		}
		f, err := os.Create(n)
		if err != nil {
			return err
		}
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, per); err != nil {
			// No fallocate here: write zeros.
			_, err = io.CopyN(f, zeroReader{}, per)
			if err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// unpack profiles unpacker.UnpackLayer over blobs, concurrently.
func unpack(args []string) error {
	fl := flag.NewFlagSet("unpack", flag.ExitOnError)
	out := fl.String("out", "", "directory to unpack into (must not exist)")
	cpu := fl.String("cpuprofile", "", "write a CPU profile here")
	mem := fl.String("memprofile", "", "write an allocation profile here")
	fl.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	if err := os.Mkdir(*out, 0o755); err != nil {
		return err
	}
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	blobs := fl.Args()
	errs := make([]error, len(blobs))
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(b)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			t := time.Now()
			res, err := unpacker.UnpackLayer(context.Background(), f, filepath.Join(*out, fmt.Sprint(i)),
				unpacker.LayerSpec{}, unpacker.Options{SkipDevices: true})
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", b, err)
				return
			}
			fmt.Printf("layer %d: %.3fs entries=%d tar_bytes=%d\n", i, time.Since(t).Seconds(), res.Entries, res.UncompressedBytes)
		}()
	}
	wg.Wait()
	fmt.Printf("seconds=%.3f\n", time.Since(start).Seconds())
	if *mem != "" {
		f, err := os.Create(*mem)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
