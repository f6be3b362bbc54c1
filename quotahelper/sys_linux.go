package quotahelper

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Constants and structures that golang.org/x/sys/unix does not define
// (checked against x/sys v0.49.0). Values are from the Linux UAPI headers
// named in each comment; they are the same on every Linux architecture.

// From linux/fs.h: struct fsxattr, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR,
// FS_XFLAG_PROJINHERIT.
const (
	fsIocFsGetXattr    = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIocFsSetXattr    = 0x401c5820 // _IOW('X', 32, struct fsxattr)
	fsXflagProjInherit = 0x00000200 // create with parent's projid
)

// fsxattr mirrors struct fsxattr from linux/fs.h (28 bytes).
type fsxattr struct {
	Xflags     uint32 // fsx_xflags
	Extsize    uint32 // fsx_extsize
	Nextents   uint32 // fsx_nextents
	Projid     uint32 // fsx_projid
	Cowextsize uint32 // fsx_cowextsize
	Pad        [8]byte
}

// From linux/quota.h: QCMD and the quota types.
const (
	subCmdShift = 8      // SUBCMDSHIFT
	subCmdMask  = 0x00ff // SUBCMDMASK
	prjQuota    = 2      // PRJQUOTA
)

// qcmd is QCMD(cmd, type) from linux/quota.h.
func qcmd(cmd, typ int) int {
	return cmd<<subCmdShift | typ&subCmdMask
}

// From linux/dqblk_xfs.h: the XFS quota manager commands
// (XQM_CMD(x) = ('X'<<8)+x), struct fs_disk_quota and its flags.
const (
	qXGetQuota     = 'X'<<8 + 3 // Q_XGETQUOTA: get disk limits and usage
	qXSetQLim      = 'X'<<8 + 4 // Q_XSETQLIM: set disk limits
	qXGetQStat     = 'X'<<8 + 5 // Q_XGETQSTAT: get quota subsystem status
	qXGetNextQuota = 'X'<<8 + 9 // Q_XGETNEXTQUOTA: next ID >= id with a dquot

	fsDquotVersion = 1 // FS_DQUOT_VERSION
	fsProjQuota    = 2 // FS_PROJ_QUOTA (d_flags)

	fsDqIsoft    = 1 << 0 // FS_DQ_ISOFT
	fsDqIhard    = 1 << 1 // FS_DQ_IHARD
	fsDqBsoft    = 1 << 2 // FS_DQ_BSOFT
	fsDqBhard    = 1 << 3 // FS_DQ_BHARD
	fsDqRtbsoft  = 1 << 4 // FS_DQ_RTBSOFT
	fsDqRtbhard  = 1 << 5 // FS_DQ_RTBHARD
	fsDqLimitAll = fsDqIsoft | fsDqIhard | fsDqBsoft | fsDqBhard | fsDqRtbsoft | fsDqRtbhard

	fsQuotaPdqAcct = 1 << 4 // FS_QUOTA_PDQ_ACCT (qs_flags)
	fsQuotaPdqEnfd = 1 << 5 // FS_QUOTA_PDQ_ENFD (qs_flags)

	basicBlockSize = 512 // d_blk_* and d_bcount count 512-byte basic blocks
)

// fsDiskQuota mirrors struct fs_disk_quota from linux/dqblk_xfs.h (112 bytes).
type fsDiskQuota struct {
	Version      int8   // d_version
	Flags        int8   // d_flags
	Fieldmask    uint16 // d_fieldmask
	ID           uint32 // d_id
	BlkHardlimit uint64 // d_blk_hardlimit, 512-byte blocks
	BlkSoftlimit uint64 // d_blk_softlimit
	InoHardlimit uint64 // d_ino_hardlimit
	InoSoftlimit uint64 // d_ino_softlimit
	Bcount       uint64 // d_bcount, 512-byte blocks in use
	Icount       uint64 // d_icount
	Itimer       int32  // d_itimer
	Btimer       int32  // d_btimer
	Iwarns       uint16 // d_iwarns
	Bwarns       uint16 // d_bwarns
	ItimerHi     int8   // d_itimer_hi
	BtimerHi     int8   // d_btimer_hi
	RtbtimerHi   int8   // d_rtbtimer_hi
	Padding2     int8   // d_padding2
	RtbHardlimit uint64 // d_rtb_hardlimit
	RtbSoftlimit uint64 // d_rtb_softlimit
	Rtbcount     uint64 // d_rtbcount
	Rtbtimer     int32  // d_rtbtimer
	Rtbwarns     uint16 // d_rtbwarns
	Padding3     int16  // d_padding3
	Padding4     [8]byte
}

// fsQfilestat mirrors fs_qfilestat_t from linux/dqblk_xfs.h.
type fsQfilestat struct {
	Ino      uint64
	Nblks    uint64
	Nextents uint32
}

// fsQuotaStat mirrors struct fs_quota_stat from linux/dqblk_xfs.h (the
// Q_XGETQSTAT reply, 80 bytes on 64-bit). Go's alignment rules give the same
// layout as C's here.
type fsQuotaStat struct {
	Version      int8
	_            int8
	Flags        uint16 // qs_flags: FS_QUOTA_*
	Pad          int8
	Uquota       fsQfilestat
	Gquota       fsQfilestat
	Incoredqs    uint16
	Btimelimit   int32
	Itimelimit   int32
	Rtbtimelimit int32
	Bwarnlimit   uint16
	Iwarnlimit   uint16
}

