#!/usr/bin/env bash
# gotest-strict.sh ARGS...: `go test -v ARGS`, quiet unless something fails,
# and failing when any test was skipped: a green `make test` must mean every
# test really ran (a skip names the part the machine lacks; scripts/deps.sh
# and scripts/test-user.sh provide all of them). TAPROOT_STRICT=0 allows
# skips (they are still listed).
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
go test -v "$@" >"$log" 2>&1
rc=$?
# Package summaries, failures and their output.
grep -E '^(ok|FAIL|panic:|---|\?)' "$log" | grep -v -- '--- PASS' || true
if [ "$rc" -ne 0 ]; then
	echo "== go test failed; full output:"
	cat "$log"
	exit "$rc"
fi
skips="$(grep -A3 -- '--- SKIP' "$log" || true)"
if [ -n "$skips" ]; then
	echo "== skipped tests:"
	echo "$skips"
	if [ "${TAPROOT_STRICT:-1}" != "0" ]; then
		echo "== strict mode: a skipped test fails the run (TAPROOT_STRICT=0 allows skips)"
		exit 1
	fi
fi
