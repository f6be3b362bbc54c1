package store

import (
	"errors"
	"syscall"

	"github.com/taproot-dev/taproot/unpacker"
)

// A worker failure crosses the process boundary as its message and a
// class name, so that the parent's error still matches the sentinel with
// errors.Is (and the CLI exits with that class's code) instead of being an
// opaque string.

// workerClass is one sentinel a worker error keeps, by name.
type workerClass struct {
	code  string
	class error
}

// workerClasses are the sentinels a worker error keeps, most specific
// first (an unsafe path may also wrap an errno).
func workerClasses() []workerClass {
	return []workerClass{
		{"too_large", unpacker.ErrTooLarge},
		{"unsafe_path", unpacker.ErrUnsafePath},
		{"digest_mismatch", unpacker.ErrDigestMismatch},
		{"id_outside_map", unpacker.ErrIDOutsideMapping},
		{"truncated", unpacker.ErrTruncated},
		{"no_space", syscall.ENOSPC},
		{"quota_exceeded", syscall.EDQUOT},
		{"permission", syscall.EACCES},
		{"read_only_fs", syscall.EROFS},
		{"name_too_long", syscall.ENAMETOOLONG},
	}
}

// workerErrorCode is the class of err that the worker sends with its
// message ("" when none matches).
func workerErrorCode(err error) string {
	for _, c := range workerClasses() {
		if errors.Is(err, c.class) {
			return c.code
		}
	}
	return ""
}

// remoteError is a worker's failure as the parent sees it.
type remoteError struct {
	msg   string
	class error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.class }

// workerError rebuilds a worker's failure from its message and code.
func workerError(msg, code string) error {
	if msg == "" {
		msg = "no result"
	}
	for _, c := range workerClasses() {
		if c.code == code {
			return &remoteError{msg: msg, class: c.class}
		}
	}
	return &remoteError{msg: msg}
}
