package cli

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"syscall"

	"github.com/taproot-dev/taproot/builder"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/unpacker"
)

// ExitCode is taproot's exit status: one value per class of failure, so a
// daemon decides what to do (fix the request, tell the user, retry, page an
// operator) from the status alone. docs/troubleshooting.md has the table.
type ExitCode int

// The exit-code classes. Their numbers are part of the CLI contract: add new
// ones at the end, never renumber.
const (
	ExitOK           ExitCode = 0
	ExitInternal     ExitCode = 1 // none of the below: a bug or an unexpected system error
	ExitBadInput     ExitCode = 2 // bad flag, config, image reference or id; id exists; mapping differs
	ExitNotFound     ExitCode = 3 // the image (reference) or image id does not exist
	ExitUnauthorized ExitCode = 4 // credentials refused, signature policy rejects, permission denied
	ExitTransient    ExitCode = 5 // registry unreachable, network failure, timeout, interrupted: retry may help
	ExitLimit        ExitCode = 6 // disk limit below the image size, quota helper refused, disk full, quota exceeded
	ExitDamaged      ExitCode = 7 // the store is damaged (taproot check found damage): run check --repair
)

// Class is the code's name in JSON errors ("class" field).
func (c ExitCode) Class() string {
	switch c {
	case ExitOK:
		return "ok"
	case ExitInternal:
		return "internal"
	case ExitBadInput:
		return "bad_input"
	case ExitNotFound:
		return "not_found"
	case ExitUnauthorized:
		return "unauthorized"
	case ExitTransient:
		return "transient"
	case ExitLimit:
		return "limit"
	case ExitDamaged:
		return "store_damaged"
	}
	return "unknown"
}

// badInput marks err as the caller's mistake (exit code 2) without
// changing its text.
func badInput(err error) error { return builder.BadInput(err) }

// exitCodeOf maps err to its class with errors.Is/As on the sentinels of
// the packages it came from. The order matters where an error could match
// twice: the more specific class comes first.
func exitCodeOf(err error) ExitCode {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, builder.ErrStoreDamaged),
		errors.Is(err, store.ErrBadRecord):
		return ExitDamaged
	case errors.Is(err, builder.ErrBadInput),
		errors.Is(err, fetcher.ErrBadReference),
		errors.Is(err, store.ErrBadID),
		errors.Is(err, store.ErrImageExists),
		errors.Is(err, store.ErrMappingDiffer),
		errors.Is(err, store.ErrStoreUnsafe),
		errors.Is(err, store.ErrUnreachable),
		// The image cannot be used: its layers are hostile or not what
		// the manifest says (the worker keeps these classes).
		errors.Is(err, unpacker.ErrUnsafePath),
		errors.Is(err, unpacker.ErrDigestMismatch),
		errors.Is(err, unpacker.ErrIDOutsideMapping):
		return ExitBadInput
	case errors.Is(err, fetcher.ErrNotFound),
		errors.Is(err, store.ErrImageNotFound),
		errors.Is(err, builder.ErrNoStore):
		return ExitNotFound
	case errors.Is(err, fetcher.ErrUnauthorized),
		errors.Is(err, fetcher.ErrPolicyDenied):
		return ExitUnauthorized
	case errors.Is(err, store.ErrLimitBelowBase),
		errors.Is(err, unpacker.ErrTooLarge),
		errors.Is(err, overlayxfs.ErrQuotaHelper),
		errors.Is(err, syscall.ENOSPC),
		errors.Is(err, syscall.EDQUOT):
		return ExitLimit
	case errors.Is(err, fetcher.ErrUnreachable),
		errors.Is(err, unpacker.ErrTruncated),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		isNetError(err):
		return ExitTransient
	case errors.Is(err, fs.ErrPermission):
		// After the registry classes: a store or file the caller may not
		// touch (EACCES, EPERM).
		return ExitUnauthorized
	}
	return ExitInternal
}

// isNetError: a network operation failed. Not the net.Error interface:
// syscall.Errno implements it too, so EACCES would count as network.
func isNetError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}
