package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
	"testing"

	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/unpacker"
)

func TestClassOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("fetch docker://x/y:z: %w", err) }
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{errors.New("something odd"), ClassInternal},
		{wrap(fetcher.ErrBadReference), ClassBadInput},
		{BadInput(errors.New("--flag: bad")), ClassBadInput},
		{wrap(store.ErrBadID), ClassBadInput},
		{wrap(store.ErrImageExists), ClassBadInput},
		{wrap(store.ErrMappingDiffer), ClassBadInput},
		{wrap(fetcher.ErrNotFound), ClassNotFound},
		{wrap(store.ErrImageNotFound), ClassNotFound},
		{fmt.Errorf("%w at /x", ErrNoStore), ClassNotFound},
		{wrap(fetcher.ErrUnauthorized), ClassUnauthorized},
		{wrap(fetcher.ErrPolicyDenied), ClassUnauthorized},
		{&fs.PathError{Op: "mkdir", Path: "/root/store", Err: syscall.EACCES}, ClassUnauthorized},
		{wrap(fetcher.ErrUnreachable), ClassTransient},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), ClassTransient},
		{wrap(context.DeadlineExceeded), ClassTransient},
		{wrap(store.ErrLimitBelowBase), ClassLimit},
		{wrap(overlayxfs.ErrQuotaHelper), ClassLimit},
		{&fs.PathError{Op: "write", Path: "/s/x", Err: syscall.ENOSPC}, ClassLimit},
		{&fs.PathError{Op: "write", Path: "/s/x", Err: syscall.EDQUOT}, ClassLimit},
		{fmt.Errorf("%w; run taproot check --repair", ErrStoreDamaged), ClassDamaged},
		{wrap(store.ErrBadRecord), ClassDamaged},
		{wrap(store.ErrStoreUnsafe), ClassBadInput},
		{wrap(unpacker.ErrUnsafePath), ClassBadInput},
		{wrap(unpacker.ErrDigestMismatch), ClassBadInput},
		{wrap(unpacker.ErrIDOutsideMapping), ClassBadInput},
		{wrap(unpacker.ErrInvalidLayer), ClassBadInput},
		{&fs.PathError{Op: "openat", Path: "nnn", Err: syscall.ENAMETOOLONG}, ClassBadInput},
		{wrap(io.ErrUnexpectedEOF), ClassTransient},
		{wrap(unpacker.ErrTooLarge), ClassLimit},
		{wrap(unpacker.ErrTruncated), ClassTransient},
		{wrap(store.ErrUnreachable), ClassBadInput},
		{wrap(overlayxfs.ErrMountPath), ClassBadInput},
		{wrap(overlayxfs.ErrSharedFilesystem), ClassBadInput},
		{wrap(context.Canceled), ClassTransient},
		{wrap(&net.DNSError{Err: "no such host", Name: "x"}), ClassTransient},
		{&fs.PathError{Op: "read", Path: "/s/x", Err: syscall.ECONNRESET}, ClassTransient},
		// A registry failure that also wraps a permission error is a
		// registry class, not "permission denied".
		{fmt.Errorf("%w: %w", fetcher.ErrUnreachable, fs.ErrPermission), ClassTransient},
	} {
		if got := ClassOf(tc.err); got != tc.want {
			t.Errorf("ClassOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	// BadInput keeps the message.
	if got := BadInput(errors.New("--x 1: must be 2")).Error(); got != "--x 1: must be 2" {
		t.Errorf("BadInput changed the message: %q", got)
	}
}
