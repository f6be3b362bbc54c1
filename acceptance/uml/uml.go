// Package uml boots Debian's user-mode-linux kernel (package
// user-mode-linux, /usr/bin/linux.uml) to run a shell script as root in a
// guest that has XFS with quota support, which the stock kernel of these
// machines lacks.
//
// The guest's root filesystem is the host's / through hostfs, so the guest
// can run binaries the host test built: put them in the work dir. Anything
// the guest writes under / lands on the host. Therefore the guest gets:
//
//   - $UML_MNT: a fresh sparse XFS image made on the host with mkfs.xfs,
//     attached as ubd0 and mounted with Options.MountOptions (pquota);
//     with Options.SecondDisk, $UML_MNT2 another one (ubd1), for tests that
//     need two filesystems;
//   - $UML_TMP (also $TMPDIR and $HOME): a tmpfs;
//   - /etc: an overlay whose upper dir is on that tmpfs, so /etc/taproot and
//     anything else the script writes under /etc stays in the guest. The
//     overlay module is loaded from /usr/lib/uml/modules/<release>/ with
//     busybox's insmod (kmod is not installed); it stays loaded for the
//     script.
//
// The script runs with /bin/sh as root; its stdout and stderr go to a file
// in the work dir (written through hostfs and synced before power-off), so
// the host reads them apart from kernel console messages. Its fd 3 is the
// console, which the host sees at once: what a guest that will be cut
// (Options.Cut) must report goes there.
package uml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options tune a guest boot. The zero value is usable.
type Options struct {
	Mem          string        // guest memory, default "1G"
	DiskBytes    int64         // size of the sparse XFS image, default 512 MiB (mkfs.xfs wants > 300 MB)
	MountOptions string        // XFS mount options, default "pquota"
	SecondDisk   bool          // a second XFS image of DiskBytes at $UML_MNT2, mounted the same way
	Timeout      time.Duration // whole boot, default 5 minutes
	WorkDir      string        // host dir the guest sees at the same path, default t.TempDir()
	Env          map[string]string
	// Disk, if set, is the XFS image to attach: made on the first boot
	// that names it, kept afterwards, so a later boot finds what an
	// earlier one left (after a Cut, through XFS log recovery).
	Disk string
	// Cut, if set, pulls the plug: see Cut.
	Cut *Cut
}

// Cut is a power cut: once the console shows Marker (the script writes
// it to fd 3, the console), wait Delay and SIGKILL every host process of
// the guest. What the guest wrote to its disk by then is in the image file
// (ubd writes it with plain pwrite, not O_SYNC, so it sits in the host's
// page cache, which outlives the guest as a disk's contents outlive a
// power cut); the guest's own page cache, dirty data and the XFS log
// buffers still in memory are lost.
type Cut struct {
	Marker string
	Delay  time.Duration
}

// Result is what a guest run produced.
type Result struct {
	Output   string        // the script's stdout and stderr
	ExitCode int           // the script's exit status
	Console  string        // the kernel console (boot messages), for diagnostics
	BootTime time.Duration // from starting linux.uml to the script starting
	Duration time.Duration // the whole run, until linux.uml exited
	WorkDir  string
	// CutAt is when the power was cut, from the start (0: no cut, the
	// guest ran to its end). A cut guest has no exit status: ExitCode -1.
	CutAt time.Duration
}

// Markers the init script prints on the console.
const (
	beginMarker = "@@UML-SCRIPT-BEGIN@@"
	endMarker   = "@@UML-SCRIPT-END@@"
)

// Kernel finds linux.uml, or says why it cannot run.
func Kernel() (string, error) {
	if p, err := exec.LookPath("linux.uml"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/linux.uml", "/usr/bin/linux"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			if p == "/usr/bin/linux.uml" || strings.Contains(readlink(p), "uml") {
				return p, nil
			}
		}
	}
	return "", errors.New("user-mode-linux is not installed (no linux.uml; apt-get install user-mode-linux)")
}

func readlink(p string) string {
	s, _ := filepath.EvalSymlinks(p)
	return s
}

// lookTool finds an admin tool in PATH or the sbin dirs (CI's PATH may lack them).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (apt-get install xfsprogs)", name)
}

// SkipIfUnavailable skips t when UML or mkfs.xfs is missing, saying why.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	if _, err := Kernel(); err != nil {
		t.Skip(err)
	}
	if _, err := lookTool("mkfs.xfs"); err != nil {
		t.Skip(err)
	}
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Skip("user-mode-linux needs /dev/shm")
	}
}

