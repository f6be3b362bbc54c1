package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/taproot-dev/taproot/internal/swaprace"
	"golang.org/x/sys/unix"
)

// secret is what must never be read into a tar by the swap tests.
const secret = "SECRET-7f3c-must-not-leak"

// tarContents reads a whole tar: name -> header, and the bytes of every
// regular entry concatenated (to look for the secret in).
func tarContents(r io.Reader) (map[string]*tar.Header, []byte, error) {
	tr := tar.NewReader(r)
	hdrs := map[string]*tar.Header{}
	var all bytes.Buffer
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs, all.Bytes(), nil
		}
		if err != nil {
			return hdrs, all.Bytes(), err
		}
		hdrs[hdr.Name] = hdr
		if _, err := io.Copy(&all, tr); err != nil {
			return hdrs, all.Bytes(), err
		}
	}
}

// A goroutine swaps a regular file with a symlink to a secret file, and a
// directory with a symlink to a secret directory, with renameat2
// RENAME_EXCHANGE as fast as it can while the tar is written, many rounds:
// the secret never appears in the tar, symlinks are always written as
// symlinks, and a round either succeeds or fails with errChanged. With the
// old walk (lstat by path, then open by path) the same race put the secret
// into the tar in 30 of 2000 rounds on this machine (file/symlink pair only).
func TestLocalDirSwapRace(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	root := filepath.Join(base, "rootfs")
	for _, d := range []string{outside, filepath.Join(outside, "secretdir"), root, filepath.Join(root, "d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(outside, "shadow"):            secret + "\n",
		filepath.Join(outside, "secretdir", "file"): secret + "\n",
		filepath.Join(root, "f"):                    "public\n",
		filepath.Join(root, "d", "inner"):           "inner\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(root, "s")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secretdir"), filepath.Join(root, "ds")); err != nil {
		t.Fatal(err)
	}
	racer, err := swaprace.Start(root, [][2]string{{"f", "s"}, {"d", "ds"}})
	if err != nil {
		t.Fatal(err)
	}

	f := testFetcher(t, Options{})
	src := mustOpen(t, f, root)
	rounds := 2000
	if testing.Short() {
		rounds = 200
	}
	ok, changed := 0, 0
	sawSymlinkAsF := false
	for i := 0; i < rounds && !t.Failed(); i++ {
		rc, err := src.OpenLayer(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		hdrs, data, err := tarContents(rc)
		rc.Close()
		if bytes.Contains(data, []byte(secret)) {
			t.Fatalf("round %d: the secret is in the tar (entries %v)", i, names(hdrs))
		}
		for name, h := range hdrs {
			if strings.HasSuffix(name, "/file") { // secretdir's file, reached through a symlink
				t.Fatalf("round %d: walked into the secret dir: %s", i, name)
			}
			if (name == "f" || name == "s") && h.Typeflag == tar.TypeSymlink {
				if h.Linkname != filepath.Join(outside, "shadow") {
					t.Fatalf("round %d: %s -> %q", i, name, h.Linkname)
				}
				if name == "f" {
					sawSymlinkAsF = true
				}
			}
		}
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errChanged):
			changed++
		default:
			t.Fatalf("round %d: %v", i, err)
		}
	}
	swaps, err := racer.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds: %d complete tars, %d stopped with %q; %d swaps", rounds, ok, changed, errChanged, swaps)
	if ok == 0 {
		t.Errorf("no round completed: the walk cannot make progress under swaps")
	}
	if !sawSymlinkAsF {
		t.Errorf("never saw the swapped state (f a symlink): the race did not happen, the test proves nothing")
	}
}

func names(h map[string]*tar.Header) []string {
	var out []string
	for n := range h {
		out = append(out, n)
	}
	return out
}

