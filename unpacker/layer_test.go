package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// richLayer has every kind of entry that survives Reassemble.
func richLayer(t testing.TB) []byte {
	capv2 := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	return mkTar(t,
		dirE("./"),
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}},
		fileE("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755, Uid: 0, Size: 3}, body: "ELF"},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o755, Size: 4,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capv2, "SCHILY.xattr.user.x": "1"}}, body: "ping"},
		te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "home/u/high", Uid: 100000, Gid: 100000, Size: 1}, body: "h"},
		fileE("big", strings.Repeat("0123456789", 300000)),
		fileE("empty", ""),
		symE("bin/sh", "/bin/busybox"),
		linkE("bin/su2", "bin/su"),
		te{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo"}},
		te{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666}},
		fileE("gone/.wh.file", ""),
		dirE("opq/"),
		fileE("opq/.wh..wh..opq", ""),
		fileE(strings.Repeat("long/", 60)+"name", "deep"),
		te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "sticky", Mode: 0o1777}},
	)
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackLayerAndReassemble(t *testing.T) {
	plain := richLayer(t)
	diffID := digest.FromBytes(plain)
	for name, blob := range map[string][]byte{"plain": plain, "gzip": gz(t, plain), "zstd": zst(t, plain)} {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "layer")
			spec := LayerSpec{BlobDigest: digest.FromBytes(blob), DiffID: diffID, MediaType: "whatever"}
			res, err := UnpackLayer(context.Background(), bytes.NewReader(blob), dest, spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.DiffID != diffID || res.BlobDigest != spec.BlobDigest ||
				res.CompressedBytes != int64(len(blob)) || res.UncompressedBytes != int64(len(plain)) {
				t.Errorf("result %+v", res)
			}
			if res.Entries != 17 {
				t.Errorf("entries %d", res.Entries)
			}
			if readFile(t, filepath.Join(dest, "diff/etc/passwd")) == "" {
				t.Error("content missing")
			}
			if st := lstat(t, filepath.Join(dest, "diff/bin/su")); st.Mode&0o7777 != 0o4755 {
				t.Errorf("su mode %o", st.Mode)
			}
			reassembles(t, dest, plain) // whose digest is diffID
		})
	}
}

func TestUnpackLayerUnknownDigests(t *testing.T) {
	plain := mkTar(t, fileE("a", "1"))
	blob := gz(t, plain)
	dest := t.TempDir()
	res, err := UnpackLayer(context.Background(), bytes.NewReader(blob), dest, LayerSpec{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DiffID != digest.FromBytes(plain) || res.BlobDigest != digest.FromBytes(blob) {
		t.Errorf("%+v", res)
	}
	// The diff dir exists now: a second unpack must not touch it.
	_, err = UnpackLayer(context.Background(), bytes.NewReader(blob), dest, LayerSpec{}, Options{})
	if !errors.Is(err, os.ErrExist) || readFile(t, filepath.Join(dest, "diff/a")) != "1" {
		t.Errorf("second unpack: %v", err)
	}
}

func assertNothingLeft(t *testing.T, dest string) {
	t.Helper()
	assertMissing(t, filepath.Join(dest, DiffDirName))
	assertMissing(t, filepath.Join(dest, TarSplitName))
}

func TestUnpackLayerFailuresLeaveNothing(t *testing.T) {
	plain := richLayer(t)
	blob := gz(t, plain)
	good := LayerSpec{BlobDigest: digest.FromBytes(blob), DiffID: digest.FromBytes(plain)}
	wrong := digest.FromString("something else")
	cases := map[string]struct {
		blob []byte
		spec LayerSpec
		opts Options
		is   error
	}{
		"blob digest":       {blob, LayerSpec{BlobDigest: wrong, DiffID: good.DiffID}, Options{}, ErrDigestMismatch},
		"diffID":            {blob, LayerSpec{BlobDigest: good.BlobDigest, DiffID: wrong}, Options{}, ErrDigestMismatch},
		"diffID plain":      {plain, LayerSpec{DiffID: wrong}, Options{}, ErrDigestMismatch},
		"trailing bytes":    {append(append([]byte{}, plain...), 1), LayerSpec{DiffID: good.DiffID}, Options{}, ErrDigestMismatch},
		"truncated gzip":    {blob[:len(blob)/2], good, Options{}, nil},
		"truncated gz tail": {blob[:len(blob)-4], good, Options{}, nil},
		"truncated zstd":    {zst(t, plain)[:500], LayerSpec{}, Options{}, nil},
		"truncated tar":     {plain[:len(plain)-1024], LayerSpec{}, Options{}, ErrTruncated},
		"too large":         {blob, good, Options{MaxBytes: 1000}, ErrLimitExceeded},
		"unsafe":            {gz(t, mkTar(t, fileE("ok", "1"), fileE("../x", "1"))), LayerSpec{}, Options{}, ErrUnsafePath},
		"garbage":           {[]byte("this is not a tar stream at all, just some words to fill more than 512 bytes" + strings.Repeat(".", 600)), LayerSpec{}, Options{}, nil},
		"xz":                {[]byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, LayerSpec{}, Options{}, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "layer")
			_, err := UnpackLayer(context.Background(), bytes.NewReader(c.blob), dest, c.spec, c.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err %v, want %v", err, c.is)
			}
			if errors.Is(err, ErrDigestMismatch) && !strings.Contains(err.Error(), string(wrong)) && name != "trailing bytes" {
				t.Errorf("error should name the expected digest: %v", err)
			}
			assertNothingLeft(t, dest)
			t.Log(err)
		})
	}
}

func TestUnpackLayerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(mkTar(t, fileE("a", "1"))[:1024])
		cancel()
		pw.Write(make([]byte, 4096)) // unblocks the reader after cancel
		pw.Close()
	}()
	dest := filepath.Join(t.TempDir(), "layer")
	_, err := UnpackLayer(ctx, pr, dest, LayerSpec{}, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
	assertNothingLeft(t, dest)
}

func TestReassembleRefusesSymlinks(t *testing.T) {
	plain := mkTar(t, fileE("a/f", "secret?"))
	dest := filepath.Join(t.TempDir(), "layer")
	if _, err := UnpackLayer(context.Background(), bytes.NewReader(plain), dest, LayerSpec{}, Options{}); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "f"), []byte("secret?"), 0o644)
	diff := filepath.Join(dest, DiffDirName)
	for _, tamper := range []func(){
		func() { os.RemoveAll(filepath.Join(diff, "a")); os.Symlink(outside, filepath.Join(diff, "a")) },
		func() {
			os.RemoveAll(filepath.Join(diff, "a"))
			os.Mkdir(filepath.Join(diff, "a"), 0o755)
			os.Symlink(filepath.Join(outside, "f"), filepath.Join(diff, "a/f"))
		},
	} {
		tamper()
		ts, _ := os.ReadFile(filepath.Join(dest, TarSplitName))
		err := Reassemble(context.Background(), diff, bytes.NewReader(ts), io.Discard)
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("err %v, want ErrUnsafePath", err)
		}
	}
	// A fifo where a file was is refused without blocking.
	os.RemoveAll(filepath.Join(diff, "a"))
	os.Mkdir(filepath.Join(diff, "a"), 0o755)
	if err := syscallMkfifo(filepath.Join(diff, "a/f")); err != nil {
		t.Fatal(err)
	}
	ts, _ := os.ReadFile(filepath.Join(dest, TarSplitName))
	if err := Reassemble(context.Background(), diff, bytes.NewReader(ts), io.Discard); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
}
