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
package acceptance
