package quotahelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
	"unsafe"

	"github.com/taproot-dev/taproot/internal/fsname"
	"golang.org/x/sys/unix"
)

// StoresListPath is the root-owned list of stores the helper acts on, one
// absolute path a line. It is a constant on purpose: a setuid helper must
// not let its caller point it at another list. taproot, which writes the
// list, has its own copy (overlayxfs.StoresListPath): it does not link this
// package. TestClientAgrees pins the two.
const StoresListPath = "/etc/taproot/stores"

// EnvStoresList overrides StoresListPath, and is honoured only when the
// helper is NOT running setuid or setgid (real IDs equal effective IDs), as
// in tests run by root. A setuid run ignores it.
const EnvStoresList = "TAPROOT_QUOTA_STORES_LIST"

// envNoQuotactlFD, set to "1" in a non-setuid run, makes the helper use
// quotactl(2) on the block device instead of quotactl_fd(2), so that tests
// can exercise the fallback for kernels older than 5.14.
const envNoQuotactlFD = "TAPROOT_QUOTA_NO_QUOTACTL_FD"

const progName = "taproot-quota"

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1 // the operation was refused or failed
	ExitUsage = 2 // bad command line
)

// Stats is what the stats subcommand prints, as one JSON object.
type Stats struct {
	ProjectID   uint32 `json:"project_id"`
	BytesUsed   uint64 `json:"bytes_used"`
	BytesLimit  uint64 `json:"bytes_limit"`
	InodesUsed  uint64 `json:"inodes_used"`
	InodesLimit uint64 `json:"inodes_limit"`
}

// StoreStatus is what the check-store subcommand prints, as one JSON object.
type StoreStatus struct {
	Store                  string `json:"store"`
	Filesystem             string `json:"filesystem"`
	ProjectQuotaAccounting bool   `json:"project_quota_accounting"`
	ProjectQuotaEnforced   bool   `json:"project_quota_enforced"`
	CapacityBytes          uint64 `json:"capacity_bytes"`
}

const usage = `usage:
  taproot-quota set-limit <store>/images/<id> <bytes> <inodes>
  taproot-quota stats <store>/images/<id>
  taproot-quota clear <store>/images/<id>
  taproot-quota check-store <store>`

// Main runs the helper with args (args[0] is the program name) and returns
// the process exit code. Results go to stdout, one-line errors to stderr.
func Main(args []string, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return code
	}
	if err := ensureStdFds(); err != nil {
		return fail(ExitError, err)
	}
	p, err := setupPrivileges()
	if err != nil {
		return fail(ExitError, err)
	}
	if len(args) < 2 {
		return fail(ExitUsage, errors.New("no command\n"+usage))
	}
	cmd, rest := args[1], args[2:]
	var out any
	switch {
	case cmd == "set-limit" && len(rest) == 3:
		err = p.setLimit(rest[0], rest[1], rest[2])
	case cmd == "stats" && len(rest) == 1:
		out, err = p.stats(rest[0])
	case cmd == "clear" && len(rest) == 1:
		err = p.clear(rest[0])
	case cmd == "check-store" && len(rest) == 1:
		out, err = p.checkStore(rest[0])
	case cmd == "-h" || cmd == "--help" || cmd == "help":
		fmt.Fprintln(stdout, usage)
		return ExitOK
	default:
		return fail(ExitUsage, fmt.Errorf("bad command line %q\n%s", args[1:], usage))
	}
	// Whatever happened, give root up for good before writing anything.
	if derr := p.dropForever(); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return fail(ExitError, fmt.Errorf("%s: %w", cmd, err))
	}
	if out != nil {
		b, err := json.Marshal(out)
		if err != nil {
			return fail(ExitError, err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return fail(ExitError, err)
		}
	}
	return ExitOK
}

// ensureStdFds makes sure fds 0, 1 and 2 are open, so that no file the
// helper opens can become the caller's stdout or stderr.
func ensureStdFds() error {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			continue
		}
		nfd, err := unix.Open("/dev/null", unix.O_RDWR, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: "/dev/null", Err: err}
		}
		if nfd != fd {
			return fmt.Errorf("reopen fd %d: got fd %d", fd, nfd)
		}
	}
	return nil
}

