package store

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/taproot-dev/taproot/spec"
)

// ImageUser is the resolved process user of an image.
type ImageUser struct {
	UID, GID       uint32
	AdditionalGids []uint32
}

// ResolveUser resolves the image config's User against the image's own
// /etc/passwd and /etc/group, read from the topmost layer that has them.
func (s *Store) ResolveUser(rec ImageRecord) (ImageUser, error) {
	us, err := spec.ParseUser(rec.Config.Config.User)
	if err != nil {
		return ImageUser{}, err
	}
	var u ImageUser
	if us.User == "" {
		return u, nil // root
	}
	plan, err := s.MountPlan(rec)
	if err != nil {
		return u, err
	}
	if us.UIDSet {
		u.UID = us.UID
	} else {
		pw, err := readImageFile(plan.Lowers, "etc/passwd")
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
		gr, err := readImageFile(plan.Lowers, "etc/group")
		if err != nil {
			return u, fmt.Errorf("image group %q: %w", us.Group, err)
		}
		gid, ok := lookupGroup(gr, us.Group)
		if !ok {
			return u, fmt.Errorf("image group %q: no such group in the image's /etc/group", us.Group)
		}
		u.GID = gid
	case us.UIDSet:
		// Numeric user without group: its primary group from passwd, if any.
		if pw, err := readImageFile(plan.Lowers, "etc/passwd"); err == nil {
			for _, line := range strings.Split(pw, "\n") {
				f := strings.Split(line, ":")
				if len(f) >= 4 && f[2] == strconv.FormatUint(uint64(us.UID), 10) {
					if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
						u.GID = uint32(g)
					}
					break
				}
			}
		}
	}
	return u, nil
}

// readImageFile reads name from the topmost lower that has it, through
// os.Root so that no symlink in a layer can lead outside it. A whiteout
// (char device) hides the file.
func readImageFile(lowersTopFirst []string, name string) (string, error) {
	for _, lower := range lowersTopFirst {
		root, err := os.OpenRoot(lower)
		if err != nil {
			continue
		}
		fi, err := root.Lstat(name)
		if err != nil {
			root.Close()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return "", err
		}
		if fi.Mode()&fs.ModeCharDevice != 0 {
			root.Close()
			break
		}
		if !fi.Mode().IsRegular() {
			root.Close()
			return "", fmt.Errorf("/%s in the image is not a regular file", name)
		}
		f, err := root.Open(name)
		root.Close()
		if err != nil {
			return "", err
		}
		data := make([]byte, 0, fi.Size())
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			data = append(data, sc.Bytes()...)
			data = append(data, '\n')
		}
		f.Close()
		return string(data), sc.Err()
	}
	return "", fmt.Errorf("image has no /%s: %w", name, fs.ErrNotExist)
}

func lookupPasswd(pw, name string) (uid, gid uint32, ok bool) {
	for _, line := range strings.Split(pw, "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[0] != name {
			continue
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 == nil && err2 == nil {
			return uint32(u), uint32(g), true
		}
	}
	return 0, 0, false
}

func lookupGroup(gr, name string) (uint32, bool) {
	for _, line := range strings.Split(gr, "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || f[0] != name {
			continue
		}
		if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			return uint32(g), true
		}
	}
	return 0, false
}
