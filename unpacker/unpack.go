package unpacker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WhiteoutMode says what to do with whiteout entries.
type WhiteoutMode int

const (
	// OverlayWhiteouts stores whiteouts in overlay form (layer form):
	// ".wh.NAME" becomes a 0:0 character device NAME, and ".wh..wh..opq" in
	// directory D sets the xattr user.overlay.opaque="y" on D.
	OverlayWhiteouts WhiteoutMode = iota
	// ApplyWhiteouts applies whiteouts to content already in the root (used
	// to squash layers into one directory): ".wh.NAME" deletes NAME, and the
	// opaque marker deletes D's existing contents except entries written by
	// this stream.
	ApplyWhiteouts
)

// Options tune Unpack.
type Options struct {
	Whiteouts WhiteoutMode
	// SkipDevices skips block and character device nodes (not whiteouts, and
	// not 0:0 character devices) and counts them in a warning. Callers set it
	// when they run in a user namespace, where mknod of a device needs root in
	// the initial namespace.
	SkipDevices bool
	// MaxBytes caps the layer's file content on disk, each file (each data
	// fragment of a sparse file) counted in whole 4 KiB blocks, so that a
	// million one-byte files or fragments cost what they cost the disk.
	// The uncompressed tar is capped at MaxBytes + max(MaxBytes, 1 MiB)
	// (headers and padding). 0 = no bound.
	MaxBytes int64
	// MaxEntries caps the tar entries plus the directories created for
	// them implicitly (inodes, and the work and bookkeeping per entry).
	// 0 = no bound.
	MaxEntries int64
	// MaxRatio (UnpackLayer only) caps uncompressed/compressed bytes once
	// more than ratioMinBytes are uncompressed: a bomb of zeros stops
	// after ratioMinBytes. 0 = no bound.
	MaxRatio int64
	// Image, if not nil, is a content bound shared with the other layers
	// of the same image (counted as MaxBytes counts).
	Image *Budget
}

// Budget is a byte bound shared by the layers of one image, which are
// unpacked in parallel.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a Budget of max bytes (0 = no bound).
func NewBudget(max int64) *Budget { return &Budget{max: max} }

func (b *Budget) take(n int64) error {
	if b == nil || b.max <= 0 {
		return nil
	}
	if used := b.used.Add(n); used > b.max {
		return &LimitError{Limit: "max_image_bytes", Value: b.max,
			What: fmt.Sprintf("the image's layers unpack to more than %d bytes", used)}
	}
	return nil
}

// Limits of the content and entries of a layer; the [create] keys of the
// config that set them are named in LimitError.
const (
	diskBlock       = 4096
	maxDirTimeBytes = 16 << 20
	// ratioMinBytes: legitimate layers of a few dozen MiB can hold a file
	// of zeros (ratios of 1000 for gzip); past 64 MiB a bomb has cost
	// 64 KiB to send and a fraction of a second to refuse.
	ratioMinBytes = 64 << 20
)

// blocks is the disk space a data fragment [off, off+n) takes at most.
func blocks(off, n int64) int64 {
	if n <= 0 {
		return 0
	}
	first := off &^ (diskBlock - 1)
	last := (off + n + diskBlock - 1) &^ (diskBlock - 1)
	return last - first
}

// Result describes what Unpack did.
type Result struct {
	Bytes    int64    // regular-file content bytes written
	Entries  int      // tar entries read (including skipped ones)
	Warnings []string // one summary line per kind of thing skipped
	// contentRemoved: a whiteout deleted file content this same stream
	// wrote (overlay form), so the tar cannot be rebuilt from disk.
	contentRemoved bool
}

const (
	copyBufferSize      = 128 << 10
	maxXattrBytes       = 64 << 10 // per entry, names plus values
	whiteoutPrefix      = ".wh."
	whiteoutMetaPrefix  = ".wh..wh."
	opaqueMarker        = ".wh..wh..opq"
	overlayOpaqueXattr  = "user.overlay.opaque"
	paxXattrPrefix      = "SCHILY.xattr."
	maxID               = 1<<32 - 2 // (uid_t)-1 means "do not change" to chown
	tarBlockSize        = 512
	tarEndMarkerMinSize = 2 * tarBlockSize
)

// copyBuffers recycles the copy buffers between Unpack calls (the store
// unpacks many layers, often in parallel). 128 KiB: file contents arrive
// from tar-split's pipe in chunks of at most that (see layer.go), so a bigger
// buffer only costs memory — 1 MiB each made a 150-layer create peak at
// ~140 MB RSS in the worker.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

type warnKind int

const (
	warnDevices warnKind = iota
	warnOverlayXattrs
	warnOtherXattrs
	warnXattrBomb
	warnXattrSpecial
	warnXattrFailed
	warnUnknownType
	warnWhiteoutMeta
	numWarnKinds
)

