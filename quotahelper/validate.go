package quotahelper

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxListSize bounds the stores list the helper reads.
const maxListSize = 1 << 20

// minInodeSize is the smallest inode XFS has (256 bytes, v4 filesystems;
// v5 ones have 512): no filesystem of N bytes holds more than N/256 inodes,
// so set-limit refuses a larger inode count as a mistake.
const minInodeSize = 256

// parseCount accepts a plain decimal count of what ("size" for bytes,
// "inode count"): digits only (no sign, no spaces, no unit, no base
// prefix), greater than zero (XFS reads a hard limit of 0 as no limit),
// fitting uint64. The caller checks it against the filesystem's size.
func parseCount(what, s string) (uint64, error) {
	n, err := parseDecimal(s)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: %w", what, s, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("invalid %s %q: must be greater than zero (use clear to remove a limit)", what, s)
	}
	return n, nil
}

var errNotDecimal = errors.New("want a decimal number")

func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, errNotDecimal
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errNotDecimal
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// checkCleanAbs refuses a path that is not absolute and clean (this also
// refuses any ".." or "." component and doubled or trailing slashes).
func checkCleanAbs(p string) error {
	if p == "" || !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q is not clean and absolute", p)
	}
	return nil
}

// splitImageDir splits <store>/images/<id> into store and id.
func splitImageDir(imageDir string) (store, id string, err error) {
	if err := checkCleanAbs(imageDir); err != nil {
		return "", "", err
	}
	id = path.Base(imageDir)
	parent := path.Dir(imageDir)
	if path.Base(parent) != "images" || path.Dir(parent) == "/" {
		return "", "", fmt.Errorf("%s is not of the form <store>/images/<id>", imageDir)
	}
	if id == "" || id == "." || id == ".." || id == "/" || len(id) > 255 {
		return "", "", fmt.Errorf("%s has no valid image id", imageDir)
	}
	return path.Dir(parent), id, nil
}

// readStores reads the stores list after checking that root (or, in a
// non-setuid run, the caller) owns it and its directories, and that no one
// else can write them.
func (p *privs) readStores() (map[string]bool, error) {
	if err := checkCleanAbs(p.listPath); err != nil {
		return nil, fmt.Errorf("stores list: %w", err)
	}
	dir, err := p.walkTrusted(path.Dir(p.listPath), false, p.trustedOwner)
	if err != nil {
		return nil, fmt.Errorf("stores list: %w", err)
	}
	defer dir.Close()
	var dst unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &dst); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: dir.Name(), Err: err}
	}
	if err := checkAncestor(dir.Name(), &dst, p.trustedOwner); err != nil {
		return nil, fmt.Errorf("stores list: %w", err)
	}
	fd, err := unix.Openat(int(dir.Fd()), path.Base(p.listPath), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open stores list", Path: p.listPath, Err: err}
	}
	f := os.NewFile(uintptr(fd), p.listPath)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: p.listPath, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("stores list %s is not a regular file", p.listPath)
	}
	if !p.trustedOwner(st.Uid) || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("stores list %s must be owned by root and writable only by its owner (uid %d, mode %#o)", p.listPath, st.Uid, st.Mode&0o7777)
	}
	stores := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(f, maxListSize))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkCleanAbs(line); err != nil || line == "/" {
			return nil, fmt.Errorf("stores list %s line %d: %q is not a clean absolute path", p.listPath, n, line)
		}
		stores[line] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read stores list %s: %w", p.listPath, err)
	}
	return stores, nil
}

// trustedOwner says whether uid may own the stores list and its dirs: root,
// or the caller itself when the helper runs with no more rights than it.
func (p *privs) trustedOwner(uid uint32) bool {
	return uid == 0 || (!p.setuid && int(uid) == p.ruid)
}

// checkAncestor refuses a directory that someone other than root or owner
// could change: owned by another user, or writable by group or others
// without the sticky bit.
func checkAncestor(name string, st *unix.Stat_t, ok func(uid uint32) bool) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", name)
	}
	if !ok(st.Uid) {
		return fmt.Errorf("%s is owned by uid %d, not by root or the caller", name, st.Uid)
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("%s is writable by group or others (mode %#o)", name, st.Mode&0o7777)
	}
	return nil
}

// walkTrusted opens dir (clean, absolute) one component at a time from /,
// following no symlink, and checks every directory on the way with
// checkAncestor and okOwner. lastReadable opens the last one O_RDONLY instead of O_PATH.
func (p *privs) walkTrusted(dir string, lastReadable bool, okOwner func(uid uint32) bool) (*os.File, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	cur := os.NewFile(uintptr(fd), "/")
	var comps []string
	if dir != "/" {
		comps = strings.Split(dir[1:], "/")
	}
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstat(int(cur.Fd()), &st); err != nil {
			cur.Close()
			return nil, &os.PathError{Op: "fstat", Path: cur.Name(), Err: err}
		}
		if i == len(comps) {
			return cur, nil // the caller checks the last one its own way
		}
		if err := checkAncestor(cur.Name(), &st, okOwner); err != nil {
			cur.Close()
			return nil, err
		}
		flags := unix.O_PATH
		if i == len(comps)-1 && lastReadable {
			flags = unix.O_RDONLY
		}
		next, err := openat2Dir(int(cur.Fd()), cur.Name(), comps[i], flags, false)
		cur.Close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
}