// As root, a source another user can change is refused with one line
// naming the path, its mode and owner; a path only root can change is
// accepted, including through root-owned entries of sticky dirs (/tmp)
// and root's symlinks, and whatever the dirs inside the source are.
func TestLocalSourceTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the trust rules apply to root callers, and the test chowns files to another uid")
	}
	const other = 4321 // any uid that is not root
	base := t.TempDir()
	mk := func(p string, mode os.FileMode, uid, gid int) string {
		t.Helper()
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tarball := func(dir string, uid int) string {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
		tw.Write([]byte("x"))
		tw.Close()
		p := filepath.Join(dir, "rootfs.tar")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	symlink := func(target, p string, uid int) string {
		t.Helper()
		p = filepath.Join(base, p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := mk("good", 0o755, 0, 0)
	mk("good/tmp", 0o777|os.ModeSticky, 0, 0)    // inside the source: fine
	mk("good/home/app", 0o700, other, other)     // inside the source: fine
	mk("sticky", 0o777|os.ModeSticky, 0, 0)      // like /tmp
	inSticky := mk("sticky/rootfs", 0o755, 0, 0) // root's entry in /tmp: fine
	usersInSticky := mk("sticky/users", 0o755, other, other)
	userDir := mk("user", 0o755, other, other)
	inUserDir := mk("user/rootfs", 0o755, 0, 0)
	groupRoot := mk("grouproot", 0o775, 0, 0)
	groupOther := mk("groupother", 0o775, 0, other)
	world := mk("world", 0o777, 0, 0)
	worldSticky := mk("worldsticky", 0o777|os.ModeSticky, 0, 0)
	rootLinkInSticky := symlink(good, "sticky/rootlink", 0)
	userLinkInSticky := symlink(good, "sticky/userlink", other)
	relLink := symlink("../good/home/..", "sticky/rellink", 0)
	goodTar := tarball(good, other) // another user's file in a root-only dir
	userTar := tarball(userDir, 0)
	stickyTar := tarball(filepath.Join(base, "sticky"), other) // theirs, in /tmp: they can swap it

	for _, tc := range []struct {
		path   string
		unsafe string // "" = accepted; else the path the error must name
	}{
		{good, ""},
		{inSticky, ""},
		{groupRoot, ""},
		{rootLinkInSticky, ""},
		{relLink, ""},
		{goodTar, ""},
		{usersInSticky, filepath.Join(base, "sticky")}, // their dir in /tmp: they can rename it
		{userDir, userDir},
		{inUserDir, userDir},
		{groupOther, groupOther},
		{world, world},
		{worldSticky, worldSticky},
		{userLinkInSticky, filepath.Join(base, "sticky")},
		{userTar, userDir},
		{stickyTar, filepath.Join(base, "sticky")},
	} {
		f := testFetcher(t, Options{})
		ref := mustParse(t, tc.path)
		src, err := f.Open(context.Background(), ref)
		if err == nil {
			var rc io.ReadCloser
			rc, err = src.OpenLayer(context.Background(), 0)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			src.Close()
		}
		switch {
		case tc.unsafe == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.path, err)
		case tc.unsafe != "" && !errors.Is(err, ErrUnsafeSource):
			t.Errorf("%s: %v, want ErrUnsafeSource", tc.path, err)
		case tc.unsafe != "" && (!strings.Contains(err.Error(), tc.unsafe+" ") || !strings.Contains(err.Error(), "mode ") || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %q should be one line naming %s and its mode", tc.path, err, tc.unsafe)
		case tc.unsafe != "":
			t.Logf("%s", err)
		}
		// Not root: the same sources are read with the caller's own rights.
		f.privileged = false
		if src, err := f.Open(context.Background(), ref); err != nil {
			t.Errorf("%s, unprivileged: %v", tc.path, err)
		} else {
			src.Close()
		}
	}
}

// A FIFO where a tarball was, or named as one, never blocks the open.
func TestLocalTarballFifo(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "rootfs.tar")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, privileged := range []bool{false, true} {
		done := make(chan error, 1)
		go func() {
			fh, err := openSourceFile(fifo, privileged)
			if err == nil {
				fh.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("privileged=%v: %v, want not a regular file", privileged, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("privileged=%v: opening a FIFO blocked", privileged)
		}
	}
	if _, err := ParseRef(fifo); err == nil {
		t.Errorf("ParseRef of a FIFO succeeded")
	}
}

// As root, oci:, oci-archive: and docker-archive: paths follow the same
// rules, and an OCI layout's blobs dirs must be root's alone.
func TestImagePathTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the trust rules apply to root callers, and the test chowns files to another uid")
	}
	const other = 4321
	base := t.TempDir()
	layoutAt := func(dir string) string {
		t.Helper()
		l := newLayout(t, dir)
		img := l.addImage(t, runtime.GOARCH, nil, nil, layerSpec{entries: []tarEntry{{name: "f", body: "x"}}, comp: "gzip"})
		l.tag(t, img.desc, "v1")
		return dir
	}
	good := layoutAt(filepath.Join(base, "good"))
	userDir := filepath.Join(base, "user")
	os.MkdirAll(userDir, 0o755)
	os.Chown(userDir, other, other)
	inUserDir := layoutAt(filepath.Join(userDir, "layout"))
	userBlobs := layoutAt(filepath.Join(base, "userblobs"))
	if err := os.Chown(filepath.Join(userBlobs, "blobs", "sha256"), other, other); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(userDir, "img.tar")
	tarDir(t, good, archive)

	for _, tc := range []struct {
		ref, unsafe string
	}{
		{"oci:" + good + ":v1", ""},
		{"oci:" + inUserDir + ":v1", userDir},
		{"oci:" + userBlobs + ":v1", filepath.Join(userBlobs, "blobs", "sha256")},
		{"oci-archive:" + archive + ":v1", userDir},
		{"docker-archive:" + archive, userDir},
	} {
		f := testFetcher(t, Options{})
		src, err := f.Open(context.Background(), mustParse(t, tc.ref))
		if err == nil {
			src.Close()
		}
		switch {
		case tc.unsafe == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.ref, err)
		case tc.unsafe != "" && (!errors.Is(err, ErrUnsafeSource) || !strings.Contains(err.Error(), tc.unsafe+" (mode ")):
			t.Errorf("%s: %v, want ErrUnsafeSource naming %s", tc.ref, err, tc.unsafe)
		}
		f.privileged = false
		if src, err := f.Open(context.Background(), mustParse(t, tc.ref)); errors.Is(err, ErrUnsafeSource) {
			t.Errorf("%s, unprivileged: %v", tc.ref, err)
		} else if err == nil {
			src.Close()
		}
	}
}
