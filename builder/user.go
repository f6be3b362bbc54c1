package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/taproot-dev/taproot/spec"
)

// imageUser is the resolved process user of an image (container IDs).
type imageUser struct {
	UID, GID       uint32
	AdditionalGids []uint32
}

// resolveUser resolves an image config's User against the image's own
// /etc/passwd and /etc/group, read from the topmost of lowersTopFirst (the
// image's layer dirs) that has them.
func resolveUser(user string, lowersTopFirst []string) (imageUser, error) {
	us, err := spec.ParseUser(user)
	if err != nil {
		return imageUser{}, err
	}
	var u imageUser
	if us.User == "" {
		return u, nil // root
	}
	if us.UIDSet {
		u.UID = us.UID
	} else {
		pw, err := readImageFile(lowersTopFirst, "etc/passwd")
		if err != nil {
			return u, fmt.Errorf("image user %q: %w", us.User, err)
		}
		uid, gid, ok := lookupPasswd(pw, us.User)
		if !ok {
			return u, fmt.Errorf("image user %q: no such user in the image's /etc/passwd", us.User)
		}
		u.UID, u.GID = uid, gid
	}
	switch {
	case us.GIDSet:
		u.GID = us.GID
	case us.Group != "":
		gr, err := readImageFile(lowersTopFirst, "etc/group")
		if err != nil {
			return u, fmt.Errorf("image group %q: %w", us.Group, err)
		}
		gid, ok := idOf(gr, us.Group)
		if !ok {
			return u, fmt.Errorf("image group %q: no such group in the image's /etc/group", us.Group)
		}
		u.GID = gid
	case us.UIDSet:
		// Numeric user without group: its primary group from passwd, if any.
		if pw, err := readImageFile(lowersTopFirst, "etc/passwd"); err == nil {
			if ids, ok := entryIDs(pw, 2, strconv.FormatUint(uint64(us.UID), 10), 3); ok {
				u.GID = ids[0]
			}
		}
	}
	return u, nil
}

// maxImageUserFile bounds what is read of the image's /etc/passwd and
// /etc/group: 1 MiB is over 10,000 accounts of ~100 bytes (this Debian 12
// host's /etc/passwd has 26 accounts in 1372 bytes), and keeps what one
// create holds in memory small whatever the image (or a container that
// broke out and rewrote a layer) put there. The previous reader also
// stopped at 1 MiB, per line.
const maxImageUserFile = 1 << 20

// resolveInLayer resolves names as if chrooted into the layer: absolute
// symlinks and ".." stay inside it; /proc magic links and mount crossings
// are refused.
const resolveInLayer = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// readImageFile reads name ("etc/passwd") from the topmost lower that has
// it. A whiteout (0:0 char device) hides the file.
//
// Root reads these files, from layers whose contents the image author
// chose and that a container which broke out (as container root's host
// ID) can rewrite. So: the name is resolved beneath the layer's root
// (openat2 RESOLVE_IN_ROOT) with O_NOFOLLOW, first as an O_PATH fd, so that
// nothing but a regular file is ever opened for reading (a FIFO would block
// the open forever, a device runs its driver's open); fstat of that fd
// decides; the file is then opened O_NONBLOCK, must be the same inode, and
// at most maxImageUserFile bytes are read (a larger file is an error, told
// from fstat before reading).
func readImageFile(lowersTopFirst []string, name string) (string, error) {
	for _, lower := range lowersTopFirst {
		data, found, hidden, err := readLayerFile(lower, name)
		if err != nil {
			return "", err
		}
		if found {
			return data, nil
		}
		if hidden {
			break
		}
	}
	return "", fmt.Errorf("image has no /%s: %w", name, fs.ErrNotExist)
}

// readLayerFile reads name in the layer dir lower. found is false when the
// layer does not have it; hidden is true when the layer has a whiteout for
// it.
func readLayerFile(lower, name string) (data string, found, hidden bool, err error) {
	dfd, err := unix.Open(lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", false, false, nil
		}
		return "", false, false, fmt.Errorf("open layer %s: %w", lower, err)
	}
	defer unix.Close(dfd)
	shown := "/" + name + " in the image (layer " + lower + ")"
	pfd, err := unix.Openat2(dfd, name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveInLayer})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", false, false, nil
		}
		return "", false, false, fmt.Errorf("open %s: %w", shown, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return "", false, false, fmt.Errorf("stat %s: %w", shown, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0:
		return "", false, true, nil
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", false, false, fmt.Errorf("%s is not a regular file (%s)", shown, fileKind(st.Mode))
	case st.Size > maxImageUserFile:
		return "", false, false, fmt.Errorf("%s is %d bytes, larger than the %d bytes taproot reads of it", shown, st.Size, maxImageUserFile)
	}
	rfd, err := unix.Openat2(dfd, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_NOCTTY | unix.O_CLOEXEC, Resolve: resolveInLayer})
	if err != nil {
		return "", false, false, fmt.Errorf("open %s: %w", shown, err)
	}
	f := os.NewFile(uintptr(rfd), shown)
	defer f.Close()
	var now unix.Stat_t
	if err := unix.Fstat(rfd, &now); err != nil {
		return "", false, false, fmt.Errorf("stat %s: %w", shown, err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		return "", false, false, fmt.Errorf("%s changed while being read", shown)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxImageUserFile+1))
	if err != nil {
		return "", false, false, fmt.Errorf("read %s: %w", shown, err)
	}
	if len(b) > maxImageUserFile {
		return "", false, false, fmt.Errorf("%s grew past %d bytes while being read", shown, maxImageUserFile)
	}
	return string(b), true, false, nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("mode %o", mode)
}

// lookupPasswd returns the uid and gid of user name in an /etc/passwd text.
func lookupPasswd(pw, name string) (uid, gid uint32, ok bool) {
	ids, ok := entryIDs(pw, 0, name, 2, 3)
	if !ok {
		return 0, 0, false
	}
	return ids[0], ids[1], true
}

// idOf returns the id (third field) of name in an /etc/passwd text (its
// uid) or an /etc/group text (its gid).
func idOf(text, name string) (uint32, bool) {
	ids, ok := entryIDs(text, 0, name, 2)
	if !ok {
		return 0, false
	}
	return ids[0], true
}

// entryIDs is the one parser of /etc/passwd and /etc/group text, the
// image's and the host's: it returns the numeric fields ids (uint32) of
// the first line whose field key is value. A line without those fields,
// or with something other than a number in one, is passed over, as glibc's
// files backend skips a malformed line.
func entryIDs(text string, key int, value string, ids ...int) ([]uint32, bool) {
	need := key
	for _, i := range ids {
		need = max(need, i)
	}
lines:
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, ":")
		if len(f) <= need || f[key] != value {
			continue
		}
		out := make([]uint32, len(ids))
		for j, i := range ids {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				continue lines
			}
			out[j] = uint32(n)
		}
		return out, true
	}
	return nil, false
}