// Run boots a guest, runs script in it, and returns the script's output. A
// non-zero exit of the script is an error too (the output is still
// returned). It skips t when UML cannot run here.
func Run(ctx context.Context, t testing.TB, script string, opts Options) (string, error) {
	t.Helper()
	res, err := Boot(ctx, t, script, opts)
	if err != nil {
		if res != nil {
			return res.Output, err
		}
		return "", err
	}
	if res.ExitCode != 0 {
		return res.Output, fmt.Errorf("guest script exited %d", res.ExitCode)
	}
	return res.Output, nil
}

// Boot is Run with the details: exit code, console and timings.
func Boot(ctx context.Context, t testing.TB, script string, opts Options) (*Result, error) {
	t.Helper()
	SkipIfUnavailable(t)
	kernel, _ := Kernel()
	mkfs, _ := lookTool("mkfs.xfs")
	if opts.Mem == "" {
		opts.Mem = "1G"
	}
	if opts.DiskBytes == 0 {
		opts.DiskBytes = 512 << 20
	}
	if opts.MountOptions == "" {
		opts.MountOptions = "pquota"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	w := opts.WorkDir
	if w == "" {
		w = t.TempDir()
	}
	w, err := filepath.Abs(w)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(w, " \t\n'\"\\$`") {
		return nil, fmt.Errorf("work dir %q has characters the init script cannot quote", w)
	}
	// The guest's unprivileged users must reach the work dir.
	for _, d := range []string{w, filepath.Dir(w)} {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 && d != "/tmp" {
			if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range []string{"mnt", "mnt2", "tmp", "uml"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			return nil, err
		}
	}
	img := opts.Disk
	if img == "" {
		img = filepath.Join(w, "xfs.img")
		defer os.Remove(img)
	}
	if _, err := os.Stat(img); opts.Disk == "" || errors.Is(err, os.ErrNotExist) {
		if err := makeXFSImage(ctx, mkfs, img, opts.DiskBytes); err != nil {
			return nil, err
		}
	}
	img2 := filepath.Join(w, "xfs2.img")
	if opts.SecondDisk {
		if err := makeXFSImage(ctx, mkfs, img2, opts.DiskBytes); err != nil {
			return nil, err
		}
		defer os.Remove(img2)
	}
	if err := os.WriteFile(filepath.Join(w, "script.sh"), []byte(script), 0o755); err != nil {
		return nil, err
	}
	initPath := filepath.Join(w, "init.sh")
	if err := os.WriteFile(initPath, []byte(initScript(w, opts)), 0o755); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(w, "out.log"))
	os.Remove(filepath.Join(w, "rc"))

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	args := []string{
		"mem=" + opts.Mem,
		"root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
		"ubd0=" + img,
	}
	if opts.SecondDisk {
		args = append(args, "ubd1="+img2)
	}
	args = append(args,
		"init="+initPath,
		"con=null", "con0=fd:0,fd:1",
		"uml_dir="+filepath.Join(w, "uml"),
		"quiet",
	)
	cmd := exec.Command(kernel, args...)
	cmd.Dir = w
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=/dev/shm", "HOME=" + w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	con := &console{begin: make(chan struct{}), cut: make(chan struct{})}
	if opts.Cut != nil {
		con.cutMarker = []byte(opts.Cut.Marker)
	}
	cmd.Stdout = con
	cmd.Stderr = con
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", kernel, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	res := &Result{WorkDir: w, ExitCode: -1}
	var waitErr error
	timedOut := false
	begin := con.begin
	cutSeen := con.cut
	if opts.Cut == nil {
		cutSeen = nil
	}
	var cutTimer <-chan time.Time
	for finished := false; !finished; {
		select {
		case <-begin:
			res.BootTime = time.Since(start)
			begin = nil
		case <-cutSeen:
			cutSeen = nil
			cutTimer = time.After(opts.Cut.Delay)
		case <-cutTimer:
			// The plug: every host process of the guest at once.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			res.CutAt = time.Since(start)
			waitErr = <-done
			finished = true
		case waitErr = <-done:
			finished = true
		case <-ctx.Done():
			timedOut = true
			// UML's threads are host processes: kill the whole group.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			waitErr = <-done
			finished = true
		}
	}
	res.Duration = time.Since(start)
	res.Console = con.String()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers, if any
	if b, err := os.ReadFile(filepath.Join(w, "out.log")); err == nil {
		res.Output = string(b)
	}
	if res.CutAt > 0 {
		t.Logf("uml: boot %v, power cut at %v", res.BootTime.Round(time.Millisecond), res.CutAt.Round(time.Millisecond))
		return res, nil
	}
	if timedOut {
		return res, fmt.Errorf("UML guest timed out after %v; console tail:\n%s\noutput:\n%s", opts.Timeout, tail(res.Console, 3000), tail(res.Output, 3000))
	}
	rcText, err := os.ReadFile(filepath.Join(w, "rc"))
	if err != nil {
		return res, fmt.Errorf("UML guest gave no exit status (linux.uml: %v); console tail:\n%s", waitErr, tail(res.Console, 3000))
	}
	res.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(rcText)))
	if err != nil {
		return res, fmt.Errorf("UML guest exit status %q: %w", rcText, err)
	}
	t.Logf("uml: boot %v, total %v, script exit %d", res.BootTime.Round(time.Millisecond), res.Duration.Round(time.Millisecond), res.ExitCode)
	return res, nil
}

