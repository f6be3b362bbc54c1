package worker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/unpacker"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the worker: Runner starts /proc/self/exe
// __worker, which lands here.
func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

// containerRoot is the host ID container root maps to in these tests: a
// plain unprivileged ID, so the test sees real shifting without sub-ID files.
const containerRoot = 400000

// testRunner is a Runner whose worker is this test binary, in a namespace
// whose maps root writes (so the tests need root).
func testRunner(t *testing.T) *Runner {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the worker's user namespace maps are written by root here: run as root (make test does)")
	}
	maps := []idmap.Mapping{{ContainerID: 0, HostID: containerRoot, Size: 65536}}
	return &Runner{UIDs: maps, GIDs: maps, Parallel: 2}
}

// reachableDir is a temp dir container root can search (t.TempDir's
// parents are 0700 root's).
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// diffDir makes an empty dir in parent that container root owns, as the
// store hands it to the worker.
func diffDir(t *testing.T, parent, name string) string {
	t.Helper()
	p := filepath.Join(parent, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, containerRoot, containerRoot); err != nil {
		t.Fatal(err)
	}
	return p
}

type ent struct {
	name, body string
	uid        int
}

func tarOf(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), Uid: e.uid, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hardlinkTar is a tar of one hardlink name → target.
func hardlinkTar(t *testing.T, name, target string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// job is an UnpackJob of data into diff, its tar-split file next to diff.
func job(t *testing.T, diff string, data []byte) UnpackJob {
	t.Helper()
	ts, err := os.Create(filepath.Join(filepath.Dir(diff), filepath.Base(diff)+"-"+unpacker.TarSplitName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return UnpackJob{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, TarSplit: ts, Diff: diff}
}

// outcome is what done was told about one layer.
type outcome struct {
	res *unpacker.LayerResult
	err error
}

// unpack runs jobs through r and returns each layer's outcome.
func unpack(t *testing.T, r *Runner, jobs ...UnpackJob) []outcome {
	t.Helper()
	out := make([]outcome, len(jobs))
	calls := make([]int, len(jobs))
	err := r.Unpack(context.Background(), jobs, func(i int, res *unpacker.LayerResult, err error) {
		calls[i]++
		out[i] = outcome{res, err}
	})
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	for i, n := range calls {
		if n != 1 {
			t.Errorf("done called %d times for layer %d", n, i)
		}
	}
	return out
}

// mount mounts a tmpfs of size at dir (root only), unmounted at cleanup.
func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// Every class of failure keeps its sentinel across the process: the
// parent's error is the worker's text and errors.Is finds the unpacker's
// sentinel or the errno (and the fs sentinels the errno implies). Each
// failure is a real one, made by a real worker process.
func TestErrorClassesCrossTheProcess(t *testing.T) {
	r := testRunner(t)
	dir := reachableDir(t)
	good := tarOf(t, ent{name: "f", body: "x"})

	// A full filesystem: 1 MiB of tmpfs, 2 MiB of random content.
	full := filepath.Join(dir, "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, full, "size=1m,mode=0755,uid=400000,gid=400000")
	big := make([]byte, 2<<20)
	rand.Read(big)
	// A read-only filesystem whose root container root owns.
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, ro, "size=1m,mode=0755,uid=400000,gid=400000,ro")
	// A dir container root may not chmod: host root's.
	rootOwned := filepath.Join(dir, "rootowned")
	if err := os.Mkdir(rootOwned, 0o755); err != nil {
		t.Fatal(err)
	}
	// A diff dir container root cannot reach: in a dir only host root
	// may search.
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	unreachable := diffDir(t, private, "diff")

	cases := []struct {
		name string
		diff string // "" = a fresh diff dir
		data []byte
		edit func(*UnpackJob)
		r    *Runner
		want []error
	}{
		{name: "unsafe path", data: tarOf(t, ent{name: "../escape", body: "x"}), want: []error{unpacker.ErrUnsafePath}},
		{name: "too large", data: tarOf(t, ent{name: "big", body: strings.Repeat("b", 64<<10)}),
			r: &Runner{UIDs: r.UIDs, GIDs: r.GIDs, Bounds: Bounds{MaxLayerBytes: 8 << 10}}, want: []error{unpacker.ErrLimitExceeded, unpacker.ErrTooLarge}},
		{name: "too many entries", data: tarOf(t, ent{name: "a"}, ent{name: "b"}, ent{name: "c"}),
			r: &Runner{UIDs: r.UIDs, GIDs: r.GIDs, Bounds: Bounds{MaxEntries: 2}}, want: []error{unpacker.ErrLimitExceeded}},
		{name: "digest mismatch", data: good, edit: func(j *UnpackJob) { j.DiffID = digest.FromString("another layer") }, want: []error{unpacker.ErrDigestMismatch}},
		{name: "id outside the mapping", data: tarOf(t, ent{name: "f", body: "x", uid: 70000}), want: []error{unpacker.ErrIDOutsideMapping}},
		{name: "truncated", data: good[:len(good)-1024], want: []error{unpacker.ErrTruncated}},
		{name: "cut in an entry", data: tarOf(t, ent{name: "f", body: strings.Repeat("f", 4096)})[:2048], want: []error{io.ErrUnexpectedEOF}},
		{name: "hardlink to nothing", data: hardlinkTar(t, "stolen", "/etc/shadow"), want: []error{unpacker.ErrInvalidLayer}},
		{name: "name too long", data: tarOf(t, ent{name: strings.Repeat("n", 300), body: "x"}), want: []error{syscall.ENAMETOOLONG}},
		{name: "no space", diff: full, data: tarOf(t, ent{name: "big", body: string(big)}), want: []error{syscall.ENOSPC}},
		{name: "read-only fs", diff: ro, data: good, want: []error{syscall.EROFS}},
		{name: "not permitted", diff: rootOwned, data: good, want: []error{syscall.EPERM, fs.ErrPermission}},
		{name: "permission denied", diff: unreachable, data: good, want: []error{syscall.EACCES, fs.ErrPermission}},
		{name: "no diff dir", diff: filepath.Join(dir, "absent"), data: good, want: []error{syscall.ENOENT, fs.ErrNotExist}},
	}
	for i, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			diff := c.diff
			if diff == "" {
				diff = diffDir(t, dir, "case"+string(rune('a'+i)))
			}
			j := job(t, diff, c.data)
			if c.edit != nil {
				c.edit(&j)
			}
			run := r
			if c.r != nil {
				run = c.r
			}
			got := unpack(t, run, j)[0]
			if got.err == nil {
				t.Fatalf("unpack succeeded: %+v", got.res)
			}
			for _, w := range c.want {
				if !errors.Is(got.err, w) {
					t.Errorf("errors.Is(%q, %v) is false", got.err, w)
				}
			}
			if got.err.Error() == "" || strings.Contains(got.err.Error(), "worker failed without a message") {
				t.Errorf("the worker's message is lost: %q", got.err)
			}
		})
	}
}