// privs holds who called the helper and how it may use root.
type privs struct {
	ruid, rgid   int
	setuid       bool   // running setuid (real uid != effective uid)
	listPath     string // stores list
	noQuotactlFD bool   // test knob, never set when setuid
}

// setupPrivileges reads the two test knobs (only when not setuid), clears
// the environment, and when setuid lowers the effective uid to the real
// one: the checks and opens run with the caller's own rights, and root
// comes back only around the ioctl and quotactl calls.
func setupPrivileges() (*privs, error) {
	ruid, euid, suid := getresuid()
	rgid, egid, _ := getresgid()
	p := &privs{ruid: ruid, rgid: rgid, setuid: ruid != euid || rgid != egid, listPath: StoresListPath}
	if !p.setuid {
		if v := os.Getenv(EnvStoresList); v != "" {
			p.listPath = v
		}
		p.noQuotactlFD = os.Getenv(envNoQuotactlFD) == "1"
	}
	os.Clearenv()
	if euid != 0 && suid != 0 {
		return nil, errors.New("must run as root or be installed setuid root")
	}
	if rgid != egid {
		// Never needed: drop a setgid effective group for good.
		if err := syscall.Setresgid(rgid, rgid, rgid); err != nil {
			return nil, fmt.Errorf("setresgid: %w", err)
		}
	}
	if ruid != euid {
		if err := syscall.Setresuid(-1, ruid, 0); err != nil {
			return nil, fmt.Errorf("setresuid: %w", err)
		}
	}
	return p, nil
}

func getresuid() (r, e, s int) {
	var ru, eu, su uint32
	unix.RawSyscall(unix.SYS_GETRESUID, uintptr(unsafe.Pointer(&ru)), uintptr(unsafe.Pointer(&eu)), uintptr(unsafe.Pointer(&su)))
	return int(ru), int(eu), int(su)
}

func getresgid() (r, e, s int) {
	var rg, eg, sg uint32
	unix.RawSyscall(unix.SYS_GETRESGID, uintptr(unsafe.Pointer(&rg)), uintptr(unsafe.Pointer(&eg)), uintptr(unsafe.Pointer(&sg)))
	return int(rg), int(eg), int(sg)
}

// asRoot runs fn with effective uid 0 (when setuid) and lowers it again.
func (p *privs) asRoot(fn func() error) error {
	if p.setuid {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			return fmt.Errorf("setresuid: %w", err)
		}
	}
	ferr := fn()
	if p.setuid {
		if err := syscall.Setresuid(-1, p.ruid, -1); err != nil {
			return fmt.Errorf("setresuid: %w", err)
		}
	}
	return ferr
}

