package worker

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/taproot-dev/taproot/unpacker"
)

// A worker failure crosses the process boundary as its message, the code
// of its class (one of the unpacker's sentinels) and the errno it wraps,
// if any, so that the parent's error still matches both with errors.Is
// (and the CLI exits with that class's code) instead of being an opaque
// string. The errno is carried as a number rather than picked from a list:
// every errno keeps its identity (ENOSPC, EDQUOT, EACCES, EROFS, ...), and
// through syscall.Errno.Is the fs sentinels (fs.ErrPermission,
// fs.ErrNotExist) hold as well.

// class is one sentinel a worker error keeps, by code.
type class struct {
	code     string
	sentinel error
}

// classes are the sentinels a worker error keeps, most specific first. The
// codes are the wire format: both ends are the same binary, but keep them
// stable and readable anyway, they show in debug logs. (A function, not a
// package variable: no global state.)
func classes() []class {
	return []class{
		{"too_large", unpacker.ErrLimitExceeded},
		{"unsafe_path", unpacker.ErrUnsafePath},
		{"digest_mismatch", unpacker.ErrDigestMismatch},
		{"id_outside_map", unpacker.ErrIDOutsideMapping},
		{"truncated", unpacker.ErrTruncated},
		{"invalid_layer", unpacker.ErrInvalidLayer},
		{"unexpected_eof", io.ErrUnexpectedEOF},
		{"canceled", context.Canceled},
		{"deadline", context.DeadlineExceeded},
	}
}

// wireError is a failure as the worker sends it.
type wireError struct {
	Msg   string `json:"msg"`
	Code  string `json:"code,omitempty"`  // a class code; "" = none matched
	Errno int    `json:"errno,omitempty"` // the syscall.Errno it wraps; 0 = none
}

// toWire is err as the worker sends it (nil for nil).
func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Msg: err.Error()}
	for _, c := range classes() {
		if errors.Is(err, c.sentinel) {
			w.Code = c.code
			break
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		w.Errno = int(errno)
	}
	return w
}

// remoteError is a worker's failure as the parent sees it: the worker's
// message, unwrapping to the sentinel of its class and to its errno.
type remoteError struct {
	msg   string
	wraps []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.wraps }

// err rebuilds the worker's failure (nil for nil). An unknown code keeps
// the message and matches nothing: the worker is the same binary, so that
// is a bug, not a reason to fail harder.
func (w *wireError) err() error {
	if w == nil {
		return nil
	}
	e := &remoteError{msg: w.Msg}
	if e.msg == "" {
		e.msg = "worker failed without a message"
	}
	for _, c := range classes() {
		if c.code == w.Code {
			e.wraps = append(e.wraps, c.sentinel)
		}
	}
	if w.Errno != 0 {
		e.wraps = append(e.wraps, syscall.Errno(w.Errno))
	}
	return e
}
