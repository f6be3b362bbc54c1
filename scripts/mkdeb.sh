#!/usr/bin/env bash
# Builds OUT/taproot_<version>_<arch>.deb from already built binaries:
# stages `make install-files` (PREFIX=/usr) in a temp tree, adds the control
# files from packaging/debian and runs dpkg-deb --build --root-owner-group,
# so every file is root's and taproot-quota keeps its setuid bit.
#
#   BIN=bin OUT=dist VERSION=1.2.3 scripts/mkdeb.sh      (make deb does this)
#   DEB_ZLEVEL=1 for a faster, bigger package (default 9)
#
# Prints the path of the .deb on stdout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/bin}
OUT=${OUT:-$root/dist}
for b in taproot taproot-quota; do
	if [ ! -x "$BIN/$b" ]; then
		echo "mkdeb.sh: $BIN/$b is missing: run make build (or set BIN)" >&2
		exit 1
	fi
done
for tool in dpkg-deb dpkg make gzip md5sum; do
	command -v "$tool" >/dev/null || { echo "mkdeb.sh: $tool is not installed" >&2; exit 1; }
done

if [ -z "${VERSION:-}" ]; then
	desc=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)
	case $desc in
	v[0-9]*) VERSION=${desc#v} ;;
	*) VERSION="0.0~git$(date -u +%Y%m%d)+${desc}" ;;
	esac
	VERSION=$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9.+~\n' '+')
fi
ARCH=${ARCH:-$(dpkg --print-architecture)}

stage=$(mktemp -d "${TMPDIR:-/tmp}/taproot-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

make --no-print-directory -s -C "$root" install-files \
	BIN="$BIN" DESTDIR="$stage" PREFIX=/usr SYSCONFDIR=/etc \
	SYSTEMDUNITDIR=/lib/systemd/system GZIP_MAN=1 >&2

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" "$root/packaging/debian/control" > "$stage/DEBIAN/control"
echo "Installed-Size: $size" >> "$stage/DEBIAN/control"
install -m 0644 "$root/packaging/debian/conffiles" "$stage/DEBIAN/conffiles"
for s in preinst postinst prerm postrm; do
	install -m 0755 "$root/packaging/debian/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

mkdir -p "$OUT"
deb="$OUT/taproot_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zgzip -z"${DEB_ZLEVEL:-9}" --build "$stage" "$deb" >&2
echo "$deb"