// Remove's errors cross too: an immutable file (chattr +i, which container
// root cannot undo) cannot be removed.
func TestRemoveKeepsErrno(t *testing.T) {
	r := testRunner(t)
	// Container root removes entries of dirs it owns.
	dir := diffDir(t, reachableDir(t), "p")
	d := diffDir(t, dir, "d")
	f := filepath.Join(d, "stuck")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setImmutable(f, true); err != nil {
		t.Skipf("cannot make a file immutable on the temp dir's filesystem (chattr +i needs ext4/xfs/tmpfs support): %v", err)
	}
	t.Cleanup(func() { setImmutable(f, false) })
	other := diffDir(t, dir, "other")
	if err := os.WriteFile(filepath.Join(other, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Remove(context.Background(), []string{d, other})
	if !errors.Is(err, syscall.EPERM) || !errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Remove of an immutable file: %q, want one line, errors.Is EPERM", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the other path was not removed: %v", err)
	}
	setImmutable(f, false)
	if err := r.Remove(context.Background(), []string{d}); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", d, err)
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (x/sys/unix lacks it).
const fsImmutableFL = 0x10

func setImmutable(path string, on bool) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags))
}

// publish moves an unpacked layer into the form Squash and Verify read:
// dir/diff and dir/tar-split.json.gz.
func publish(t *testing.T, parent, name string, data []byte, r *Runner) LayerRef {
	t.Helper()
	layer := filepath.Join(parent, name)
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	d := diffDir(t, layer, "diff")
	j := job(t, d, data)
	got := unpack(t, r, j)[0]
	if got.err != nil {
		t.Fatal(got.err)
	}
	if err := os.Rename(j.TarSplit.Name(), filepath.Join(layer, unpacker.TarSplitName)); err != nil {
		t.Fatal(err)
	}
	return LayerRef{Dir: layer, DiffID: got.res.DiffID}
}

