package overlayxfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// PageSize bounds mount(2)'s option string, terminating NUL included.
const PageSize = 4096

// MaxLowers is overlayfs's limit on stacked lower layers.
const MaxLowers = 500

// ErrMountPath reports a path that overlay's options cannot carry: the
// kernel splits the options at ',' and lowerdir at ':', and reads '\' as an
// escape, so such a path would mount something else or nothing (ENOENT).
var ErrMountPath = errors.New("path cannot be carried in overlay mount options")

// ErrMountTooLarge reports an overlay over mount(2)'s one-page option
// limit or overlay's stack depth (the store squashes before that).
var ErrMountTooLarge = errors.New("overlay mount does not fit")

// Plan is one image's overlay dirs: Lowers top first.
type Plan struct {
	Lowers []string
	Upper  string
	Work   string
	Rootfs string
}

// Mount is one mount as data, the arguments of mount(2): Options are the
// data words joined with ','. It carries no flag words (ro, nosuid…):
// an overlay rootfs needs none, so Mount passes no flags.
//
// It is what create persists in the image record, what the runtime-spec
// fragment prints (SpecMount), what --with-mount performs (Mount) and what
// delete undoes (Unmount): computed once, in Plan.Mount.
type Mount struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Target  string   `json:"target"`
	Options []string `json:"options"`
}

// options returns the overlay options, in the order runc passes them on.
// userxattr makes overlay read user.overlay.* xattrs, which an unprivileged
// user namespace can set (and which the unpacker writes for opaque dirs).
func (p Plan) options() []string {
	return []string{
		"userxattr",
		"lowerdir=" + strings.Join(p.Lowers, ":"),
		"upperdir=" + p.Upper,
		"workdir=" + p.Work,
	}
}

// Data returns the options as mount(2) would receive them, for sizing a
// plan; what is mounted is Mount's value.
func (p Plan) Data() string { return strings.Join(p.options(), ",") }

// Fits reports whether the plan can be mounted as is.
func (p Plan) Fits() bool {
	return len(p.Lowers) <= MaxLowers && len(p.Data())+1 <= PageSize
}

// Mount is the overlay mount of the plan on its Rootfs: the one place an
// image's mount is made. It refuses a path that is not clean and absolute
// (overlay would resolve it against the mounting process's cwd) or that
// has a character the options cannot carry, and a plan that does not fit.
func (p Plan) Mount() (Mount, error) {
	if len(p.Lowers) == 0 {
		return Mount{}, fmt.Errorf("overlay on %s: no lower dirs", p.Rootfs)
	}
	for _, dir := range append([]string{p.Upper, p.Work, p.Rootfs}, p.Lowers...) {
		if err := checkMountPath(dir); err != nil {
			return Mount{}, err
		}
	}
	if !p.Fits() {
		return Mount{}, fmt.Errorf("overlay on %s: %w: %d lowers, %d bytes of options", p.Rootfs, ErrMountTooLarge, len(p.Lowers), len(p.Data()))
	}
	return Mount{Type: "overlay", Source: "overlay", Target: p.Rootfs, Options: p.options()}, nil
}

// checkMountPath refuses what overlay options cannot carry.
func checkMountPath(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("overlay dir %q: %w: not clean and absolute", dir, ErrMountPath)
	}
	if strings.ContainsAny(dir, ",:\\\n\x00") {
		return fmt.Errorf("overlay dir %q: %w: it has one of , : \\ or a newline (move the store to a path without them)", dir, ErrMountPath)
	}
	return nil
}

// Data returns the options as mount(2) receives them.
func (m Mount) Data() string { return strings.Join(m.Options, ",") }

// Lowers returns the lower dirs of an overlay mount, top first, as its
// lowerdir option names them (nil when it has none). Plan.Mount refused a
// path with ':' in it, so the split gives back Plan.Lowers.
func (m Mount) Lowers() []string {
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")
		}
	}
	return nil
}

// Equal says whether m and o are the same mount.
func (m Mount) Equal(o Mount) bool {
	if m.Type != o.Type || m.Source != o.Source || m.Target != o.Target || len(m.Options) != len(o.Options) {
		return false
	}
	for i := range m.Options {
		if m.Options[i] != o.Options[i] {
			return false
		}
	}
	return true
}

// Mount performs m (root only: a rootless caller lets the runtime mount in
// the container's user namespace).
func (m Mount) Mount() error {
	if err := unix.Mount(m.Source, m.Target, m.Type, 0, m.Data()); err != nil {
		return &os.PathError{Op: "mount " + m.Type, Path: m.Target, Err: err}
	}
	return nil
}

// Unmount undoes m, detaching it (MNT_DETACH) so a process still inside
// does not block delete. A target that is not mounted (EINVAL) or not
// there (ENOENT) is not an error.
func (m Mount) Unmount() error {
	err := unix.Unmount(m.Target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unmount", Path: m.Target, Err: err}
	}
	return nil
}

// SpecMount is m as a runtime-spec mount of a container whose root.path is
// root: its destination is m's target inside root ("/" for the rootfs
// itself), since the runtime mounts destinations under root.path.
func (m Mount) SpecMount(root string) (specs.Mount, error) {
	rel, err := filepath.Rel(root, m.Target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return specs.Mount{}, fmt.Errorf("mount target %s is not under root %s", m.Target, root)
	}
	return specs.Mount{
		Destination: filepath.Join("/", rel),
		Type:        m.Type,
		Source:      m.Source,
		Options:     append([]string(nil), m.Options...),
	}, nil
}

// KeepOnTop returns how many of the top lowers can stay as they are when
// the rest are squashed into one extra lower whose path is squashedPath.
// It returns len(p.Lowers) when nothing needs squashing.
func (p Plan) KeepOnTop(squashedPath string) int {
	if p.Fits() {
		return len(p.Lowers)
	}
	q := p
	for k := min(len(p.Lowers)-1, MaxLowers-1); k >= 0; k-- {
		q.Lowers = append(append([]string(nil), p.Lowers[:k]...), squashedPath)
		if q.Fits() {
			return k
		}
	}
	return 0
}