var warnFormats = [numWarnKinds]string{
	warnDevices:       "skipped %d device nodes: creating them needs root in the initial user namespace",
	warnOverlayXattrs: "dropped %d overlay xattrs (user.overlay.*, trusted.overlay.*): an image must not carry overlay metadata",
	warnOtherXattrs:   "dropped %d xattrs other than user.* and security.capability (trusted.*, security.*, system.*)",
	warnXattrBomb:     "dropped all xattrs of %d entries whose xattrs exceed 64 KiB",
	warnXattrSpecial:  "dropped %d xattrs on symlinks, fifos and device nodes",
	warnXattrFailed:   "could not set %d xattrs",
	warnUnknownType:   "skipped %d entries of unsupported tar types",
	warnWhiteoutMeta:  "skipped %d aufs metadata entries (.wh..wh.*)",
}

// pathSet is a set of paths kept as 64-bit seeded hashes: a few dozen
// bytes per path whatever its length (a hostile layer can name a million
// paths of 4 KiB). A collision (about 2^-64 per pair, not steerable without
// the seed) could only skip a hardlink or keep a file under an opaque dir.
type pathSet struct {
	seed maphash.Seed
	m    map[uint64]struct{}
}

func newPathSet() *pathSet { return &pathSet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}} }

func (s *pathSet) has(p string) bool {
	_, ok := s.m[maphash.String(s.seed, p)]
	return ok
}
func (s *pathSet) add(p string) { s.m[maphash.String(s.seed, p)] = struct{}{} }
func (s *pathSet) del(p string) { delete(s.m, maphash.String(s.seed, p)) }

// dirTime is a directory whose times are set once all its children are
// written. dev/ino tell whether the directory at path is still the same one.
type dirTime struct {
	path     string
	dev, ino uint64
	times    [2]unix.Timespec
}

type unpacker struct {
	ctx    context.Context
	opts   Options
	rootfd int
	buf    []byte
	res    Result
	warns  [numWarnKinds]int
	// dirs resolves entries' parent directories (see walk.go).
	dirs dirChain
	// hidden tracks the whiteouts that hide nothing (see dropHiddenWhiteouts).
	hidden hiddenWhiteouts
	// firstXattrErr explains warnXattrFailed.
	firstXattrErr string
	dirTimes      []dirTime
	// dirTimeBytes: the paths kept in dirTimes (bounded, see mkdir).
	dirTimeBytes int
	// disk: content charged against MaxBytes; dirsMade: directories
	// created implicitly, counted with the entries against MaxEntries.
	disk     int64
	dirsMade int64
	rec      *recorder
	// sparse is the current entry's data map if it is sparse; sparseRead
	// says its fragments were read (written out) already.
	sparse     *sparseMap
	sparseRead bool
	// written holds every path this stream created, with all its ancestors
	// (ApplyWhiteouts only: an opaque marker must keep them).
	written *pathSet
	// skipped holds device nodes skipped under SkipDevices, so that
	// hardlinks to them are skipped too instead of failing.
	skipped *pathSet
	// umask is the process umask, -1 if unknown (see createMode).
	umask int
	// euid, egid: the owner a new file gets (the process's, in its user
	// namespace), unless its directory is setgid: setgidDir says the root
	// or some directory entry of this stream was. See setFileMeta.
	euid, egid int
	setgidDir  bool
}

// Unpack extracts the tar stream into root, an existing directory, and reads
// the stream to its end (padding after the end-of-archive marker included).
// See the package comment for the rules it enforces.
func Unpack(ctx context.Context, tarStream io.Reader, root string, opts Options) (Result, error) {
	return unpack(ctx, tarStream, root, opts, nil)
}

