package unpacker

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxChainFds bounds the directory fds a dirChain keeps open. Past that
// depth only the deepest directory stays open and a path that leaves the
// chain is walked again from level maxChainFds. Real images rarely go
// deeper than 30; a hostile one may go 500,000 deep (a 1 MiB PAX name of
// "a/a/..."), which must not cost 500,000 fds.
const maxChainFds = 128

// dirChain resolves directories beneath a root fd one path component at a
// time, each component with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS) from its parent's fd, and keeps the fds of the last
// directory it resolved and of all its ancestors. Tar entries come mostly in
// directory order, so the next entry's parent is usually that directory or
// a close relative: resolving it costs no syscall, or one per new
// component, whatever the depth, and no path handed to the kernel is longer
// than one name (NAME_MAX), so PATH_MAX does not limit the paths of a layer.
//
// Why the chain stays right: it only ever holds the ancestors of the last
// directory resolved, and the unpacker only removes or replaces children of
// the directory it just resolved (an entry's name within its parent), never
// one of its ancestors. Nothing else writes beneath the root meanwhile.
type dirChain struct {
	rootfd int
	path   string // the deepest directory in the chain, "" for the root
	fds    []int  // fds[i] is path[:ends[i]]; -1 once closed (see maxChainFds)
	ends   []int
}

// makeDirFunc makes the missing (ENOENT) or non-directory (ENOTDIR)
// component comp in parentfd; prefix is its path from the root.
type makeDirFunc func(parentfd int, comp, prefix string) error

func (c *dirChain) close() { c.truncate(0) }

func (c *dirChain) truncate(n int) {
	for _, fd := range c.fds[n:] {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	c.fds, c.ends = c.fds[:n], c.ends[:n]
	if n == 0 {
		c.path = ""
	} else {
		c.path = c.path[:c.ends[n-1]]
	}
}

// shared is how many levels of the chain are ancestors of rel (or rel).
func (c *dirChain) shared(rel string) int {
	n := min(len(rel), len(c.path))
	lcp := 0
	for lcp < n && rel[lcp] == c.path[lcp] {
		lcp++
	}
	for i := len(c.ends) - 1; i >= 0; i-- {
		if e := c.ends[i]; e <= lcp && (e == len(rel) || rel[e] == '/') {
			return i + 1
		}
	}
	return 0
}

// openLevel is the deepest open level at or above level k, and its fd.
func (c *dirChain) openLevel(k int) (int, int) {
	for k > 0 && c.fds[k-1] < 0 {
		k--
	}
	if k == 0 {
		return 0, c.rootfd
	}
	return k, c.fds[k-1]
}

// get returns an fd of the directory rel ("." is the root), borrowed: it
// stays valid until the next get or close. Missing components are made by
// mk, or are an error if mk is nil. Errors from the lookup itself are raw
// errnos (ENOENT, ENOTDIR, ELOOP for a symlink, EXDEV) so that callers can
// tell "missing" from unsafe; wrap them with resolveErr.
func (c *dirChain) get(rel string, mk makeDirFunc) (int, error) {
	if rel == "." {
		c.truncate(0) // the caller may now remove any child of the root
		return c.rootfd, nil
	}
	k, cur := c.openLevel(c.shared(rel))
	c.truncate(k)
	start := 0
	if k > 0 {
		if c.ends[k-1] == len(rel) {
			return cur, nil
		}
		start = c.ends[k-1] + 1
	}
	for start < len(rel) {
		end := strings.IndexByte(rel[start:], '/')
		if end < 0 {
			end = len(rel)
		} else {
			end += start
		}
		comp := rel[start:end]
		fd, err := openBeneath(cur, comp, unix.O_PATH|unix.O_DIRECTORY)
		if mk != nil && (err == unix.ENOENT || err == unix.ENOTDIR) {
			if err := mk(cur, comp, rel[:end]); err != nil {
				return -1, err
			}
			fd, err = openBeneath(cur, comp, unix.O_PATH|unix.O_DIRECTORY)
		}
		if err != nil {
			return -1, err
		}
		c.push(fd, rel[:end])
		cur = fd
		start = end + 1
	}
	return cur, nil
}

// push adds the directory p (a child of the chain's deepest) as open fd.
func (c *dirChain) push(fd int, p string) {
	c.fds = append(c.fds, fd)
	c.ends = append(c.ends, len(p))
	c.path = p
	if i := len(c.fds) - 2; i >= maxChainFds {
		unix.Close(c.fds[i])
		c.fds[i] = -1
	}
}

// owned returns an fd of the directory rel that the caller closes, without
// creating anything and without changing the chain (a hardlink's target
// directory is needed together with the entry's own parent).
func (c *dirChain) owned(rel string) (int, error) {
	if rel == "." {
		return openBeneath(c.rootfd, ".", unix.O_PATH|unix.O_DIRECTORY)
	}
	k, cur := c.openLevel(c.shared(rel))
	start := 0
	if k > 0 {
		start = c.ends[k-1] + 1
	}
	if start >= len(rel) {
		return openBeneath(cur, ".", unix.O_PATH|unix.O_DIRECTORY)
	}
	return walkOwned(cur, rel[start:])
}

// walkOwned opens the directory rel beneath dirfd one component at a time;
// the result (and only it) is the caller's to close.
func walkOwned(dirfd int, rel string) (int, error) {
	cur := -1
	at := dirfd
	for comp := range strings.SplitSeq(rel, "/") {
		fd, err := openBeneath(at, comp, unix.O_PATH|unix.O_DIRECTORY)
		if cur >= 0 {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur, at = fd, fd
	}
	return cur, nil
}

// openLong is openBeneath(dirfd, rel, flags) for a path of any length: the
// parent is walked one component at a time when the whole path is too long
// for one syscall (ENAMETOOLONG: PATH_MAX is 4096 bytes).
func openLong(dirfd int, rel string, flags uint64) (int, error) {
	fd, err := openBeneath(dirfd, rel, flags)
	if err != unix.ENAMETOOLONG {
		return fd, err
	}
	dir, base := splitPath(rel)
	if dir == "." {
		return -1, err // one name longer than NAME_MAX
	}
	pfd, err := walkOwned(dirfd, dir)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return openBeneath(pfd, base, flags)
}

// WalkTree calls fn for every entry beneath root (not root itself), parents
// before children, with its slash-separated path relative to root, as
// filepath.WalkDir does, but through directory fds: no path handed to the
// kernel is longer than one name, so trees deeper than PATH_MAX (4096
// bytes) are walked too, and symlinks are never followed. fn returning
// fs.SkipDir skips a directory's children.
func WalkTree(root string, fn func(rel string, d fs.DirEntry) error) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", root, err)
	}
	return walkTreeFd(os.NewFile(uintptr(fd), root), "", fn)
}