// dropForever sets all three uids to the real uid.
func (p *privs) dropForever() error {
	if !p.setuid {
		return nil
	}
	if err := syscall.Setresuid(p.ruid, p.ruid, p.ruid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}

// projectID derives the project ID of an image from the inode number of its
// image dir. See doc.go for why.
func projectID(img *image) (uint32, error) {
	ino := img.st.Ino
	if ino == 0 || ino > math.MaxUint32 {
		return 0, &os.PathError{Op: "project id", Path: img.dir.Name(),
			Err: fmt.Errorf("inode number %d does not fit a 32-bit project ID (mount the filesystem with inode32)", ino)}
	}
	return uint32(ino), nil
}

func (p *privs) setLimit(imageDir, size, inodeCount string) error {
	img, err := p.openImage(imageDir)
	if err != nil {
		return err
	}
	defer img.close()
	bytes, err := parseCount("size", size)
	if err != nil {
		return err
	}
	inodes, err := parseCount("inode count", inodeCount)
	if err != nil {
		return err
	}
	capacity, err := capacityOf(img.store)
	if err != nil {
		return err
	}
	if bytes > capacity {
		return fmt.Errorf("size %d is larger than the filesystem of %s (%d bytes)", bytes, img.store.Name(), capacity)
	}
	if max := capacity / minInodeSize; inodes > max {
		return fmt.Errorf("inode count %d is more than the filesystem of %s can hold (%d bytes hold at most %d inodes of %d bytes)",
			inodes, img.store.Name(), capacity, max, minInodeSize)
	}
	id, err := projectID(img)
	if err != nil {
		return err
	}
	q := &quotaTarget{file: img.store, noFD: p.noQuotactlFD}
	return p.asRoot(func() error {
		// Both limits in one call, and before the project ID, so that no
		// file is charged to an ID without them.
		d := fsDiskQuota{
			Version:      fsDquotVersion,
			Flags:        fsProjQuota,
			Fieldmask:    fsDqLimitAll, // the soft and realtime limits are set to 0
			ID:           id,
			BlkHardlimit: (bytes + basicBlockSize - 1) / basicBlockSize,
			InoHardlimit: inodes,
		}
		if err := q.quotactl(qXSetQLim, id, unsafe.Pointer(&d)); err != nil {
			return err
		}
		for _, f := range img.dirs() {
			if err := setProject(f, id, true); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *privs) stats(imageDir string) (*Stats, error) {
	img, err := p.openImage(imageDir)
	if err != nil {
		return nil, err
	}
	defer img.close()
	id, err := projectID(img)
	if err != nil {
		return nil, err
	}
	fa, err := fsGetXattr(img.dir)
	if err != nil {
		return nil, err
	}
	if fa.Projid != id || fa.Xflags&fsXflagProjInherit == 0 {
		return nil, fmt.Errorf("%s has no project quota from this helper (project ID %d, inherit %t; want %d): run set-limit first",
			img.dir.Name(), fa.Projid, fa.Xflags&fsXflagProjInherit != 0, id)
	}
	q := &quotaTarget{file: img.store, noFD: p.noQuotactlFD}
	var d fsDiskQuota
	err = p.asRoot(func() error {
		return q.quotactl(qXGetQuota, id, unsafe.Pointer(&d))
	})
	if errors.Is(err, unix.ENOENT) {
		// No dquot yet: nothing charged, no limit.
		return &Stats{ProjectID: id}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Stats{ProjectID: id, BytesUsed: d.Bcount * basicBlockSize, BytesLimit: d.BlkHardlimit * basicBlockSize,
		InodesUsed: d.Icount, InodesLimit: d.InoHardlimit}, nil
}

func (p *privs) clear(imageDir string) error {
	img, err := p.openImage(imageDir)
	if err != nil {
		return err
	}
	defer img.close()
	id, err := projectID(img)
	if err != nil {
		return err
	}
	q := &quotaTarget{file: img.store, noFD: p.noQuotactlFD}
	return p.asRoot(func() error {
		for _, f := range img.dirs() {
			if err := setProject(f, 0, false); err != nil {
				return err
			}
		}
		d := fsDiskQuota{Version: fsDquotVersion, Flags: fsProjQuota, Fieldmask: fsDqLimitAll, ID: id}
		return q.quotactl(qXSetQLim, id, unsafe.Pointer(&d))
	})
}

func (p *privs) checkStore(storeDir string) (*StoreStatus, error) {
	store, _, err := p.openListedStore(storeDir, storeDir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(store.Fd()), &sfs); err != nil {
		return nil, &os.PathError{Op: "fstatfs", Path: storeDir, Err: err}
	}
	st := &StoreStatus{Store: storeDir, Filesystem: fsname.Of(sfs.Type), CapacityBytes: sfs.Blocks * uint64(sfs.Bsize)}
	if sfs.Type != unix.XFS_SUPER_MAGIC {
		return st, nil
	}
	// Q_XGETQSTAT needs no privilege.
	q := &quotaTarget{file: store, noFD: p.noQuotactlFD}
	var qs fsQuotaStat
	if err := q.quotactl(qXGetQStat, 0, unsafe.Pointer(&qs)); err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ESRCH) {
			return st, nil
		}
		return nil, err
	}
	st.ProjectQuotaAccounting = qs.Flags&fsQuotaPdqAcct != 0
	st.ProjectQuotaEnforced = qs.Flags&fsQuotaPdqEnfd != 0
	return st, nil
}

// setProject sets (or with inherit false, resets) f's project ID and
// PROJINHERIT flag.
func setProject(f *os.File, id uint32, inherit bool) error {
	fa, err := fsGetXattr(f)
	if err != nil {
		return err
	}
	fa.Projid = id
	if inherit {
		fa.Xflags |= fsXflagProjInherit
	} else {
		fa.Xflags &^= fsXflagProjInherit
	}
	return fsSetXattr(f, &fa)
}

func capacityOf(f *os.File) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return 0, &os.PathError{Op: "fstatfs", Path: f.Name(), Err: err}
	}
	return sfs.Blocks * uint64(sfs.Bsize), nil
}