// unpack is Unpack, recording tar-split metadata into packer if not nil.
func unpack(ctx context.Context, tarStream io.Reader, root string, opts Options, packer *entryPacker) (Result, error) {
	if opts.Whiteouts != OverlayWhiteouts && opts.Whiteouts != ApplyWhiteouts {
		return Result{}, fmt.Errorf("unpacker: unknown whiteout mode %d", opts.Whiteouts)
	}
	if opts.MaxBytes < 0 || opts.MaxEntries < 0 || opts.MaxRatio < 0 {
		return Result{}, fmt.Errorf("unpacker: negative bound in %+v", opts)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, pathErr("open", root, err)
	}
	defer unix.Close(rootfd)

	u := &unpacker{
		ctx:     ctx,
		opts:    opts,
		rootfd:  rootfd,
		dirs:    dirChain{rootfd: rootfd},
		skipped: newPathSet(),
		umask:   readUmask(),
		euid:    os.Geteuid(),
		egid:    os.Getegid(),
	}
	var rootSt unix.Stat_t
	if err := unix.Fstat(rootfd, &rootSt); err != nil || rootSt.Mode&unix.S_ISGID != 0 {
		u.setgidDir = true
	}
	defer u.dirs.close()
	if opts.Whiteouts == ApplyWhiteouts {
		u.written = newPathSet()
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	u.buf = *bp
	err = u.run(tarStream, packer)
	return u.result(), err
}

func (u *unpacker) run(stream io.Reader, packer *entryPacker) error {
	r := &tailReader{ctx: u.ctx, r: stream}
	if u.opts.MaxBytes > 0 {
		// Headers and padding are not file content but cost as much to
		// read: a gzip bomb of zero padding after the end marker, or of
		// millions of empty entries, must be bounded too. Allow as many
		// bytes of them as of content, and at least 1 MiB.
		r.max = u.opts.MaxBytes + max(u.opts.MaxBytes, 1<<20)
		r.content = u.opts.MaxBytes
		if r.max < 0 { // overflow
			r.max = math.MaxInt64
		}
	}
	u.rec = newRecorder(r, packer)
	tr := tar.NewReader(u.rec)
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) {
			return fmt.Errorf("%w: reading layer tar: %w", ErrInvalidLayer, err)
		}
		if err != nil {
			return fmt.Errorf("reading layer tar: %w", err)
		}
		u.res.Entries++
		if err := u.checkEntries(); err != nil {
			return err
		}
		if u.sparse, err = u.rec.parseSparse(hdr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		u.sparseRead = false
		if err := u.rec.beginPayload(); err != nil {
			return fmt.Errorf("recording tar-split metadata: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if err := u.drain(tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if err := u.checkEntries(); err != nil { // with the dirs it implied
			return err
		}
		if err := u.rec.endEntry(hdr.Name, u.sparse); err != nil {
			return fmt.Errorf("recording tar-split metadata: %w", err)
		}
	}
	if err := u.rec.beginTrailer(); err != nil {
		return fmt.Errorf("recording tar-split metadata: %w", err)
	}
	// archive/tar also reports a clean EOF at an entry boundary (or after a
	// single zero block); only the two zero blocks of the end-of-archive
	// marker make the stream complete.
	if !r.endsWithZeroBlock() {
		return fmt.Errorf("%w: no end-of-archive marker after %d bytes", ErrTruncated, r.n)
	}
	// Read the padding after the marker too: digests must cover every byte.
	if _, err := io.CopyBuffer(writerOnly{io.Discard}, u.rec, u.buf); err != nil {
		return fmt.Errorf("reading layer tar padding: %w", err)
	}
	if err := u.rec.flushSegment(); err != nil {
		return fmt.Errorf("recording tar-split metadata: %w", err)
	}
	return u.fixDirTimes()
}

// drain reads what the unpacker left of the entry's payload (skipped
// entries), so that every payload byte is recorded as payload. A sparse
// entry's fragments are read straight from the recorder (never expanded),
// and archive/tar is then left to skip them as phantom bytes.
func (u *unpacker) drain(tr io.Reader) error {
	if u.sparse == nil {
		_, err := io.CopyBuffer(writerOnly{io.Discard}, tr, u.buf)
		return err
	}
	if !u.sparseRead {
		n, err := io.CopyBuffer(writerOnly{io.Discard}, io.LimitReader(u.rec, u.sparse.data), u.buf)
		if err != nil {
			return err
		}
		if n != u.sparse.data {
			return fmt.Errorf("%w: sparse data ends after %d of %d bytes", io.ErrUnexpectedEOF, n, u.sparse.data)
		}
	}
	u.rec.phantom = u.sparse.data
	return nil
}

func (u *unpacker) checkEntries() error {
	if max := u.opts.MaxEntries; max > 0 && int64(u.res.Entries)+u.dirsMade > max {
		return &LimitError{Limit: "max_layer_entries", Value: max,
			What: fmt.Sprintf("%d entries (tar entries plus the directories they imply)", int64(u.res.Entries)+u.dirsMade)}
	}
	return nil
}

// charge counts n bytes of disk against MaxBytes and the image budget.
func (u *unpacker) charge(n int64) error {
	if max := u.opts.MaxBytes; max > 0 && n > max-u.disk {
		return &LimitError{Limit: "max_layer_bytes", Value: max,
			What: fmt.Sprintf("the layer unpacks to more than %d bytes (file content in 4 KiB blocks)", u.disk+n)}
	}
	u.disk += n
	return u.opts.Image.take(n)
}

func (u *unpacker) result() Result {
	res := u.res
	for k, n := range u.warns {
		if n == 0 {
			continue
		}
		w := fmt.Sprintf(warnFormats[k], n)
		if warnKind(k) == warnXattrFailed && u.firstXattrErr != "" {
			w += " (first: " + u.firstXattrErr + ")"
		}
		res.Warnings = append(res.Warnings, w)
	}
	return res
}

// created records that this stream made path (ApplyWhiteouts bookkeeping,
// and forgetting an earlier skipped device of the same name).
func (u *unpacker) created(p string) {
	u.skipped.del(p)
	if u.written == nil {
		return
	}
	for p != "." {
		if u.written.has(p) {
			break // its ancestors are in already
		}
		u.written.add(p)
		p, _ = splitPath(p)
	}
}

func (u *unpacker) entry(hdr *tar.Header, tr *tar.Reader) error {
	name, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := splitPath(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(name, dir, base)
	}
	if name == "." && hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeXGlobalHeader {
		return fmt.Errorf("%w: a non-directory entry names the root", ErrUnsafePath)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(name, dir, base, hdr)
	// archive/tar already reads the old TypeRegA as TypeReg (or TypeDir).
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return u.file(name, dir, base, hdr, tr)
	case tar.TypeSymlink:
		return u.symlink(name, dir, base, hdr)
	case tar.TypeLink:
		return u.hardlink(name, dir, base, hdr)
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		return u.special(name, dir, base, hdr)
	case tar.TypeXGlobalHeader:
		return nil // PAX global header: not a file
	default:
		u.warns[warnUnknownType]++
		return nil
	}
}

// checkIDs refuses IDs chown would misread: -1 means "leave unchanged".
func checkIDs(hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Uid > maxID {
		return fmt.Errorf("invalid uid %d", hdr.Uid)
	}
	if hdr.Gid < 0 || hdr.Gid > maxID {
		return fmt.Errorf("invalid gid %d", hdr.Gid)
	}
	return nil
}

func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	mtime := unix.Timespec{Sec: hdr.ModTime.Unix(), Nsec: int64(hdr.ModTime.Nanosecond())}
	atime := mtime
	if !hdr.AccessTime.IsZero() {
		atime = unix.Timespec{Sec: hdr.AccessTime.Unix(), Nsec: int64(hdr.AccessTime.Nanosecond())}
	}
	return [2]unix.Timespec{atime, mtime}
}

