package unpacker

import (
	"fmt"
	"path"
	"strings"
)

// cleanPath turns a tar entry name into a clean path relative to the root:
// leading "/" and "./" are removed and "." and ".." elements are folded. The
// root itself is ".". A name that still climbs above the root after cleaning,
// or that holds a NUL byte, is an error wrapping ErrUnsafePath.
func cleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, name)
	}
	p := name
	for {
		if strings.HasPrefix(p, "/") {
			p = p[1:]
		} else if strings.HasPrefix(p, "./") {
			p = p[2:]
		} else {
			break
		}
	}
	p = path.Clean(p) // "" becomes "."
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: %q leaves the root", ErrUnsafePath, name)
	}
	return p, nil
}

// splitPath splits a cleaned path into its parent directory and last
// element; the root splits into (".", ".").
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}
