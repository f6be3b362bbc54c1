package unpacker

import "errors"

// Sentinel errors; match them with errors.Is.
var (
	// ErrTooLarge: the layer's regular-file content exceeds Options.MaxBytes.
	ErrTooLarge = errors.New("layer content exceeds the size limit")
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
)
