package overlayxfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/taproot-dev/taproot/internal/fsname"
	"golang.org/x/sys/unix"
)

// Filesystem facts and the root-only steps of init-store: a loop-backed XFS
// file with project quotas, and the root-owned list of stores that the
// taproot-quota helper trusts.

// FilesystemType names the filesystem dir is on (fsname.Of: "xfs",
// "ext4", "btrfs", "tmpfs", "overlay", "nfs"; another as its statfs magic
// in hex), in the words taproot-quota check-store uses.
func FilesystemType(dir string) (string, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return "", &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return fsname.Of(sfs.Type), nil
}

// Capacity is the total size in bytes of the filesystem dir is on.
func Capacity(dir string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return sfs.Blocks * uint64(sfs.Bsize), nil
}

// ProjectQuotaEnabled says whether dir is on XFS mounted with project
// quotas enforced (mount option pquota/prjquota, which XFS reports as
// "prjquota" in its superblock options; "pqnoenforce" only accounts and
// counts as not enabled).
func ProjectQuotaEnabled(dir string) (bool, error) {
	fsType, err := FilesystemType(dir)
	if err != nil || fsType != "xfs" {
		return false, err
	}
	m, err := mountOf(dir)
	if err != nil {
		return false, err
	}
	for _, o := range strings.Split(m.VFSOptions, ",") {
		if o == "prjquota" || o == "pquota" {
			return true, nil
		}
	}
	return false, nil
}

// mountOf finds the mount of the filesystem dir is on, by st_dev in
// /proc/self/mountinfo (moby/sys/mountinfo, which undoes the kernel's
// octal escapes): the one mounted at dir if there is one, else the last
// matching entry (the mount on top). Every entry of one st_dev shares the
// superblock, so its superblock options are the same whichever is picked.
func mountOf(dir string) (*mountinfo.Info, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	major, minor := int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))
	entries, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return int64(m.Major) != major || int64(m.Minor) != minor, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(entries) == 0 {
		return nil, &os.PathError{Op: "find mount", Path: dir, Err: errors.New("no entry in /proc/self/mountinfo")}
	}
	for _, m := range entries {
		if m.Mountpoint == dir {
			return m, nil
		}
	}
	return entries[len(entries)-1], nil
}

// IsMountPoint says whether a mount of this process's namespace is on dir
// (a clean absolute path, compared with mountinfo's unescaped mount points).
func IsMountPoint(dir string) (bool, error) {
	entries, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	return len(entries) > 0, nil
}

// lookTool finds an admin tool in PATH or the sbin dirs, which a daemon's
// PATH may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin, /sbin", name)
}

func run(ctx context.Context, tool string, args ...string) error {
	p, err := lookTool(tool)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, p, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// MakeLoopXFS creates backingFile as a sparse file of sizeBytes (it must not
// exist), makes an XFS filesystem in it with mkfs.xfs, and mounts it on
// mountPoint (created 0755 if missing) with mount -o loop,pquota,noatime.
// Root only. mkfs.xfs refuses filesystems under 300 MB.
func MakeLoopXFS(ctx context.Context, backingFile string, sizeBytes int64, mountPoint string) error {
	if sizeBytes <= 0 {
		return fmt.Errorf("loop XFS size %d: must be positive", sizeBytes)
	}
	f, err := os.OpenFile(backingFile, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		os.Remove(backingFile)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(backingFile)
		return err
	}
	if err := run(ctx, "mkfs.xfs", "-q", backingFile); err != nil {
		os.Remove(backingFile)
		return err
	}
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		return err
	}
	return run(ctx, "mount", "-t", "xfs", "-o", "loop,pquota,noatime", backingFile, mountPoint)
}

// UnmountLoopXFS unmounts mountPoint and detaches its loop device (mount(8)
// sets autoclear, so the detach usually has already happened; a device that
// is already free is fine).
func UnmountLoopXFS(ctx context.Context, mountPoint string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mountPoint = filepath.Clean(mountPoint)
	m, err := mountOf(mountPoint)
	if err != nil {
		return err
	}
	if m.Mountpoint != mountPoint {
		return &os.PathError{Op: "unmount", Path: mountPoint, Err: errors.New("not a mount point")}
	}
	if err := unix.Unmount(mountPoint, 0); err != nil {
		return &os.PathError{Op: "unmount", Path: mountPoint, Err: err}
	}
	if !strings.HasPrefix(m.Source, "/dev/loop") {
		return nil
	}
	fd, err := unix.Open(m.Source, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: m.Source, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return &os.PathError{Op: "ioctl LOOP_CLR_FD", Path: m.Source, Err: err}
	}
	return nil
}

// RegisterStore adds storeDir to the stores list listFile (normally
// /etc/taproot/stores), creating the list root-owned 0644 in a 0755 dir.
// Root only. Adding a store already listed is a no-op.
func RegisterStore(listFile, storeDir string) error {
	return editStores(listFile, storeDir, true)
}

// UnregisterStore removes storeDir from the stores list. Removing a store
// that is not listed, or from a list that does not exist, is a no-op.
func UnregisterStore(listFile, storeDir string) error {
	return editStores(listFile, storeDir, false)
}

func editStores(listFile, storeDir string, add bool) error {
	if !filepath.IsAbs(storeDir) || filepath.Clean(storeDir) != storeDir || storeDir == "/" || strings.ContainsAny(storeDir, "\n\x00") {
		return fmt.Errorf("store path %q must be clean and absolute", storeDir)
	}
	old, err := os.ReadFile(listFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if errors.Is(err, os.ErrNotExist) && !add {
		return nil
	}
	var lines []string
	found := false
	for _, l := range strings.Split(string(old), "\n") {
		if strings.TrimSpace(l) == storeDir {
			found = true
			if !add {
				continue
			}
		}
		lines = append(lines, l)
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if found == add {
		return nil // already listed / already absent
	}
	if add {
		lines = append(lines, storeDir)
	}
	content := strings.Join(lines, "\n")
	if content != "" {
		content += "\n"
	}
	dir := filepath.Dir(listFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".stores-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), listFile); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
