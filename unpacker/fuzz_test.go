package unpacker

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "/", "a/b", "../a", "./a/../..", "//a//./b/", "a/..", ".wh...", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := cleanPath(name)
		if err != nil {
			return
		}
		if p == "." {
			return
		}
		if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.IndexByte(p, 0) >= 0 {
			t.Fatalf("cleanPath(%q) = %q", name, p)
		}
		for _, el := range strings.Split(p, "/") {
			if el == "" || el == "." || el == ".." {
				t.Fatalf("cleanPath(%q) = %q has element %q", name, p, el)
			}
		}
		if again, err := cleanPath(p); err != nil || again != p {
			t.Fatalf("cleanPath not idempotent: %q -> %q -> %q, %v", name, p, again, err)
		}
		if j := filepath.Join("/root", p); !strings.HasPrefix(j, "/root/") {
			t.Fatalf("cleanPath(%q) = %q escapes: %q", name, p, j)
		}
	})
}

// FuzzUnpack feeds arbitrary bytes as a tar stream into a fresh root, then
// checks that nothing appeared beside the root (a sentinel directory next
// to it stays empty and nothing else is created in their parent).
func FuzzUnpack(f *testing.F) {
	f.Add(byte(0), mkTar(f, symE("evil", "../outside"), fileE("evil/x", "pwned")))
	f.Add(byte(1), mkTar(f, symE("evil", "/"), dirE("d/"), linkE("d/l", "../evil/etc/passwd")))
	f.Add(byte(1), mkTar(f, dirE("a/"), fileE("a/f", "1"), fileE("a/.wh..wh..opq", ""), fileE(".wh.a", ""), linkE("b", "a/f")))
	f.Add(byte(0), mkTar(f, fileE("../../x", "1"), fileE("a/.wh...", "")))
	f.Add(byte(2), []byte("garbage"))
	f.Add(byte(0), sparsePAX01("s", 1<<20, [][2]int64{{4096, 3}, {8192, 2}}, []byte("abcde")))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		os.Mkdir(root, 0o755)
		os.Mkdir(outside, 0o755)
		opts := Options{Whiteouts: WhiteoutMode(mode % 2), SkipDevices: true, MaxBytes: 1 << 20}
		// Two passes: ApplyWhiteouts runs over earlier content, so the
		// second stream sees whatever the first one left.
		for range 2 {
			Unpack(context.Background(), bytes.NewReader(data), root, opts)
		}
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 {
			t.Fatalf("entries beside root: %v", ents)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("sentinel dir written: %v", ents)
		}
	})
}

// FuzzReassemble: whatever UnpackLayer accepts (and does not call
// unverifiable), Reassemble gives back byte for byte; the tar-split
// recorder and the sparse map parser must agree with archive/tar.
func FuzzReassemble(f *testing.F) {
	f.Add(mkTar(f, dirE("d/"), fileE("d/f", "content"), symE("s", "d/f"), linkE("l", "d/f"), fileE("e", "")))
	f.Add(sparsePAX01("s", 1<<20, [][2]int64{{4096, 3}, {8192, 2}}, []byte("abcde")))
	f.Add(append(mkTar(f, fileE("a", "1")), make([]byte, 3000)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		dest := filepath.Join(t.TempDir(), "layer")
		res, err := UnpackLayer(context.Background(), bytes.NewReader(data), dest, LayerSpec{}, Options{SkipDevices: true, MaxBytes: 1 << 20})
		if err != nil || res.Unverifiable || len(res.Warnings) > 0 {
			return
		}
		reassembles(t, dest, data)
	})
}
