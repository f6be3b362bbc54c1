package fetcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"

	"github.com/containers/image/v5/docker"
	ociarchive "github.com/containers/image/v5/oci/archive"
	ocilayout "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/signature"
	"github.com/docker/distribution/registry/api/errcode"
)

// Sentinel errors. Every error returned by this package that falls in one of
// these classes wraps the sentinel, so callers test with errors.Is.
var (
	// ErrBadReference: the image reference string cannot be parsed.
	ErrBadReference = errors.New("bad image reference")
	// ErrNotFound: the image, tag, manifest, repository, OCI layout dir,
	// archive or local path does not exist.
	ErrNotFound = errors.New("image not found")
	// ErrUnauthorized: the registry refused the credentials (or asked for
	// some and none were given).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrPolicyDenied: the signature policy (policy.json) rejects the image.
	ErrPolicyDenied = errors.New("rejected by signature policy")
	// ErrUnreachable: the registry could not be contacted at all (connection
	// refused, no such host, TLS/HTTP mismatch, timeout).
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnsafeSource: run as root, a local source (rootfs dir or tarball)
	// is on a path, or is a directory, that another user can change, so
	// they could steer root into reading what they cannot read.
	ErrUnsafeSource = errors.New("local source can be changed by other users")
)

// classify maps an error from containers/image or the network to one of the
// sentinels above, or returns nil if none fits. A missing file is not
// classified here: it means "image not found" only for file-based
// references (see fileNotFound), not for, say, a missing registries.conf.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrBadReference, ErrNotFound, ErrUnauthorized, ErrPolicyDenied, ErrUnreachable, ErrUnsafeSource} {
		if errors.Is(err, s) {
			return s
		}
	}

	var ec errcode.Error
	if errors.As(err, &ec) {
		switch ec.Code.String() {
		case "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "NOT_FOUND":
			return ErrNotFound
		case "UNAUTHORIZED", "DENIED":
			return ErrUnauthorized
		}
	}
	var ecs errcode.Errors
	if errors.As(err, &ecs) {
		for _, e := range ecs {
			if c := classify(e); c != nil {
				return c
			}
		}
	}
	if has[docker.ErrUnauthorizedForCredentials](err) {
		return ErrUnauthorized
	}
	if status, ok := errors.AsType[docker.UnexpectedHTTPStatusError](err); ok {
		switch status.StatusCode {
		case 404:
			return ErrNotFound
		case 401, 403:
			return ErrUnauthorized
		}
	}
	switch {
	case has[ocilayout.ImageNotFoundError](err),
		has[ociarchive.ImageNotFoundError](err),
		has[ociarchive.ArchiveFileNotFoundError](err):
		return ErrNotFound
	case has[signature.PolicyRequirementError](err):
		return ErrPolicyDenied
	case isNetworkError(err):
		return ErrUnreachable
	}
	return nil
}

// has reports whether err's tree holds an error of type E.
func has[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// isNetworkError reports whether err means the registry could not be talked
// to at all.
func isNetworkError(err error) bool {
	if has[*net.OpError](err) || has[*net.DNSError](err) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	// Plain HTTP registry contacted with HTTPS (no --insecure-registry).
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return true
	}
	return false
}

// retryable reports whether a failed registry operation may succeed if tried
// again: 5xx and 429 answers, resets, refused connections and timeouts.
// Not: 4xx, DNS "no such host", TLS verification failures, bad input.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	switch classify(err) {
	case ErrBadReference, ErrNotFound, ErrUnauthorized, ErrPolicyDenied:
		return false
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return status.StatusCode >= 500 || status.StatusCode == 429
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return true
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		switch ec.Code.String() {
		case "UNKNOWN", "UNAVAILABLE", "TOOMANYREQUESTS":
			return true
		}
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	return false
}

// fileNotFound marks a "no such file" error of a file-based reference
// (oci:, oci-archive:, docker-archive:, local path) as ErrNotFound.
func fileNotFound(err error) error {
	if classify(err) == nil && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// wrapErr turns err into the package's one-line form:
// "<op> <ref>: <sentinel text>: <cause>", wrapping the sentinel (when one
// fits) and the cause.
func wrapErr(op, ref string, err error) error {
	if err == nil {
		return nil
	}
	s := classify(err)
	if s == nil || errors.Is(err, s) {
		// Either no class, or the sentinel's text is already in the chain.
		return fmt.Errorf("%s %s: %w", op, ref, err)
	}
	return fmt.Errorf("%s %s: %w: %w", op, ref, s, err)
}
