package unpacker

import (
	"errors"
	"fmt"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrLimitExceeded: a layer went over one of the bounds in Options (its
	// unpacked bytes, the image's, its entries, its compression ratio, the
	// size of one entry's headers). The error is a *LimitError naming it.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrTooLarge is ErrLimitExceeded under its earlier name, which the
	// worker's error classes (worker/errors.go) once matched.
	ErrTooLarge = ErrLimitExceeded
	// ErrUnsafePath: an entry name, whiteout or hardlink target leaves the
	// root, or its path goes through a symlink.
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrDigestMismatch: the blob digest or the diffID is not what was expected.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrIDOutsideMapping: an entry's uid or gid is not mapped in the user
	// namespace the unpacker runs in.
	ErrIDOutsideMapping = errors.New("outside the store's id mapping")
	// ErrTruncated: the tar stream ends without the end-of-archive marker.
	ErrTruncated = errors.New("truncated tar stream")
	// ErrInvalidLayer: the layer's tar is malformed: a header archive/tar
	// refuses (tar.ErrHeader, tar.ErrFieldTooLong), or a hardlink to an
	// entry the layer does not hold, to a directory or to the root.
	ErrInvalidLayer = errors.New("invalid layer")
)

// LimitError says which bound a layer went over. Limit is the name of the
// [create] config key that sets the bound (the store passes those through
// Options), so the message tells an operator what to raise.
type LimitError struct {
	Limit string // config key, e.g. "max_layer_bytes"; "" = a built-in bound
	Value int64  // the bound
	What  string // what went over it, e.g. "unpacked content 17179873280 bytes"
}

func (e *LimitError) Error() string {
	if e.Limit == "" {
		return fmt.Sprintf("%s: %s, over the built-in bound of %d", ErrLimitExceeded, e.What, e.Value)
	}
	return fmt.Sprintf("%s: %s, over %s = %d (set in the [create] section of the config; 0 = no bound)",
		ErrLimitExceeded, e.What, e.Limit, e.Value)
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }
