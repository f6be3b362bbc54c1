#!/usr/bin/env bash
# Creates the unprivileged user that the acceptance tests and the demo run
# taproot and the runtimes as, with 65536 sub-UIDs and sub-GIDs, and a
# second plain user (no sub-IDs) that the privacy tests play the attacking
# local user with. Idempotent; run as root.
set -euo pipefail

user="${TAPROOT_TEST_USER:-taproot-test}"
other="${TAPROOT_OTHER_USER:-taproot-other}"
count=65536

if [ "$(id -u)" -ne 0 ]; then
	echo "test-user.sh: must run as root" >&2
	exit 1
fi

touch /etc/subuid /etc/subgid

if ! getent passwd "$user" >/dev/null; then
	useradd --create-home --shell /usr/sbin/nologin --user-group "$user"
fi
if ! getent passwd "$other" >/dev/null; then
	useradd --create-home --shell /usr/sbin/nologin --user-group "$other"
fi
home="$(getent passwd "$user" | cut -d: -f6)"
if [ ! -d "$home" ]; then
	mkdir -p "$home"
	chown "$user:$user" "$home"
fi

# next_free FILE: first ID >= 100000 above every range already in FILE.
next_free() {
	awk -F: 'BEGIN { m = 100000 } NF >= 3 { e = $2 + $3; if (e > m) m = e } END { print m }' "$1"
}

# ensure_range FILE: add "user:start:count" unless the user has a range of
# at least $count IDs already.
ensure_range() {
	local file="$1"
	if awk -F: -v u="$user" -v uid="$(id -u "$user")" -v n="$count" \
		'($1 == u || $1 == uid) && $3 >= n { found = 1 } END { exit !found }' "$file"; then
		return 0
	fi
	local start
	start="$(next_free "$file")"
	echo "$user:$start:$count" >>"$file"
	echo "test-user.sh: added $user:$start:$count to $file"
}

ensure_range /etc/subuid
ensure_range /etc/subgid

echo "test-user.sh: user $user (uid $(id -u "$user"), gid $(id -g "$user")), home $home; other user $other (uid $(id -u "$other"))"
grep "^$user:" /etc/subuid /etc/subgid