// openStore opens a listed store and checks it: a directory owned by the
// caller (root may act on any listed store), writable by no one else.
func (p *privs) openStore(storeDir string) (*os.File, *unix.Stat_t, error) {
	// The parent chain must be root's or the caller's.
	f, err := p.walkTrusted(storeDir, true, func(uid uint32) bool { return uid == 0 || int(uid) == p.ruid })
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, &os.PathError{Op: "fstat", Path: storeDir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return nil, nil, fmt.Errorf("store %s is not a directory", storeDir)
	}
	if p.ruid != 0 && int(st.Uid) != p.ruid {
		f.Close()
		return nil, nil, fmt.Errorf("store %s is owned by uid %d, not by the caller (uid %d)", storeDir, st.Uid, p.ruid)
	}
	if st.Mode&0o022 != 0 {
		f.Close()
		return nil, nil, fmt.Errorf("store %s is writable by group or others (mode %#o)", storeDir, st.Mode&0o7777)
	}
	return f, &st, nil
}

// openListedStore opens storeDir to act on subject (the store itself, or a
// path inside it): storeDir must be in the stores list, pass openStore's
// checks, and be the only owner's store on its filesystem (checkOneOwner).
func (p *privs) openListedStore(storeDir, subject string) (*os.File, *unix.Stat_t, error) {
	stores, err := p.readStores()
	if err != nil {
		return nil, nil, err
	}
	if !stores[storeDir] {
		inside := "inside "
		if subject == storeDir {
			inside = ""
		}
		return nil, nil, fmt.Errorf("%s is not %sa store listed in %s", subject, inside, p.listPath)
	}
	store, sst, err := p.openStore(storeDir)
	if err != nil {
		return nil, nil, err
	}
	if err := p.checkOneOwner(stores, storeDir, sst); err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, sst, nil
}

// image is an opened, checked image dir and the dirs the helper touches.
type image struct {
	store  *os.File
	images *os.File
	dir    *os.File // <store>/images/<id>
	st     unix.Stat_t
	diff   *os.File // nil if absent
	work   *os.File // nil if absent
}

func (img *image) dirs() []*os.File {
	out := []*os.File{img.dir}
	if img.diff != nil {
		out = append(out, img.diff)
	}
	if img.work != nil {
		out = append(out, img.work)
	}
	return out
}

func (img *image) close() {
	for _, f := range []*os.File{img.store, img.images, img.dir, img.diff, img.work} {
		if f != nil {
			f.Close()
		}
	}
}

// openImage checks imageDir against the stores list and opens it, and its
// diff/ and work/ when present, with no symlink and no mount crossing below
// the store, checking each is a directory on the store's filesystem
// writable by no one else, and owned by the store's owner (diff/ and work/
// may instead be owned by the store's container root, see doc.go). The
// store must be the only owner's store on its filesystem.
func (p *privs) openImage(imageDir string) (*image, error) {
	storeDir, id, err := splitImageDir(imageDir)
	if err != nil {
		return nil, err
	}
	store, sst, err := p.openListedStore(storeDir, imageDir)
	if err != nil {
		return nil, err
	}
	img := &image{store: store}
	owner := sst.Uid
	// Container root is read from the store's meta only when a dir is not
	// the owner's: stores whose container root is their owner need no meta.
	var cr *containerRoot
	ownerOrContainerRoot := func(name string, uid uint32) error {
		if uid == owner {
			return nil
		}
		if cr == nil {
			c, err := readContainerRoot(store, sst)
			if err != nil {
				return fmt.Errorf("%s is owned by uid %d, not by the store's owner (uid %d), and the store's container root is unknown: %w", name, uid, owner, err)
			}
			cr = &c
		}
		if cr.ok && uid == cr.uid {
			return nil
		}
		return fmt.Errorf("%s is owned by uid %d, not by the store's owner (uid %d) or its container root (%s)", name, uid, owner, cr)
	}
	ownerOnly := func(name string, uid uint32) error {
		if uid != owner {
			return fmt.Errorf("%s is owned by uid %d, not by the store's owner (uid %d)", name, uid, owner)
		}
		return nil
	}
	// open opens and checks parent/name; an optional one that does not
	// exist gives no file and no error.
	open := func(parent *os.File, name string, optional bool, checkOwner func(string, uint32) error) (*os.File, *unix.Stat_t, error) {
		f, err := openat2Dir(int(parent.Fd()), parent.Name(), name, unix.O_RDONLY, true)
		if optional && errors.Is(err, unix.ENOENT) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, nil, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
		}
		switch {
		case st.Dev != sst.Dev:
			err = fmt.Errorf("%s is not on the store's filesystem", f.Name())
		case st.Mode&0o022 != 0:
			err = fmt.Errorf("%s is writable by group or others (mode %#o)", f.Name(), st.Mode&0o7777)
		default:
			err = checkOwner(f.Name(), st.Uid)
		}
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return f, &st, nil
	}
	var st *unix.Stat_t
	if img.images, _, err = open(store, "images", false, ownerOnly); err != nil {
		img.close()
		return nil, err
	}
	if img.dir, st, err = open(img.images, id, false, ownerOnly); err != nil {
		img.close()
		return nil, err
	}
	img.st = *st
	if img.diff, _, err = open(img.dir, "diff", true, ownerOrContainerRoot); err != nil {
		img.close()
		return nil, err
	}
	if img.work, _, err = open(img.dir, "work", true, ownerOrContainerRoot); err != nil {
		img.close()
		return nil, err
	}
	return img, nil
}