// One layer per line, as soon as it is done, in parallel: a bad layer
// fails alone, the others have their results; then Verify and Squash read
// what Unpack wrote, and their failures keep their class too.
func TestUnpackSquashVerify(t *testing.T) {
	r := testRunner(t)
	r.Sync = true
	dir := reachableDir(t)
	var jobs []UnpackJob
	datas := [][]byte{
		tarOf(t, ent{name: "a", body: "layer a"}),
		tarOf(t, ent{name: "../bad", body: "x"}),
		tarOf(t, ent{name: "c", body: "layer c"}),
	}
	for i, data := range datas {
		jobs = append(jobs, job(t, diffDir(t, dir, "l"+string(rune('0'+i))), data))
	}
	got := unpack(t, r, jobs...)
	if got[0].err != nil || got[2].err != nil {
		t.Fatalf("good layers failed: %v, %v", got[0].err, got[2].err)
	}
	if !errors.Is(got[1].err, unpacker.ErrUnsafePath) {
		t.Errorf("bad layer: %v, want ErrUnsafePath", got[1].err)
	}
	if want := digest.FromBytes(datas[2]); got[2].res.DiffID != want {
		t.Errorf("layer c diffID %s, want %s", got[2].res.DiffID, want)
	}
	if b, err := os.ReadFile(filepath.Join(jobs[2].Diff, "c")); err != nil || string(b) != "layer c" {
		t.Errorf("layer c content %q %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(jobs[0].Diff, "a"), &st); err != nil || st.Uid != containerRoot {
		t.Errorf("a owned by %d (%v), want container root's host ID %d", st.Uid, err, containerRoot)
	}

	base := publish(t, dir, "base", tarOf(t, ent{name: "x", body: "base x"}, ent{name: "y", body: "base y"}), r)
	top := publish(t, dir, "top", tarOf(t, ent{name: "x", body: "top x!"}), r)
	ctx := context.Background()
	problems, err := r.Verify(ctx, []LayerRef{base, top}, false)
	if err != nil || len(problems) != 2 || problems[0] != nil || problems[1] != nil {
		t.Fatalf("Verify of sound layers: %v %v", problems, err)
	}
	// Damage: a file changed in place, a file the layer does not name, a
	// layer without its tar-split file.
	if err := os.WriteFile(filepath.Join(top.Dir, "diff", "x"), []byte("evil!!"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base.Dir, "diff", "intruder"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	gone := LayerRef{Dir: filepath.Join(dir, "gone"), DiffID: base.DiffID}
	problems, err = r.Verify(ctx, []LayerRef{base, top, gone}, false)
	if err != nil || len(problems) != 3 {
		t.Fatalf("Verify: %v %v", problems, err)
	}
	for i, want := range []string{"1 files not in the layer, e.g. intruder", "reassemble", ""} {
		if problems[i] == nil || !strings.Contains(problems[i].Error(), want) {
			t.Errorf("problem %d: %v, want %q", i, problems[i], want)
		}
	}
	if !errors.Is(problems[2], fs.ErrNotExist) {
		t.Errorf("missing tar-split: %v, want errors.Is ErrNotExist", problems[2])
	}
	quick, err := r.Verify(ctx, []LayerRef{base, top}, true)
	if err != nil || quick[0] == nil || quick[1] != nil {
		t.Errorf("quick Verify (same-size change not seen, extra file seen): %v %v", quick, err)
	}
	os.Remove(filepath.Join(base.Dir, "diff", "intruder"))
	if err := os.WriteFile(filepath.Join(top.Dir, "diff", "x"), []byte("top x!"), 0o644); err != nil {
		t.Fatal(err)
	}

	sq := diffDir(t, dir, "squashed")
	n, err := r.Squash(ctx, sq, []LayerRef{base, top})
	if err != nil || n == 0 {
		t.Fatalf("Squash: %d bytes, %v", n, err)
	}
	for name, want := range map[string]string{"x": "top x!", "y": "base y"} {
		if b, err := os.ReadFile(filepath.Join(sq, name)); err != nil || string(b) != want {
			t.Errorf("squashed %s: %q %v, want %q", name, b, err, want)
		}
	}
	small := *r
	small.Bounds.MaxEntries = 1
	if _, err := small.Squash(ctx, diffDir(t, dir, "squashed2"), []LayerRef{base, top}); !errors.Is(err, unpacker.ErrLimitExceeded) {
		t.Errorf("Squash over the entry bound: %v, want ErrLimitExceeded", err)
	}
	// A request that fails as a whole (the worker exits 1) keeps its class.
	if _, err := r.Squash(ctx, diffDir(t, dir, "squashed3"), []LayerRef{base, gone}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Squash of a missing layer: %v, want errors.Is ErrNotExist naming it", err)
	}
}

// A stream that cannot be read fails the run with its own error, and the
// worker's take on that layer (an unexpected EOF) does not hide it.
func TestFeedErrorWins(t *testing.T) {
	r := testRunner(t)
	dir := reachableDir(t)
	errDownload := errors.New("download failed")
	data := tarOf(t, ent{name: "f", body: strings.Repeat("f", 200<<10)})
	j := job(t, diffDir(t, dir, "d"), data)
	j.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(data[:100<<10]), iotest{errDownload})), nil
	}
	err := r.Unpack(context.Background(), []UnpackJob{j}, func(int, *unpacker.LayerResult, error) {})
	if !errors.Is(err, errDownload) {
		t.Errorf("Unpack: %v, want the download's error", err)
	}
}

