package unpacker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// te is one tar entry for the test builders.
type te struct {
	hdr  tar.Header
	body string
}

var testTime = time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)

func fixHdr(h tar.Header) tar.Header {
	if h.ModTime.IsZero() {
		h.ModTime = testTime
	}
	if h.Mode == 0 {
		switch h.Typeflag {
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeSymlink:
			h.Mode = 0o777
		default:
			h.Mode = 0o644
		}
	}
	h.Format = tar.FormatPAX
	return h
}

func dirE(name string) te { return te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name}} }
func fileE(name, body string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body))}, body: body}
}
func symE(name, target string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}
func linkE(name, target string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func mkTar(t testing.TB, ents ...te) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := fixHdr(e.hdr)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("Write %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newRoot makes base/root and an empty sentinel dir base/outside beside it.
func newRoot(t testing.TB) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func unpackBytes(t testing.TB, root string, data []byte, opts Options) (Result, error) {
	t.Helper()
	return Unpack(context.Background(), bytes.NewReader(data), root, opts)
}

func mustUnpack(t testing.TB, root string, data []byte, opts Options) Result {
	t.Helper()
	res, err := unpackBytes(t, root, data, opts)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	return res
}

func lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func assertMissing(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s should not exist (err=%v)", p, err)
	}
}

func assertEmptyDir(t testing.TB, p string) {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s should be empty, has %v", p, names)
	}
}

// inUserns re-executes this test binary to run the test helper (an entry
// point that does its work only when env is set, to a new temp dir) as
// root of a new user namespace (clone flags, one uid and one gid mapping),
// and fails unless it passes. cannot (t.Skipf or t.Fatalf) reports a
// namespace that could not be made.
func inUserns(t *testing.T, helper, env string, clone uintptr, uid, gid syscall.SysProcIDMap, cannot func(string, ...any)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  clone,
		UidMappings: []syscall.SysProcIDMap{uid},
		GidMappings: []syscall.SysProcIDMap{gid},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		cannot("cannot start a process in a new user namespace here: %v", err)
		return
	}
	t.Logf("inside the user namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%s failed: %v", helper, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+helper) {
		t.Fatalf("%s did not run", helper)
	}
}

// reassembles checks that Reassemble of the layer UnpackLayer wrote in
// dest gives back data byte for byte, and returns what it gave.
func reassembles(t testing.TB, dest string, data []byte) []byte {
	t.Helper()
	ts, err := os.Open(filepath.Join(dest, TarSplitName))
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	var back bytes.Buffer
	err = Reassemble(context.Background(), filepath.Join(dest, DiffDirName), ts, &back)
	if err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Errorf("Reassemble of %s: %v; gave %d bytes, want the %d of the layer (same bytes: %v)",
			dest, err, back.Len(), len(data), bytes.Equal(back.Bytes(), data))
	}
	return back.Bytes()
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getXattr(p, key string) (string, error) {
	buf := make([]byte, 1024)
	n, err := unix.Lgetxattr(p, key, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func syscallMkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
