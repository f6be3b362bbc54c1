package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/taproot-dev/taproot/internal/rawtar"
)

func wantLimit(t *testing.T, err error, limit string) {
	t.Helper()
	var le *LimitError
	if !errors.Is(err, ErrLimitExceeded) || !errors.As(err, &le) || le.Limit != limit {
		t.Fatalf("err %v, want ErrLimitExceeded for %q", err, limit)
	}
	if limit != "" && !strings.Contains(err.Error(), limit) {
		t.Errorf("message does not name %s: %v", limit, err)
	}
}

func TestMaxEntries(t *testing.T) {
	var ents []te
	for i := 0; i < 10; i++ {
		ents = append(ents, fileE(fmt.Sprintf("f%d", i), ""))
	}
	root, _ := newRoot(t)
	_, err := unpackBytes(t, root, mkTar(t, ents...), Options{MaxEntries: 5})
	wantLimit(t, err, "max_layer_entries")
	assertMissing(t, filepath.Join(root, "f5"))
	root, _ = newRoot(t)
	mustUnpack(t, root, mkTar(t, ents...), Options{MaxEntries: 10})
	// Implied directories count: one entry, 6 inodes.
	root, _ = newRoot(t)
	_, err = unpackBytes(t, root, mkTar(t, fileE("a/b/c/d/e/f", "")), Options{MaxEntries: 5})
	wantLimit(t, err, "max_layer_entries")
}

func TestImageBudget(t *testing.T) {
	budget := NewBudget(6000)
	layer := mkTar(t, fileE("f", strings.Repeat("x", 100)))
	for i, want := range []bool{true, false} {
		dest := filepath.Join(t.TempDir(), "layer")
		_, err := UnpackLayer(context.Background(), bytes.NewReader(layer), dest, LayerSpec{}, Options{Image: budget})
		if want && err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if !want {
			wantLimit(t, err, "max_image_bytes")
			assertNothingLeft(t, dest)
		}
	}
}

// A bomb of zeros stops once it inflates over MaxRatio past 64 MiB, not at
// its end, and leaves nothing.
func TestCompressionRatioBomb(t *testing.T) {
	head := fileHeader(t, "zeros", 1<<30)
	for name, blob := range map[string][]byte{
		"gzip": zeroStream(t, "gzip", head, 1<<30),
		"zstd": zeroStream(t, "zstd", head, 1<<30),
	} {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "layer")
			start := time.Now()
			res, err := UnpackLayer(context.Background(), bytes.NewReader(blob), dest, LayerSpec{}, Options{MaxRatio: 100})
			wantLimit(t, err, "max_compression_ratio")
			t.Logf("%s bomb of %d bytes (1 GiB of zeros) refused after %v, %d bytes written: %v", name, len(blob), time.Since(start).Round(time.Millisecond), res.Bytes, err)
			if res.Bytes > 2*ratioMinBytes {
				t.Errorf("%d bytes written before the refusal", res.Bytes)
			}
			assertNothingLeft(t, dest)
		})
	}
	// A layer that compresses 100x but stays under 64 MiB is fine.
	small := gz(t, mkTar(t, fileE("z", string(make([]byte, 32<<20)))))
	if _, err := UnpackLayer(context.Background(), bytes.NewReader(small), filepath.Join(t.TempDir(), "l"), LayerSpec{}, Options{MaxRatio: 100}); err != nil {
		t.Fatal(err)
	}
}

// fileHeader is the tar header of a regular file of size bytes.
func fileHeader(t *testing.T, name string, size int64) []byte {
	var buf bytes.Buffer
	h := fixHdr(tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size})
	if err := tar.NewWriter(&buf).WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zeroStream compresses head, n zeros (a payload), its padding and the end
// marker, without holding the zeros.
func zeroStream(t *testing.T, kind string, head []byte, n int64) []byte {
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	if kind == "gzip" {
		w, err = gzip.NewWriterLevel(&out, gzip.BestSpeed)
	} else {
		w, err = zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(head)
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zeros)) {
		w.Write(zeros[:min(left, int64(len(zeros)))])
	}
	w.Write(make([]byte, int(-n&(tarBlockSize-1))+2*tarBlockSize))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Duplicate paths: the last entry wins, in linear time, and the layer is
