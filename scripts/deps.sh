#!/usr/bin/env bash
# Installs the real parts taproot's tests and demo use, from Debian's
# packages. Idempotent: installs only what is missing and runs
# `apt-get update` only then. Run as root.
set -euo pipefail

packages=(
	runc             # rootless runtime the tests and demo run containers with
	crun             # second runtime (1.8.1 on Debian 12: see DESIGN.md)
	uidmap           # newuidmap/newgidmap for the unprivileged user namespace
	docker-registry  # local registry the acceptance tests push to
	busybox-static   # the static binary test images are built from
	xfsprogs         # mkfs.xfs, xfs_quota for the quota tests
	user-mode-linux  # kernel with XFS quota for the quota tests (acceptance/uml)
	skopeo           # inspecting images by hand
	umoci            # second reference unpacker in acceptance/fidelity_test.go (0.4.7 on Debian 12)
	jq               # the runc recipe in docs/runtimes.md merges the fragment with it
	util-linux       # setpriv, unshare, mountpoint
	iproute2
	tar
	ca-certificates
	make
	gcc              # cgo for go test -race
	git
)

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: must run as root (apt-get install)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
	echo "deps.sh: all packages present"
fi

if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
	echo "deps.sh: Go is not installed (expected at /usr/local/go)" >&2
	exit 1
fi
