// Package bundle turns the runtime-spec fragment that `taproot create`
// prints into a complete rootless config.json for runc or crun.
package bundle

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Options says what to run and how.
type Options struct {
	// Args replaces the process args (the fragment's, if any, otherwise).
	Args []string
	// UIDMappings and GIDMappings are used when the fragment has none.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	// StoreDir resolves a relative root.path in the fragment.
	StoreDir string
	// ChrootSkeleton, if set, is the crun ≤ 1.21 workaround: root.path
	// becomes this skeleton dir (which must hold /bin/busybox and an empty
	// /mnt), the fragment's mounts are moved under /mnt, and the process
	// runs `busybox chroot /mnt <args>`. crun still mounts the overlay
	// itself, inside its user namespace; it only cannot mount at "/".
	ChrootSkeleton string
}

// Parse decodes the fragment.
func Parse(fragment []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(fragment, &s); err != nil {
		return nil, fmt.Errorf("fragment is not a runtime-spec JSON object: %w", err)
	}
	return &s, nil
}

// Config builds a full rootless config: what `runc spec --rootless` gives,
// with a network namespace, no cgroup mount, terminal off, the fragment's
// mounts first, its root.path, process env/cwd/user and ID mappings.
func Config(frag *specs.Spec, o Options) (*specs.Spec, error) {
	if frag.Root == nil || frag.Root.Path == "" {
		return nil, fmt.Errorf("fragment has no root.path")
	}
	root := frag.Root.Path
	if !filepath.IsAbs(root) {
		if o.StoreDir == "" {
			return nil, fmt.Errorf("fragment root.path %q is relative and no store dir was given", root)
		}
		root = filepath.Join(o.StoreDir, root)
	}
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	if o.ChrootSkeleton != "" {
		caps = append(caps, "CAP_SYS_CHROOT")
	}
	s := &specs.Spec{
		// crun 1.8.1 rejects ociVersion 1.3.0 ("unknown version specified");
		// both runtimes take what `runc spec` writes.
		Version: "1.0.2-dev",
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: 0, GID: 0},
			Args:     []string{"sh"},
			Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: root},
		Hostname: "taproot-test",
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.UserNamespace}, {Type: specs.NetworkNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if fp := frag.Process; fp != nil {
		if len(fp.Env) > 0 {
			s.Process.Env = fp.Env
		}
		if fp.Cwd != "" {
			s.Process.Cwd = fp.Cwd
		}
		s.Process.User = fp.User
		if len(fp.Args) > 0 {
			s.Process.Args = fp.Args
		}
	}
	if len(o.Args) > 0 {
		s.Process.Args = o.Args
	}
	s.Annotations = frag.Annotations

	s.Linux.UIDMappings, s.Linux.GIDMappings = o.UIDMappings, o.GIDMappings
	if frag.Linux != nil && len(frag.Linux.UIDMappings) > 0 {
		s.Linux.UIDMappings = frag.Linux.UIDMappings
	}
	if frag.Linux != nil && len(frag.Linux.GIDMappings) > 0 {
		s.Linux.GIDMappings = frag.Linux.GIDMappings
	}
	if len(s.Linux.UIDMappings) == 0 || len(s.Linux.GIDMappings) == 0 {
		return nil, fmt.Errorf("no uid/gid mappings in the fragment nor in the options")
	}

	std := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}},
	}
	if o.ChrootSkeleton == "" {
		s.Mounts = append(append([]specs.Mount{}, frag.Mounts...), std...)
		return s, nil
	}

	// crun workaround: the skeleton is the root; the fragment's mounts go
	// under /mnt, then proc and the host's /dev inside them, and the
	// process chroots into /mnt.
	s.Root.Path = o.ChrootSkeleton
	s.Mounts = std
	for _, m := range frag.Mounts {
		m.Destination = filepath.Join("/mnt", m.Destination)
		s.Mounts = append(s.Mounts, m)
	}
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/mnt/proc", Type: "proc", Source: "proc"},
		specs.Mount{Destination: "/mnt/dev", Type: "bind", Source: "/dev", Options: []string{"rbind", "nosuid"}},
	)
	s.Process.Args = append([]string{"/bin/busybox", "chroot", "/mnt"}, s.Process.Args...)
	s.Process.Cwd = "/"
	return s, nil
}