// unverifiable exactly when content was shadowed.
func TestDuplicatesLastWins(t *testing.T) {
	cases := []struct {
		name         string
		ents         []te
		file, want   string
		unverifiable bool
	}{
		{"empty twice", []te{fileE("a", ""), fileE("b", ""), fileE("a", "")}, "a", "", false},
		{"content replaced", []te{fileE("a", "1"), fileE("a", "2")}, "a", "2", true},
		{"dir with content replaced", []te{dirE("d"), fileE("d/e/x", "x"), fileE("d", "file")}, "d", "file", true},
		{"dir with empty files replaced", []te{dirE("d"), fileE("d/e/x", ""), fileE("d", "file")}, "d", "file", false},
		{"sibling prefix", []te{fileE("dd/x", "x"), dirE("d"), dirE("d")}, "dd/x", "x", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := mkTar(t, c.ents...)
			dest := filepath.Join(t.TempDir(), "layer")
			res, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(dest, DiffDirName, c.file)); got != c.want {
				t.Errorf("%s = %q, want %q", c.file, got, c.want)
			}
			if res.Unverifiable != c.unverifiable {
				t.Errorf("Unverifiable = %v", res.Unverifiable)
			}
			if !c.unverifiable {
				reassembles(t, dest, data)
			}
		})
	}
}

// ---- hand-made sparse entries (archive/tar refuses to write GNU.sparse
// records)

// sparsePAX01 is a tar of one GNU sparse 0.1 entry: the map and apparent
// size in PAX records, payload as given (it should be the fragments).
func sparsePAX01(name string, size int64, frags [][2]int64, payload []byte) []byte {
	out := rawtar.SparsePAX01Head(name, size, frags, int64(len(payload)), testTime)
	out = append(out, rawtar.Pad(payload)...)
	return append(out, make([]byte, 2*tarBlockSize)...)
}

func TestSparseHostile(t *testing.T) {
	// 1 TiB apparent, 5 bytes of data: fast, and 5 bytes on disk.
	t.Run("huge apparent size", func(t *testing.T) {
		data := sparsePAX01("big", 1<<40, [][2]int64{{1<<40 - 5, 5}}, []byte("tail\n"))
		dest := filepath.Join(t.TempDir(), "layer")
		start := time.Now()
		res, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v: holes were expanded", d)
		}
		st := lstat(t, filepath.Join(dest, DiffDirName, "big"))
		if st.Size != 1<<40 || st.Blocks > 64 || res.Bytes != 5 {
			t.Errorf("size %d blocks %d bytes %d", st.Size, st.Blocks, res.Bytes)
		}
		reassembles(t, dest, data)
	})
	// The map says more data than the payload holds, or less.
	for name, payload := range map[string][]byte{"short": []byte("abc"), "long": []byte("abcdefghijkl")} {
		t.Run("map disagrees "+name, func(t *testing.T) {
			root, _ := newRoot(t)
			data := sparsePAX01("f", 100, [][2]int64{{10, 8}}, payload)
			if _, err := unpackBytes(t, root, append(data[:len(data)-1024], mkTar(t, fileE("after", "x"))...), Options{}); err == nil {
				t.Fatal("no error")
			} else {
				t.Log(err)
			}
			assertMissing(t, filepath.Join(root, "after"))
		})
	}
	// A million one-byte fragments 4 KiB apart would take 4 GiB of disk
	// for 1 MB of data: charged by the block.
	t.Run("fragment amplification", func(t *testing.T) {
		var frags [][2]int64
		for i := int64(0); i < 1000; i++ {
			frags = append(frags, [2]int64{i * 8192, 1})
		}
		root, _ := newRoot(t)
		_, err := unpackBytes(t, root, sparsePAX01("f", 1000*8192, frags, make([]byte, 1000)), Options{MaxBytes: 1 << 20})
		wantLimit(t, err, "max_layer_bytes")
	})
	// Declared sparse, all data: a zero bomb in sparse clothing.
	t.Run("dense", func(t *testing.T) {
		const size = 1 << 30
		blob := zeroStream(t, "gzip", rawtar.SparsePAX01Head("dense", size, [][2]int64{{0, size}}, size, testTime), size)
		dest := filepath.Join(t.TempDir(), "layer")
		res, err := UnpackLayer(context.Background(), bytes.NewReader(blob), dest, LayerSpec{}, Options{MaxRatio: 100, MaxBytes: 16 << 30})
		wantLimit(t, err, "max_compression_ratio")
		t.Logf("refused after %d bytes written", res.Bytes)
		assertNothingLeft(t, dest)
	})
}
