package overlayxfs

import (
	"strings"
)

// PageSize bounds mount(2)'s option string, terminating NUL included.
const PageSize = 4096

// MaxLowers is overlayfs's limit on stacked lower layers.
const MaxLowers = 500

// Plan is one image's overlay: Lowers top first.
type Plan struct {
	Lowers []string
	Upper  string
	Work   string
	Rootfs string
}

// Options returns the mount options, in the order runc passes them on.
// userxattr makes overlay read user.overlay.* xattrs, which an unprivileged
// user namespace can set (and which the unpacker writes for opaque dirs).
func (p Plan) Options() []string {
	return []string{
		"userxattr",
		"lowerdir=" + strings.Join(p.Lowers, ":"),
		"upperdir=" + p.Upper,
		"workdir=" + p.Work,
	}
}

// Data returns the options as mount(2) receives them.
func (p Plan) Data() string { return strings.Join(p.Options(), ",") }

// Fits reports whether the plan can be mounted as is.
func (p Plan) Fits() bool {
	return len(p.Lowers) <= MaxLowers && len(p.Data())+1 <= PageSize
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