// chown sets the owner of base in dirfd without following a symlink. An
// unmapped ID makes the kernel answer EINVAL; find out which one it was.
func chown(dirfd int, base, name string, uid, gid int) error {
	err := unix.Fchownat(dirfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return nil
	}
	if err == unix.EINVAL {
		if unix.Fchownat(dirfd, base, uid, -1, unix.AT_SYMLINK_NOFOLLOW) == unix.EINVAL {
			return fmt.Errorf("uid %d is %w (%w)", uid, ErrIDOutsideMapping, pathErr("fchownat", name, err))
		}
		return fmt.Errorf("gid %d is %w (%w)", gid, ErrIDOutsideMapping, pathErr("fchownat", name, err))
	}
	return pathErr("fchownat", name, err)
}

// setMeta applies owner, mode, xattrs and (for non-directories) times to a
// just-created or merged entry. Order matters: chown clears setuid/setgid
// and file capabilities, so chmod and xattrs come after it. fd is an open
// (non-O_PATH) fd of the entry for xattrs, or -1.
func (u *unpacker) setMeta(dirfd int, base, name string, hdr *tar.Header, fd int) error {
	if err := chown(dirfd, base, name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// No AT_SYMLINK_NOFOLLOW (unsupported before fchmodat2): base was
		// just created or checked as a non-symlink by us, and nothing else
		// writes to the root meanwhile.
		if err := unix.Fchmodat(dirfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return pathErr("fchmodat", name, err)
		}
		if hdr.Typeflag == tar.TypeDir && hdr.Mode&unix.S_ISGID != 0 {
			u.setgidDir = true // files made in it from now on get its group
		}
	}
	u.setXattrs(hdr, fd)
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	ts := tarTimes(hdr)
	if err := unix.UtimesNanoAt(dirfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("utimensat", name, err)
	}
	return nil
}

type xattr struct {
	key   string
	value string
}

// setXattrs applies the xattrs of hdr that the policy keeps (see the package
// comment). Failures to set one are warnings, not errors: filesystems and
// user namespaces legitimately refuse some.
func (u *unpacker) setXattrs(hdr *tar.Header, fd int) {
	var keep []xattr
	total := 0
	for k, v := range hdr.PAXRecords {
		key, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(key, "user.overlay."), strings.HasPrefix(key, "trusted.overlay."):
			u.warns[warnOverlayXattrs]++
			continue
		case strings.HasPrefix(key, "user.") && len(key) > len("user."), key == "security.capability":
		default:
			u.warns[warnOtherXattrs]++
			continue
		}
		keep = append(keep, xattr{key, v})
		total += len(key) + len(v)
	}
	if len(keep) == 0 {
		return
	}
	if total > maxXattrBytes {
		u.warns[warnXattrBomb]++
		return
	}
	if fd < 0 {
		u.warns[warnXattrSpecial] += len(keep)
		return
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].key < keep[j].key })
	for _, x := range keep {
		if err := unix.Fsetxattr(fd, x.key, []byte(x.value), 0); err != nil {
			if u.warns[warnXattrFailed] == 0 {
				u.firstXattrErr = fmt.Sprintf("%s on %q: %v", x.key, hdr.Name, err)
			}
			u.warns[warnXattrFailed]++
		}
	}
}

