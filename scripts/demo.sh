#!/usr/bin/env bash
# The demo: an unprivileged user turns a small busybox OCI image into a
# rootfs with taproot, and runc runs it rootless from the printed fragment.
# Run as root (it drops to the test user); `make demo` builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS=-tags=containers_image_openpgp

user="${TAPROOT_TEST_USER:-taproot-test}"
uid="$(id -u "$user")"
gid="$(id -g "$user")"
busybox="${TAPROOT_BUSYBOX:-/bin/busybox}"

[ -x bin/taproot ] || go build -o bin/taproot ./cmd/taproot

work="$(mktemp -d /tmp/taproot-demo.XXXXXX)"
chmod 0755 "$work"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/bin" "$work/xdg" "$work/runc" "$work/bundle"
chown "$uid:$gid" "$work/xdg" "$work/runc" "$work/bundle"
chmod 0700 "$work/xdg"
chown "$uid:$gid" "$work"

go build -o "$work/bin/mkimage" ./acceptance/cmd/mkimage
go build -o "$work/bin/mkbundle" ./acceptance/cmd/mkbundle
cp bin/taproot "$work/bin/taproot"

as_user() {
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)" \
		USER="$user" XDG_RUNTIME_DIR="$work/xdg" \
		setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"
}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. an OCI layout with one busybox-static layer (+ /etc/motd)"
as_user "$work/bin/mkimage" -busybox "$busybox" -out "$work/image" -tag demo

say "2. taproot create, as $user (uid $uid, sub-IDs from /etc/subuid)"
echo "\$ taproot --store $work/store create oci:$work/image:demo demo1"
as_user "$work/bin/taproot" --store "$work/store" create "oci:$work/image:demo" demo1 >"$work/fragment.json"
cat "$work/fragment.json"; echo

say "3. a runc bundle: the fragment's overlay mount first, then the usual rootless config"
as_user "$work/bin/mkbundle" -bundle "$work/bundle" -store "$work/store" -- \
	/bin/busybox sh -c 'id; ls /; cat /etc/motd; echo hello > /tmp/x; cat /tmp/x' <"$work/fragment.json"
echo "wrote $work/bundle/config.json"

say "4. runc run, rootless, as $user"
as_user runc --root "$work/runc" run --bundle "$work/bundle" demo1

say "5. the write landed in the image's upper dir, not in a layer"
ls -ln "$work/store/images/demo1/diff/tmp"
echo "\$ taproot stats demo1"
as_user "$work/bin/taproot" --store "$work/store" stats demo1; echo

say "6. taproot delete demo1"
as_user "$work/bin/taproot" --store "$work/store" delete demo1
as_user "$work/bin/taproot" --store "$work/store" list
echo "demo done"
cat <<EOT

Next (README.md): \`make install\` puts taproot in /usr/local/bin, where $user can
run it (bin/ of this checkout may not be reachable for it). $user's shell is
nologin: run commands as it with \`runuser -u $user -- taproot version\`, or get a
shell with \`su -s /bin/sh $user\`.
EOT