// Compile-time size checks against the C structures.
var (
	_ [28 - unsafe.Sizeof(fsxattr{})]struct{}
	_ [unsafe.Sizeof(fsxattr{}) - 28]struct{}
	_ [112 - unsafe.Sizeof(fsDiskQuota{})]struct{}
	_ [unsafe.Sizeof(fsDiskQuota{}) - 112]struct{}
)

// fsGetXattr is FS_IOC_FSGETXATTR on f.
func fsGetXattr(f *os.File) (fsxattr, error) {
	var fa fsxattr
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFsGetXattr, uintptr(unsafe.Pointer(&fa)))
	if errno != 0 {
		return fa, &os.PathError{Op: "ioctl FS_IOC_FSGETXATTR", Path: f.Name(), Err: errno}
	}
	return fa, nil
}

// fsSetXattr is FS_IOC_FSSETXATTR on f.
func fsSetXattr(f *os.File, fa *fsxattr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFsSetXattr, uintptr(unsafe.Pointer(fa)))
	if errno != 0 {
		return &os.PathError{Op: "ioctl FS_IOC_FSSETXATTR", Path: f.Name(), Err: errno}
	}
	return nil
}

// quotaTarget says where quotactl calls go: quotactl_fd(2) on an open file
// of the filesystem (Linux 5.14+), or quotactl(2) on its block device.
type quotaTarget struct {
	file   *os.File // any open file on the filesystem (the store dir)
	device string   // block device, found on first need when quotactl_fd is missing
	noFD   bool     // quotactl_fd is not available (ENOSYS) or disabled
}

// quotactl runs one quotactl command of type PRJQUOTA for id with addr.
func (t *quotaTarget) quotactl(cmd int, id uint32, addr unsafe.Pointer) error {
	c := qcmd(cmd, prjQuota)
	if !t.noFD {
		_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, t.file.Fd(), uintptr(c), uintptr(id), uintptr(addr), 0, 0)
		if errno == 0 {
			return nil
		}
		if errno != unix.ENOSYS {
			return &os.PathError{Op: "quotactl_fd " + quotaCmdName(cmd), Path: t.file.Name(), Err: errno}
		}
		t.noFD = true
	}
	if t.device == "" {
		dev, err := blockDevice(t.file)
		if err != nil {
			return err
		}
		t.device = dev
	}
	p, err := unix.BytePtrFromString(t.device)
	if err != nil {
		return &os.PathError{Op: "quotactl " + quotaCmdName(cmd), Path: t.device, Err: err}
	}
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL, uintptr(c), uintptr(unsafe.Pointer(p)), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return &os.PathError{Op: "quotactl " + quotaCmdName(cmd), Path: t.device, Err: errno}
	}
	return nil
}

func quotaCmdName(cmd int) string {
	switch cmd {
	case qXGetQuota:
		return "Q_XGETQUOTA"
	case qXSetQLim:
		return "Q_XSETQLIM"
	case qXGetQStat:
		return "Q_XGETQSTAT"
	case qXGetNextQuota:
		return "Q_XGETNEXTQUOTA"
	}
	return "cmd " + strconv.Itoa(cmd)
}

// blockDevice finds the block device of the filesystem f is on: a mount
// source in /proc/self/mountinfo (parsed by moby/sys/mountinfo, filtered to
// the entries whose major:minor is f's st_dev) that is an absolute path to
// a block device with that very device number. The source is the kernel's
// record of what was mounted, but the stat is what is trusted: a source
// that is not that device is skipped.
func blockDevice(f *os.File) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	major, minor := int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))
	entries, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return int64(m.Major) != major || int64(m.Minor) != minor, false
	})
	if err != nil {
		return "", fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	for _, m := range entries {
		if !strings.HasPrefix(m.Source, "/") {
			continue
		}
		var dst unix.Stat_t
		if err := unix.Stat(m.Source, &dst); err != nil {
			continue
		}
		if dst.Mode&unix.S_IFMT == unix.S_IFBLK && dst.Rdev == st.Dev {
			return m.Source, nil
		}
	}
	return "", &os.PathError{Op: "find block device", Path: f.Name(), Err: errors.New("no block device for this filesystem in /proc/self/mountinfo")}
}

// openat2Dir opens name (one path component) beneath dirfd as a directory
// with no symlinks and no magic links, and with noXDev, on the same mount.
// On kernels without openat2 (before 5.6) it falls back to openat with
// O_NOFOLLOW, which for a single component gives the same guarantee.
func openat2Dir(dirfd int, dirName, name string, flags int, noXDev bool) (*os.File, error) {
	full := dirName + "/" + name
	if dirName == "/" {
		full = "/" + name
	}
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, &os.PathError{Op: "openat2", Path: full, Err: errors.New("not a single path component")}
	}
	flags |= unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	resolve := uint64(unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS)
	if noXDev {
		resolve |= unix.RESOLVE_NO_XDEV
	}
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: uint64(flags), Resolve: resolve})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// O_NOFOLLOW on a symlink gives ELOOP; say it plainly.
			var lst unix.Stat_t
			if unix.Fstatat(dirfd, name, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
				return nil, &os.PathError{Op: "open", Path: full, Err: errors.New("is a symbolic link")}
			}
		}
		return nil, &os.PathError{Op: "openat2", Path: full, Err: err}
	}
	return os.NewFile(uintptr(fd), full), nil
}