// ensureParent returns a borrowed fd (see dirChain.get) of the directory
// dir, making missing directories on the way.
func (u *unpacker) ensureParent(dir string) (int, error) {
	fd, err := u.dirs.get(dir, u.makeDir)
	if errno, ok := err.(unix.Errno); ok {
		return -1, resolveErr(dir, errno)
	}
	return fd, err
}

// lookupDir returns a borrowed fd of the existing directory dir, or the raw
// errno (ENOENT, ENOTDIR: missing; ELOOP, EXDEV: unsafe).
func (u *unpacker) lookupDir(dir string) (int, error) {
	return u.dirs.get(dir, nil)
}

// makeDir makes a directory an entry implies (mode 0755, owner 0:0, set
// explicitly: the umask and a setgid parent must not decide them) where
// there is none, or where there is a whiteout: sequential application of
// the layer deleted that path, so the directory is made anew and, in
// overlay form, must be opaque to keep hiding what lower layers have
// there. Any other non-directory in the way is an error.
func (u *unpacker) makeDir(parentfd int, comp, prefix string) error {
	opaque := false
	err := unix.Mkdirat(parentfd, comp, 0o700)
	if err == unix.EEXIST {
		if !isWhiteoutAt(parentfd, comp) {
			return resolveErr(prefix, unix.ENOTDIR)
		}
		if err := unix.Unlinkat(parentfd, comp, 0); err != nil {
			return pathErr("unlinkat", prefix, err)
		}
		opaque = u.opts.Whiteouts == OverlayWhiteouts
		err = unix.Mkdirat(parentfd, comp, 0o700)
	}
	if err != nil {
		return pathErr("mkdirat", prefix, err)
	}
	if err := unix.Fchownat(parentfd, comp, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("fchownat", prefix, err)
	}
	if err := unix.Fchmodat(parentfd, comp, 0o755, 0); err != nil {
		return pathErr("fchmodat", prefix, err)
	}
	if opaque {
		if err := setOpaque(parentfd, comp, prefix); err != nil {
			return err
		}
	}
	if opaque {
		u.hidden.opaque(prefix)
	}
	u.createdDir(prefix)
	return nil
}

// createdDir notes a directory created implicitly for an entry's parent.
func (u *unpacker) createdDir(p string) {
	u.dirsMade++
	u.created(p)
}

// setOpaque marks the directory name in dirfd (path p) opaque in overlay
// form.
func setOpaque(dirfd int, name, p string) error {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return resolveErr(p, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking directory opaque: %w", pathErr("fsetxattr", p, err))
	}
	return nil
}

func (u *unpacker) mkdir(name, dir, base string, hdr *tar.Header) error {
	if err := checkIDs(hdr); err != nil {
		return err
	}
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstatat(parentfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	opaque := false
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		// Merge into the existing directory.
	case err == nil:
		// A non-directory this layer wrote there (a whiteout included)
		// hides whatever lower layers have at this path; in overlay form
		// the directory replacing it must go on hiding their children.
		opaque = u.opts.Whiteouts == OverlayWhiteouts
		if err := clearName(parentfd, base); err != nil {
			return err
		}
		fallthrough
	case err == unix.ENOENT:
		if err := unix.Mkdirat(parentfd, base, 0o700); err != nil {
			return pathErr("mkdirat", name, err)
		}
	default:
		return pathErr("fstatat", name, err)
	}
	fd, err := openBeneath(parentfd, base, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return resolveErr(name, err)
	}
	defer unix.Close(fd)
	if err := u.setMeta(parentfd, base, name, hdr, fd); err != nil {
		return err
	}
	if opaque {
		if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking directory opaque: %w", pathErr("fsetxattr", name, err))
		}
		u.hidden.opaque(name)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return pathErr("fstat", name, err)
	}
	// The paths are kept to the end: bound them (a legitimate layer's
	// directory names take a few MiB at most, 100,000 directories of
	// 100-byte paths 10 MB; a hostile one could list a million 4 KiB
	// paths). Measured: 15 MB of them peak the worker at ~55 MiB RSS.
	if u.dirTimeBytes += len(name); u.dirTimeBytes > maxDirTimeBytes {
		return &LimitError{Value: maxDirTimeBytes, What: "the names of the layer's directory entries exceed 16 MiB"}
	}
	u.dirTimes = append(u.dirTimes, dirTime{path: name, dev: st.Dev, ino: st.Ino, times: tarTimes(hdr)})
	u.created(name)
	return nil
}

// Only Write: os.File's ReadFrom would bypass our buffer with its own.
type writerOnly struct{ io.Writer }