func makeXFSImage(ctx context.Context, mkfs, img string, size int64) error {
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-f", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.xfs %s: %w: %s", img, err, bytes.TrimSpace(out))
	}
	return nil
}

// initScript is the guest's init (pid 1): set up, run the script, record
// its status, sync and power off. It must never exit (that panics UML).
func initScript(w string, opts Options) string {
	var env strings.Builder
	for k, v := range opts.Env {
		fmt.Fprintf(&env, "export %s=%s\n", k, shellQuote(v))
	}
	return fmt.Sprintf(`#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
W=%[1]s
mount -t proc proc /proc
# The root is the host's / (hostfs): without these the guest would read the
# host's /sys (its loop devices) and write the host's /run/mount/utab.
mount -t sysfs sysfs /sys || echo "uml-init: mount sysfs failed"
mount -t tmpfs -o mode=0755 tmpfs /run || echo "uml-init: mount tmpfs on /run failed"
mount -t tmpfs -o mode=0755 tmpfs $W/tmp
mount -o %[2]s /dev/ubda $W/mnt || echo "uml-init: mount xfs failed"
if [ -b /dev/ubdb ]; then mount -o %[2]s /dev/ubdb $W/mnt2 || echo "uml-init: mount the second xfs failed"; fi
busybox insmod /usr/lib/uml/modules/$(uname -r)/kernel/fs/overlayfs/overlay.ko || echo "uml-init: insmod overlay failed"
mkdir -p $W/tmp/.etc-upper $W/tmp/.etc-work
mount -t overlay -o lowerdir=/etc,upperdir=$W/tmp/.etc-upper,workdir=$W/tmp/.etc-work overlay /etc || echo "uml-init: overlay on /etc failed"
if grep -q ' /etc overlay ' /proc/mounts && grep -q ' /run tmpfs ' /proc/mounts && grep -q ' /sys sysfs ' /proc/mounts; then
  mkdir -p /etc/taproot
  export UML_WORK=$W UML_MNT=$W/mnt UML_MNT2=$W/mnt2 UML_TMP=$W/tmp TMPDIR=$W/tmp HOME=$W/tmp
%[3]s  echo %[4]s
  cd $W/tmp && /bin/sh $W/script.sh 3>&1 >$W/out.log 2>&1
  echo $? >$W/rc
else
  echo "uml-init: refusing to run the script: /etc, /run or /sys is the host's" >$W/out.log
  echo 125 >$W/rc
fi
echo %[5]s
sync
poweroff -f
echo o >/proc/sysrq-trigger
sleep 60
`, w, opts.MountOptions, env.String(), beginMarker, endMarker)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// console collects the guest console and signals the begin marker.
type console struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	begin     chan struct{}
	seen      bool
	cutMarker []byte
	cut       chan struct{}
	cutSeen   bool
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if !c.seen && bytes.Contains(c.buf.Bytes(), []byte(beginMarker)) {
		c.seen = true
		close(c.begin)
	}
	if len(c.cutMarker) > 0 && !c.cutSeen && bytes.Contains(c.buf.Bytes(), c.cutMarker) {
		c.cutSeen = true
		close(c.cut)
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
