package builder

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"syscall"

	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/unpacker"
)

// Errors of the builder's own, matched with errors.Is.
var (
	// ErrBadInput marks a request the caller got wrong: a flag value out of
	// range, flags that exclude each other, a bad mapping.
	ErrBadInput = errors.New("bad input")
	// ErrNoStore: a use case that needs an existing store found none.
	ErrNoStore = errors.New("no store")
	// ErrStoreDamaged is Check's verdict on a damaged store it did not
	// repair.
	ErrStoreDamaged = errors.New("store is damaged")
)

// BadInput marks err as the caller's mistake (errors.Is(err, ErrBadInput))
// without changing its text.
func BadInput(err error) error {
	if err == nil {
		return nil
	}
	return classified{err: err, class: ErrBadInput}
}

// classified wraps err with a sentinel that errors.Is finds, keeping err's
// message as it is.
type classified struct {
	err   error
	class error
}

func (c classified) Error() string   { return c.err.Error() }
func (c classified) Unwrap() []error { return []error{c.err, c.class} }

// Class is what a caller can do about a failure: fix the request, tell the
// user, retry, page an operator. The command line turns it into its exit
// status.
type Class int

// The classes of failure.
const (
	ClassInternal     Class = iota + 1 // none of the below: a bug or an unexpected system error
	ClassBadInput                      // bad flag, config, image reference or id; id exists; mapping differs; unusable image
	ClassNotFound                      // the image (reference), image id or store does not exist
	ClassUnauthorized                  // credentials refused, signature policy rejects, permission denied
	ClassTransient                     // registry unreachable, network failure, timeout, interrupted: retry may help
	ClassLimit                         // disk limit below the image size, quota helper refused, disk full, quota exceeded
	ClassDamaged                       // the store is damaged: run check --repair
)

// ClassOf classifies a use case's failure with errors.Is/As on the
// sentinels of the packages it came from. The order matters where an error
// could match twice: the more specific class comes first. nil is
// ClassInternal too: ask only about failures.
func ClassOf(err error) Class {
	switch {
	case isAny(err, ErrStoreDamaged, store.ErrBadRecord):
		return ClassDamaged
	case isAny(err, ErrBadInput, fetcher.ErrBadReference,
		store.ErrBadID, store.ErrImageExists, store.ErrMappingDiffer, store.ErrStoreUnsafe, store.ErrUnreachable,
		overlayxfs.ErrMountPath, overlayxfs.ErrSharedFilesystem,
		// The image cannot be used: its layers are hostile or not what
		// the manifest says (the worker keeps these classes).
		unpacker.ErrUnsafePath, unpacker.ErrDigestMismatch, unpacker.ErrIDOutsideMapping, unpacker.ErrInvalidLayer,
		// A layer names a file longer than the store's filesystem
		// takes (NAME_MAX): this image cannot be used here.
		syscall.ENAMETOOLONG):
		return ClassBadInput
	case isAny(err, fetcher.ErrNotFound, store.ErrImageNotFound, ErrNoStore):
		return ClassNotFound
	case isAny(err, fetcher.ErrUnauthorized, fetcher.ErrPolicyDenied):
		return ClassUnauthorized
	case isAny(err, store.ErrLimitBelowBase, unpacker.ErrLimitExceeded, overlayxfs.ErrQuotaHelper, syscall.ENOSPC, syscall.EDQUOT):
		return ClassLimit
	case isAny(err, fetcher.ErrUnreachable, unpacker.ErrTruncated,
		// A layer stream that ends mid-entry (the worker keeps this).
		io.ErrUnexpectedEOF,
		context.DeadlineExceeded, context.Canceled),
		isNetError(err):
		return ClassTransient
	case errors.Is(err, fs.ErrPermission):
		// After the registry classes: a store or file the caller may not
		// touch (EACCES, EPERM).
		return ClassUnauthorized
	}
	return ClassInternal
}

// isAny says whether err matches one of targets (errors.Is).
func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// isNetError: a network operation failed. Not the net.Error interface:
// syscall.Errno implements it too, so EACCES would count as network.
func isNetError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}