func (u *unpacker) file(name, dir, base string, hdr *tar.Header, tr io.Reader) error {
	if err := checkIDs(hdr); err != nil {
		return err
	}
	if hdr.Size < 0 {
		return fmt.Errorf("negative size %d", hdr.Size)
	}
	// Charge before writing anything: a refused layer stops here.
	if u.sparse == nil {
		if err := u.charge(blocks(0, hdr.Size)); err != nil {
			return err
		}
	} else {
		for _, f := range u.sparse.frags {
			if err := u.charge(blocks(f[0], f[1])); err != nil {
				return err
			}
		}
	}
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	// Create first and clear only if the name is taken: most names in a
	// layer are new, and this saves an unlinkat per file. O_EXCL|O_NOFOLLOW
	// fails on anything already there, a symlink included.
	const createFlags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	perm, exact := u.createMode(hdr)
	fd, err := unix.Openat(parentfd, base, createFlags, perm)
	if err == unix.EEXIST {
		if err := clearName(parentfd, base); err != nil {
			return err
		}
		fd, err = unix.Openat(parentfd, base, createFlags, perm)
	}
	if err != nil {
		return pathErr("openat", name, err)
	}
	// The raw fd, not an os.File: os.NewFile costs an fcntl(F_GETFL) per
	// file (60,000 of them for small60k) to ask whether it is non-blocking.
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	if u.sparse != nil {
		if err := u.writeSparse(fd, hdr.Size); err != nil {
			return err
		}
	} else {
		n, err := copyFull(fd, tr, hdr.Size, u.buf)
		u.res.Bytes += n
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("%w: file content ends after %d of %d bytes", io.ErrUnexpectedEOF, n, hdr.Size)
		}
	}
	if err := u.setFileMeta(fd, name, hdr, exact); err != nil {
		return err
	}
	u.created(name)
	closed = true
	if err := unix.Close(fd); err != nil {
		return pathErr("close", name, err)
	}
	return nil
}

// createMode is the mode to create a regular file with, and whether the
// file then has exactly the entry's mode, so that setFileMeta can skip the
// fchmod: only when the entry has no setuid, setgid or sticky bit (a chown
// would clear the first two; they are set after it) and the process umask
// (read once, see readUmask) takes nothing from its permission bits — the
// common 0644 and 0755 under the usual 022. Otherwise the file is made
// 0600 and fchmod sets the mode after the chown, as before. The mode is
// never wider than the entry's.
func (u *unpacker) createMode(hdr *tar.Header) (perm uint32, exact bool) {
	mode := uint32(hdr.Mode) & 0o7777
	if u.umask < 0 || mode&0o7000 != 0 || mode&uint32(u.umask) != 0 {
		return 0o600, false
	}
	return mode, true
}

// readUmask is the process's umask from /proc/self/status (Linux ≥ 4.7), or
// -1 if that cannot be read: umask(2) cannot read it without setting it,
// which would race with other goroutines creating files.
func readUmask() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil || m > 0o777 {
				return -1
			}
			return int(m)
		}
	}
	return -1
}

// copyFull copies n bytes from r to fd, filling buf before each write:
// decompressors hand out at most 32 KiB (gzip) or 128 KiB (zstd) per Read,
// so a large file goes out in buffer-sized writes and a small one in a
// single write. It returns the bytes written; fewer than n with a nil error
// means r ended early (the caller reports it).
func copyFull(fd int, r io.Reader, n int64, buf []byte) (int64, error) {
	var done int64
	for done < n {
		chunk := buf[:min(int64(len(buf)), n-done)]
		m := 0
		var err error
		for m < len(chunk) && err == nil {
			var k int
			k, err = r.Read(chunk[m:])
			m += k
		}
		if m > 0 {
			if werr := writeAll(fd, chunk[:m], -1); werr != nil {
				return done, werr
			}
			done += int64(m)
		}
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// writeAll writes b to fd at off (or at the file offset when off < 0),
// retrying short writes and EINTR as os.File does.
func writeAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		var n int
		var err error
		if off < 0 {
			n, err = unix.Write(fd, b)
		} else {
			n, err = unix.Pwrite(fd, b, off)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
		if off >= 0 {
			off += int64(n)
		}
	}
	return nil
}

// writeSparse writes the current sparse entry's data fragments at their
// offsets, reading them straight from the tar stream, and gives the file
// its apparent size: holes are never written, so they take no disk.
func (u *unpacker) writeSparse(fd int, size int64) error {
	u.sparseRead = true
	for _, fr := range u.sparse.frags {
		off, left := fr[0], fr[1]
		for left > 0 {
			chunk := u.buf[:min(int64(len(u.buf)), left)]
			n, err := io.ReadFull(u.rec, chunk)
			if n > 0 {
				if werr := writeAll(fd, chunk[:n], off); werr != nil {
					return werr
				}
				off += int64(n)
				left -= int64(n)
				u.res.Bytes += int64(n)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return fmt.Errorf("sparse file content: %w", err)
			}
		}
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return err
	}
	return nil
}

// setFileMeta is setMeta for a regular file we just created and hold open
// for writing: owner, mode and times through the fd (fchown, fchmod,
// futimens), with no path lookup. Same order as setMeta.
func (u *unpacker) setFileMeta(fd int, name string, hdr *tar.Header, modeExact bool) error {
	// A file this stream just created is the process's own (0:0 in the
	// worker's namespace, as most image files are) unless its directory
	// is setgid; then the fchown would change nothing and is skipped.
	if u.setgidDir || hdr.Uid != u.euid || hdr.Gid != u.egid {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			if err == unix.EINVAL {
				if unix.Fchown(fd, hdr.Uid, -1) == unix.EINVAL {
					return fmt.Errorf("uid %d is %w (%w)", hdr.Uid, ErrIDOutsideMapping, pathErr("fchown", name, err))
				}
				return fmt.Errorf("gid %d is %w (%w)", hdr.Gid, ErrIDOutsideMapping, pathErr("fchown", name, err))
			}
			return pathErr("fchown", name, err)
		}
	}
	if !modeExact {
		if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
			return pathErr("fchmod", name, err)
		}
	}
	u.setXattrs(hdr, fd)
	ts := tarTimes(hdr)
	if err := futimens(fd, &ts); err != nil {
		return pathErr("futimens", name, err)
	}
	return nil
}

