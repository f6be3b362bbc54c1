// Package userns starts taproot's own binary inside a new user namespace
// whose ID maps are the store's mapping, so that the child can lchown files
// to container IDs and have them land on disk as the mapped host IDs.
//
// As root the maps are written by Go's os/exec directly. As an unprivileged
// user they can only be written by the setuid newuidmap/newgidmap tools, and
// only after the child exists; a child exec'd before its maps were written
// has no capabilities in its namespace, so it waits for the parent's signal
// and then re-execs itself (MaybeReexec) to gain them.
//
// Its one user is package worker: Runner starts the worker with Command,
// and worker.Main calls MaybeReexec first thing. Of taproot's packages it
// imports only idmap (internal/depcheck pins that).
package userns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/taproot-dev/taproot/idmap"
	"golang.org/x/sys/unix"
)

// syncEnv names the fd on which a rootless child waits for its maps.
const syncEnv = "_TAPROOT_USERNS_SYNC"

// syncFD is the child's fd of the sync pipe: the first ExtraFiles slot.
const syncFD = 3

// FirstExtraFD is the child's fd number of Cmd.ExtraFiles()[0].
const FirstExtraFD = 4

// Maps are the ID mappings of the namespace to create.
type Maps struct {
	UIDs, GIDs []idmap.Mapping
	// NewUIDMap and NewGIDMap are the setuid helpers' paths; "" means
	// look them up in PATH.
	NewUIDMap, NewGIDMap string
}

// Cmd is a child process that will run in the new namespace.
type Cmd struct {
	cmd      *exec.Cmd
	maps     Maps
	rootless bool
	syncW    *os.File
}

// Command prepares exe with args to run inside a user namespace with maps.
// extra files become fds FirstExtraFD, FirstExtraFD+1, ... in the child.
func Command(ctx context.Context, exe string, args []string, maps Maps, extra []*os.File) (*Cmd, error) {
	if err := idmap.Validate(maps.UIDs); err != nil {
		return nil, fmt.Errorf("uid mapping: %w", err)
	}
	if err := idmap.Validate(maps.GIDs); err != nil {
		return nil, fmt.Errorf("gid mapping: %w", err)
	}
	c := &Cmd{maps: maps, rootless: os.Geteuid() != 0}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER,
		Pdeathsig:  syscall.SIGKILL,
	}
	var slot3 *os.File
	if c.rootless {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		slot3, c.syncW = r, w
		cmd.Env = append(cmd.Env, syncEnv+"="+strconv.Itoa(syncFD))
	} else {
		cmd.SysProcAttr.UidMappings = toSys(maps.UIDs)
		cmd.SysProcAttr.GidMappings = toSys(maps.GIDs)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root once the maps are written: the
		// caller's own uid 0 is not mapped in it.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		slot3 = null
	}
	cmd.ExtraFiles = append([]*os.File{slot3}, extra...)
	c.cmd = cmd
	return c, nil
}

func toSys(ms []idmap.Mapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// Exec returns the underlying command, to set Stdin/Stdout/Stderr before Start.
func (c *Cmd) Exec() *exec.Cmd { return c.cmd }

// Start starts the child and, when rootless, writes its maps with
// newuidmap/newgidmap and then lets it go on.
func (c *Cmd) Start() error {
	err := c.cmd.Start()
	// The child has its own copy of the fds now.
	c.cmd.ExtraFiles[0].Close()
	if err != nil {
		if c.syncW != nil {
			c.syncW.Close()
		}
		return fmt.Errorf("start %s in a user namespace: %w", c.cmd.Path, err)
	}
	if !c.rootless {
		return nil
	}
	defer c.syncW.Close()
	pid := strconv.Itoa(c.cmd.Process.Pid)
	if err := runMapTool(c.maps.NewUIDMap, "newuidmap", pid, c.maps.UIDs); err != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		return err
	}
	if err := runMapTool(c.maps.NewGIDMap, "newgidmap", pid, c.maps.GIDs); err != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		return err
	}
	if _, err := c.syncW.Write([]byte{'1'}); err != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		return fmt.Errorf("signal user namespace child: %w", err)
	}
	return nil
}

// Wait waits for the child.
func (c *Cmd) Wait() error { return c.cmd.Wait() }

func runMapTool(path, name, pid string, ms []idmap.Mapping) error {
	if path == "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return fmt.Errorf("%s not found (install the uidmap package): %w", name, err)
		}
		path = p
	}
	args := []string{pid}
	for _, m := range ms {
		args = append(args, strconv.FormatUint(uint64(m.ContainerID), 10), strconv.FormatUint(uint64(m.HostID), 10), strconv.FormatUint(uint64(m.Size), 10))
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, bytesTrim(out))
	}
	return nil
}

func bytesTrim(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// MaybeReexec must be called first thing in main. In a rootless child it
// waits until the parent has written the maps, then re-execs the binary so
// that it runs with full capabilities in its namespace. Elsewhere it
// returns nil at once.
func MaybeReexec() error {
	v := os.Getenv(syncEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(syncEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("bad %s=%q", syncEnv, v)
	}
	f := os.NewFile(uintptr(fd), "userns-sync")
	var b [1]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return errors.New("user namespace maps were not written (parent gave up)")
	}
	f.Close()
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	return unix.Exec("/proc/self/exe", append([]string{exe}, os.Args[1:]...), os.Environ())
}