func walkTreeFd(dir *os.File, rel string, fn func(string, fs.DirEntry) error) error {
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := e.Name()
		if rel != "" {
			p = rel + "/" + p
		}
		err := fn(p, e)
		if errors.Is(err, fs.SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if !e.IsDir() {
			continue
		}
		cfd, err := unix.Openat(int(dir.Fd()), e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathErr("openat", p, err)
		}
		if err := walkTreeFd(os.NewFile(uintptr(cfd), p), p, fn); err != nil {
			return err
		}
	}
	return nil
}

// maxOpaqueBytes bounds the paths of opaque directories kept for
// dropHiddenWhiteouts; past it the whole layer is walked instead.
const maxOpaqueBytes = 8 << 20

// hiddenWhiteouts records, in overlay form, the directories this stream
// made opaque and whether it made any whiteout.
type hiddenWhiteouts struct {
	whiteouts bool
	dirs      map[string]struct{}
	bytes     int
	all       bool // too many to keep: walk the whole layer
}

func (h *hiddenWhiteouts) opaque(dir string) {
	if h.all {
		return
	}
	if h.dirs == nil {
		h.dirs = map[string]struct{}{}
	}
	if _, ok := h.dirs[dir]; ok {
		return
	}
	if h.bytes += len(dir); h.bytes > maxOpaqueBytes {
		h.all, h.dirs = true, nil
		return
	}
	h.dirs[dir] = struct{}{}
}

// dropHiddenWhiteouts removes, in overlay form, the whiteouts below the
// directories this layer made opaque: they hide nothing (overlay stops at
// an opaque directory), and overlay lists a whiteout in a directory it
// does not merge with a lower one (readdir shows the name, stat says
// ENOENT). Whiteouts in other directories stay: whether a lower layer has
// the directory (and the whiteout hides something) is not known here.
// Cost: a walk of the opaque directories' subtrees, once, and only in
// layers with both whiteouts and opaque directories.
func (u *unpacker) dropHiddenWhiteouts() error {
	h := &u.hidden
	if !h.whiteouts || (!h.all && len(h.dirs) == 0) {
		return nil
	}
	if h.all {
		return dropWhiteoutsBelow(u.rootfd, ".", ".", false)
	}
	for d := range h.dirs {
		fd, err := u.lookupDir(d)
		if err != nil {
			continue // replaced or removed since
		}
		if err := dropWhiteoutsBelow(fd, ".", d, false); err != nil {
			return err
		}
	}
	return nil
}

// dropWhiteoutsBelow removes the 0:0 character devices below the directory
// name in dirfd (path rel) that are inside an opaque directory; opaque says
// it is inside one already (else its xattr decides).
func dropWhiteoutsBelow(dirfd int, name, rel string, opaque bool) error {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return resolveErr(rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if !opaque {
		var v [1]byte
		n, err := unix.Fgetxattr(fd, overlayOpaqueXattr, v[:])
		opaque = err == nil && n == 1 && v[0] == 'y'
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		child := e.Name()
		if rel != "." {
			child = rel + "/" + child
		}
		switch {
		case e.IsDir():
			if err := dropWhiteoutsBelow(fd, e.Name(), child, opaque); err != nil {
				return err
			}
		case opaque && e.Type()&fs.ModeCharDevice != 0 && isWhiteoutAt(fd, e.Name()):
			if err := unix.Unlinkat(fd, e.Name(), 0); err != nil {
				return pathErr("unlinkat", child, err)
			}
		}
	}
	return nil
}

// LstatBeneath stats rel beneath the directory rootfd without following
// any symlink on the way or at the end, for a path of any length (the
// parent is walked one component at a time past PATH_MAX). It is how the
// store looks at a layer dir that container root writes.
func LstatBeneath(rootfd int, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openLong(rootfd, rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}