// futimens is utimensat(fd, NULL, ts, 0): x/sys has no wrapper taking a
// NULL path, and AT_EMPTY_PATH is not accepted by every kernel we support.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func (u *unpacker) symlink(name, dir, base string, hdr *tar.Header) error {
	if err := checkIDs(hdr); err != nil {
		return err
	}
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	// The target is data: stored as is, never resolved. As for files,
	// clear the name only when it is taken.
	err = unix.Symlinkat(hdr.Linkname, parentfd, base)
	if err == unix.EEXIST {
		if err := clearName(parentfd, base); err != nil {
			return err
		}
		err = unix.Symlinkat(hdr.Linkname, parentfd, base)
	}
	if err != nil {
		return pathErr("symlinkat", name, err)
	}
	if err := u.setMeta(parentfd, base, name, hdr, -1); err != nil {
		return err
	}
	u.created(name)
	return nil
}

// hardlink links name to an existing non-directory beneath the root. The
// header's owner, mode and times are not applied: they belong to the shared
// inode, which the target's own entry already set.
func (u *unpacker) hardlink(name, dir, base string, hdr *tar.Header) error {
	target, err := cleanPath(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "." {
		return fmt.Errorf("%w: hardlink to the root directory", ErrInvalidLayer)
	}
	if u.skipped.has(target) {
		// Its target was a device node we skipped: skip the link too.
		u.warns[warnDevices]++
		u.skipped.add(name)
		return nil
	}
	tdir, tbase := splitPath(target)
	tparent, err := u.dirs.owned(tdir)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return fmt.Errorf("%w: hardlink target %q does not exist", ErrInvalidLayer, hdr.Linkname)
	}
	if err != nil {
		return fmt.Errorf("hardlink target: %w", resolveErr(tdir, err))
	}
	defer unix.Close(tparent)
	var tst unix.Stat_t
	if err := unix.Fstatat(tparent, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return fmt.Errorf("%w: hardlink target %q does not exist", ErrInvalidLayer, hdr.Linkname)
		}
		return pathErr("fstatat", target, err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hardlink target %q is a directory", ErrInvalidLayer, hdr.Linkname)
	}
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(parentfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		u.created(name)
		return nil // already that very file (e.g. a link to itself)
	}
	if err := clearName(parentfd, base); err != nil {
		return err
	}
	// flags 0: a symlink target is linked itself, never followed.
	if err := unix.Linkat(tparent, tbase, parentfd, base, 0); err != nil {
		return pathErr("linkat", name, err)
	}
	u.created(name)
	return nil
}

func (u *unpacker) special(name, dir, base string, hdr *tar.Header) error {
	if err := checkIDs(hdr); err != nil {
		return err
	}
	var mode uint32
	dev := 0
	switch hdr.Typeflag {
	case tar.TypeFifo:
		mode = unix.S_IFIFO
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
			return fmt.Errorf("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
		}
		mode = unix.S_IFBLK
		if hdr.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		}
		whiteoutDev := hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0
		// A 0:0 character device is an overlay whiteout, which any user
		// namespace may create: keep it.
		if u.opts.SkipDevices && !whiteoutDev {
			u.warns[warnDevices]++
			u.skipped.add(name)
			return nil
		}
		dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	}
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	if err := clearName(parentfd, base); err != nil {
		return err
	}
	if err := unix.Mknodat(parentfd, base, mode|0o600, dev); err != nil {
		err = pathErr("mknodat", name, err)
		if errors.Is(err, unix.EPERM) && mode != unix.S_IFIFO {
			return fmt.Errorf("creating a device node needs root in the initial user namespace (set SkipDevices): %w", err)
		}
		return err
	}
	if err := u.setMeta(parentfd, base, name, hdr, -1); err != nil {
		return err
	}
	u.created(name)
	return nil
}

