package unpacker

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// sparseTars makes, with GNU tar (the writer of these formats; archive/tar
// cannot write them), one tar per sparse format of a directory holding a
// file of apparent size size with data at the given offsets, plus a small
// dense file.
func sparseTars(t *testing.T, size int64, data map[int64]string) map[string][]byte {
	t.Helper()
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("GNU tar is not installed: it writes the sparse formats under test")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for off, s := range data {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(src, "small"), []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for name, args := range map[string][]string{
		"gnu-old": {"--format=gnu"},
		"pax-0.0": {"--format=pax", "--sparse-version=0.0"},
		"pax-0.1": {"--format=pax", "--sparse-version=0.1"},
		"pax-1.0": {"--format=pax", "--sparse-version=1.0"},
	} {
		args = append(append([]string{"--sparse", "-cf", "-", "-C", src}, args...), "small", "sparse")
		b, err := exec.Command(gnutar, args...).Output()
		if err != nil {
			t.Fatalf("tar %v: %v", args, err)
		}
		out[name] = b
	}
	return out
}

func TestSparseFiles(t *testing.T) {
	const size = 64 << 30 // 64 GiB apparent
	data := map[int64]string{0: "start", 1 << 20: "one MiB", 5<<30 + 3: "odd offset", size - 6: "end!\n"}
	// More fragments than the old GNU header holds (4): an extension block.
	for i := int64(0); i < 30; i++ {
		data[(10+i)<<30] = "frag"
	}
	for name, tarb := range sparseTars(t, size, data) {
		t.Run(name, func(t *testing.T) {
			if len(tarb) > 1<<20 {
				t.Fatalf("GNU tar wrote %d bytes: not sparse", len(tarb))
			}
			dest := filepath.Join(t.TempDir(), "layer")
			res, err := UnpackLayer(context.Background(), bytes.NewReader(tarb), dest, LayerSpec{}, Options{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dest, DiffDirName, "sparse")
			st := lstat(t, p)
			if st.Size != size {
				t.Errorf("apparent size %d, want %d", st.Size, size)
			}
			// 34 fragments, a block or two each.
			if st.Blocks*512 > 1<<20 {
				t.Errorf("%d bytes allocated: holes were written", st.Blocks*512)
			}
			fd, err := unix.Open(p, unix.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			for off, s := range data {
				b := make([]byte, len(s))
				if n, err := unix.Pread(fd, b, off); err != nil || string(b[:n]) != s {
					t.Errorf("at %d: %q (%v), want %q", off, b[:n], err, s)
				}
			}
			// Inside a hole: zeros.
			b := make([]byte, 8)
			if n, err := unix.Pread(fd, b, 3<<30); n != 8 || err != nil || string(b) != string(make([]byte, 8)) {
				t.Errorf("hole at 3 GiB reads %q (%v)", b[:n], err)
			}
			if got := readFile(t, filepath.Join(dest, DiffDirName, "small")); got != "small\n" {
				t.Errorf("small: %q", got)
			}
			// GNU tar stores whole 4 KiB blocks around each data byte.
			if res.Bytes > int64(len(data)+1)*8192 {
				t.Errorf("Bytes %d counts holes", res.Bytes)
			}
			back := reassembles(t, dest, tarb)
			// Squash's path: the reassembled tar unpacks the same.
			root, _ := newRoot(t)
			mustUnpack(t, root, back, Options{Whiteouts: ApplyWhiteouts})
			if st2 := lstat(t, filepath.Join(root, "sparse")); st2.Size != size || st2.Blocks != st.Blocks {
				t.Errorf("re-unpacked: size %d blocks %d, want %d %d", st2.Size, st2.Blocks, size, st.Blocks)
			}
		})
	}
}
