// Package acceptance holds black-box tests of the built taproot binaries
// with real parts: a local docker-registry, runc and crun run rootless as an
// unprivileged test user, and images built by the tests themselves.
//
// Run them with `make test` as root, or directly:
//
//	TAPROOT_BIN=bin/taproot go test ./acceptance/
//
// Environment: TAPROOT_BIN, TAPROOT_QUOTA_BIN (else built with go build),
// TAPROOT_TEST_USER (default taproot-test, made by scripts/test-user.sh),
// TAPROOT_BUSYBOX (default /bin/busybox, must be static), TAPROOT_KEEP=1 to
// keep the work dir for a look afterwards.
//
// The tests use taproot only through its binaries: they import no taproot
// package but acceptance/internal/* (internal/depcheck pins that), with two
// exceptions, test helpers that unit tests share and that link no product
// code: internal/swaprace (the swap racer, shared with fetcher's tests;
// localsrc_test.go) and internal/rawtar (hand-made tar blocks, shared with
// unpacker's tests; bounds_test.go, hostile_test.go). The benchmark tool
// cmd/mkbenchimage alone may import unpacker, to profile it without the
// registry and the worker. The tests learn the test user's sub-ID ranges
// from getsubids(1), not from taproot's own parser.
package acceptance