// whiteout handles ".wh.*" entries according to the whiteout mode.
func (u *unpacker) whiteout(name, dir, base string) error {
	if base == opaqueMarker {
		fd, err := u.ensureParent(dir)
		if err != nil {
			return err
		}
		if u.opts.Whiteouts == ApplyWhiteouts {
			return u.purgeOpaque(fd, dir)
		}
		u.hidden.opaque(dir)
		return setOpaque(fd, ".", dir)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		u.warns[warnWhiteoutMeta]++
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("%w: whiteout %q names no entry", ErrUnsafePath, name)
	}
	tpath := target
	if dir != "." {
		tpath = dir + "/" + target
	}
	if u.opts.Whiteouts == ApplyWhiteouts {
		parentfd, err := u.lookupDir(dir)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return nil // nothing there to delete
		}
		if err != nil {
			return resolveErr(dir, err)
		}
		return removeAt(parentfd, target)
	}
	// Overlay form: what this layer wrote at target so far is deleted, as
	// sequential application of the layer would, and the whiteout hides
	// the lower layers' target too.
	parentfd, err := u.ensureParent(dir)
	if err != nil {
		return err
	}
	if !u.res.contentRemoved {
		lost, err := holdsContent(parentfd, target)
		if err != nil {
			return err
		}
		u.res.contentRemoved = lost
	}
	if err := clearName(parentfd, target); err != nil {
		return err
	}
	// Overlay's whiteout: a 0:0 character device, allowed in a user
	// namespace since Linux 5.8.
	if err := unix.Mknodat(parentfd, target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("creating whiteout: %w", pathErr("mknodat", tpath, err))
	}
	u.hidden.whiteouts = true
	u.created(tpath)
	return nil
}

// purgeOpaque empties the directory dirfd (path rel) for an opaque marker in
// ApplyWhiteouts mode, keeping what this stream wrote: a kept directory is
// itself purged of everything this stream did not write, as overlay would
// hide all lower content below an opaque directory.
func (u *unpacker) purgeOpaque(dirfd int, rel string) error {
	fd, err := openBeneath(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return resolveErr(rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		child := n
		if rel != "." {
			child = rel + "/" + n
		}
		if !u.written.has(child) {
			if err := removeAt(fd, n); err != nil {
				return err
			}
			continue
		}
		cfd, err := openBeneath(fd, n, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue // a kept non-directory
		}
		if err != nil {
			return resolveErr(child, err)
		}
		err = u.purgeOpaque(cfd, child)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// fixDirTimes sets directory times last: writing children changes them.
// Directories since removed or replaced are skipped. Whiteouts that hide
// nothing are dropped first, as that changes directories too.
func (u *unpacker) fixDirTimes() error {
	if err := u.dropHiddenWhiteouts(); err != nil {
		return err
	}
	for _, d := range u.dirTimes {
		dir, base := splitPath(d.path)
		pfd, err := u.lookupDir(dir)
		if err != nil {
			if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
				continue
			}
			return resolveErr(dir, err)
		}
		var st unix.Stat_t
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == d.dev && st.Ino == d.ino {
			err = unix.UtimesNanoAt(pfd, base, d.times[:], unix.AT_SYMLINK_NOFOLLOW)
			if err != nil {
				return pathErr("utimensat", d.path, err)
			}
		}
	}
	return nil
}

// tailReader checks ctx on every read and remembers the last two tar blocks read,
// to tell a complete archive from one cut at an entry boundary.
type tailReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	max int64 // > 0: reading more than max bytes is a *LimitError
	// content is the MaxBytes that max derives from, for the error.
	content int64
	tail    [tarEndMarkerMinSize]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := t.r.Read(p)
	if n >= len(t.tail) {
		copy(t.tail[:], p[n-len(t.tail):n])
	} else if n > 0 {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[len(t.tail)-n:], p[:n])
	}
	t.n += int64(n)
	if t.max > 0 && t.n > t.max {
		return n, &LimitError{Limit: "max_layer_bytes", Value: t.content,
			What: fmt.Sprintf("the uncompressed tar exceeds %d bytes (the bound on content plus as much again, at least 1 MiB, for headers and padding)", t.max)}
	}
	return n, err
}

func (t *tailReader) endsWithZeroBlock() bool {
	if t.n < tarEndMarkerMinSize {
		return false
	}
	for _, b := range t.tail {
		if b != 0 {
			return false
		}
	}
	return true
}