type iotest struct{ err error }

func (e iotest) Read([]byte) (int, error) { return 0, e.err }

// A request the worker cannot serve is answered with an error line, not
// only an exit status.
func TestBadRequestAnswered(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("serve refuses to run as anyone but root: run as root (make test does)")
	}
	for _, req := range []string{`{"op":"frobnicate","body":{}}`, `{"op":"verify","body":{"layers":[],"extra":1}}`, `not json`} {
		var out bytes.Buffer
		if err := serve(context.Background(), strings.NewReader(req), &out); err == nil {
			t.Errorf("%s: served", req)
		}
		if !strings.HasPrefix(out.String(), `{"error":{"msg":"worker `) {
			t.Errorf("%s: answered %s", req, out.String())
		}
	}
}

// The errno crosses as a number: every errno keeps its identity, EDQUOT
// included (no filesystem on this host's kernel gives EDQUOT to a test:
// tmpfs refuses usrquota and XFS uquota here), with the sentinel beside it.
func TestWireErrorRoundTrip(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []error
	}{
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}, []error{syscall.EDQUOT}},
		{errors.Join(unpacker.ErrUnsafePath, syscall.ELOOP), []error{unpacker.ErrUnsafePath, syscall.ELOOP}},
		{context.Canceled, []error{context.Canceled}},
	} {
		got := toWire(c.err).err()
		if got.Error() != c.err.Error() {
			t.Errorf("message %q, want %q", got, c.err)
		}
		for _, w := range c.want {
			if !errors.Is(got, w) {
				t.Errorf("errors.Is(%q, %v) is false", got, w)
			}
		}
	}
	if got := (&wireError{Msg: "x", Code: "no such code"}).err(); len(got.(*remoteError).wraps) != 0 || got.Error() != "x" {
		t.Errorf("unknown code: %#v", got)
	}
	if toWire(nil) != nil || (*wireError)(nil).err() != nil {
		t.Error("nil does not stay nil")
	}
}
