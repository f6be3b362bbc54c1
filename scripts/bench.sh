#!/usr/bin/env bash
# `make bench`: taproot against rootless podman and skopeo+umoci, side by
# side, on images built from this machine's own files and served by a local
# docker-registry. Prints a table of medians, ratios against the targets of
# issue 7, peak RSS, and machine-readable lines:
#   BENCH name=<what> value=<number> unit=<s|ms|KB|x>
# Not a pass/fail test. Run as root on Debian 12 (it installs what is missing,
# makes the test user, and runs every tool as that user). See
# docs/PERFORMANCE.md for what is measured and how to read it.
#
# Knobs (environment):
#   REPS=3                 cold repetitions per tool and image (interleaved)
#   WARM_REPS=15           warm creates / stats / deletes per case
#   BENCH_WORK=/var/tmp/taproot-bench   work dir (images are kept and reused)
#   BENCH_REBUILD=1        rebuild the images
#   BENCH_LOAD_MAX=1.0     wait until the 1-minute load is below this ...
#   BENCH_LOAD_WAIT=300    ... for at most this many seconds, then go anyway
#   BENCH_ONLY="debian-gz debian-zst small60k many150"   cold images to run
#   BENCH_TOOLS="taproot podman umoci"                  cold tools to run
set -euo pipefail

REPS=${REPS:-3}
WARM_REPS=${WARM_REPS:-15}
WORK=${BENCH_WORK:-/var/tmp/taproot-bench}
LOAD_MAX=${BENCH_LOAD_MAX:-1.0}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
ONLY=${BENCH_ONLY:-debian-gz debian-zst small60k many150}
TOOLS=${BENCH_TOOLS:-taproot podman umoci}
TEST_USER=${TAPROOT_TEST_USER:-taproot-test}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp}

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }
[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, runs tools as $TEST_USER)"

# --- dependencies (idempotent) ------------------------------------------------
pkgs=(podman skopeo umoci time docker-registry uidmap util-linux)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || die "go not found (PATH=$PATH)"
TAPROOT_TEST_USER=$TEST_USER bash "$REPO_ROOT/scripts/test-user.sh" >&2
UID_=$(id -u "$TEST_USER")
GID_=$(id -g "$TEST_USER")

# --- build --------------------------------------------------------------------
mkdir -p "$WORK/bin" "$WORK/img"
chmod 0755 "$WORK" "$WORK/bin" "$WORK/img"
log "building taproot and mkbenchimage"
(cd "$REPO_ROOT" && go build -o "$WORK/bin/taproot" ./cmd/taproot &&
	go build -o "$WORK/bin/mkbenchimage" ./acceptance/cmd/mkbenchimage)
TAPROOT=$WORK/bin/taproot
MKB=$WORK/bin/mkbenchimage

# name → "kind layout tag extra-flags"
declare -A IMG=(
	[debian-gz]="debian $WORK/img/debian gz -compression=gzip"
	[debian-zst]="debian $WORK/img/debian zst -compression=zstd"
	[small60k]="smallfiles $WORK/img/small v1 -files=60000"
	[many150]="manylayers $WORK/img/many v1 -layers=150"
)
NAMES=(debian-gz debian-zst small60k many150)
for n in "${NAMES[@]}"; do
	read -r kind dir tag extra <<<"${IMG[$n]}"
	if [ -n "${BENCH_REBUILD:-}" ] || ! grep -q "\"$tag\"" "$dir/index.json" 2>/dev/null; then
		log "building image $n"
		"$MKB" "$kind" -out "$dir" -tag "$tag" $extra >&2
	fi
done
chmod -R a+rX "$WORK/img"

avail=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
[ "$avail" -gt $(( (REPS * 6 + 10) * 1024 * 1024 )) ] ||
	log "warning: $((avail / 1024 / 1024)) GiB free in $WORK; the cold runs keep ~6 GiB per repetition until the end"

# --- registry -------------------------------------------------------------------
RUN=$(mktemp -d "$WORK/run.XXXXXX")
chmod 0755 "$RUN"
REG_PID=
cleanup() {
	[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
	rm -rf "$RUN" 2>/dev/null || true
}
trap cleanup EXIT
port=
for _ in $(seq 50); do
	p=$((20000 + RANDOM % 30000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port"
REG=127.0.0.1:$port
mkdir -p "$RUN/registry"
cat >"$RUN/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUN/registry/data
http:
  addr: $REG
EOF
docker-registry serve "$RUN/registry/config.yml" >"$RUN/registry/log" 2>&1 &
REG_PID=$!
for _ in $(seq 150); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done
declare -A DIGEST
for n in "${NAMES[@]}"; do
	read -r kind dir tag extra <<<"${IMG[$n]}"
	skopeo copy -q --dest-tls-verify=false --digestfile "$RUN/digest" "oci:$dir:$tag" "docker://$REG/bench/$n:latest" >&2
	DIGEST[$n]=$(cat "$RUN/digest")
done
log "registry $REG has ${NAMES[*]}"

# --- helpers --------------------------------------------------------------------
USER_HOME=$RUN/home
mkdir -p "$USER_HOME" "$RUN/xdg"
chown "$UID_:$GID_" "$USER_HOME" "$RUN/xdg"
chmod 0700 "$RUN/xdg"
USERCMD=(setpriv --reuid="$UID_" --regid="$GID_" --init-groups --
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	HOME="$USER_HOME" USER="$TEST_USER" LOGNAME="$TEST_USER" XDG_RUNTIME_DIR="$RUN/xdg" LANG=C)
as_user() { "${USERCMD[@]}" "$@"; }
# userdir PATH: an empty dir owned by the test user.
userdir() { rm -rf "$1"; mkdir -p "$1"; chown "$UID_:$GID_" "$1"; }
# timed OUT CMD...: runs CMD as the test user and appends "seconds
# max_rss_kb" to OUT (%M: the largest process of the tree); fails if CMD does.
timed() {
	local out=$1; shift
	/usr/bin/time -f '%e %M' -o "$RUN/time" "${USERCMD[@]}" "$@" >/dev/null 2>"$RUN/stderr" ||
		{ cat "$RUN/stderr" >&2; die "failed: $*"; }
	cat "$RUN/time" >>"$out"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
maxcol() { awk -v c="$1" 'BEGIN{m=0} $c>m{m=$c} END{print m}'; }
wait_quiet() {
	local waited=0 l
	while :; do
		l=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$l" -v m="$LOAD_MAX" 'BEGIN{exit !(l < m)}'; then log "load $l"; break; fi
		if [ "$waited" -ge "$LOAD_WAIT" ]; then log "load still $l after ${waited}s; measuring anyway"; break; fi
		sleep 10; waited=$((waited + 10))
	done
	echo "$l" >>"$RUN/loads"
}
bench() { printf 'BENCH name=%s value=%s unit=%s\n' "$1" "$2" "$3" | tee -a "$RUN/bench"; }
# ms CMD...: prints the wall milliseconds (µs precision) of CMD.
ms() {
	local a b
	a=${EPOCHREALTIME/./}
	"$@" >/dev/null 2>"$RUN/stderr" || { cat "$RUN/stderr" >&2; die "failed: $*"; }
	b=${EPOCHREALTIME/./}
	awk -v d=$((b - a)) 'BEGIN{printf "%.2f\n", d/1000}'
}

# --- cold: interleaved, fresh storage every run ------------------------------------
# Every cold run gets its own dir, removed only at the end: on ext4 without a
# journal (this VM's root fs), the inode allocator skips inodes freed in the
# last ~30 s (find_inode_bit → recently_deleted), so deleting a run's 60,000
# files just before the next run makes that run's creates crawl.
R=$RUN/results
C=$RUN/cold
mkdir -p "$R" "$C"
cold_taproot() { # image
	local d=$C/taproot-$1-$rep
	userdir "$d"
	timed "$R/$1.taproot" "$TAPROOT" --store "$d/store" create --insecure-registry "$REG" "docker://$REG/bench/$1:latest" c1
}
cold_podman() {
	local d=$C/podman-$1-$rep rr=/tmp/taproot-bench-rr.$$ # podman: runroot of at most 50 characters
	userdir "$d"
	userdir "$rr"
	timed "$R/$1.podman" podman --root "$d/root" --runroot "$rr" --storage-driver overlay \
		--cgroup-manager cgroupfs --events-backend file pull -q --tls-verify=false "$REG/bench/$1:latest"
	rm -rf "$rr"
}
cold_umoci() {
	case $1 in *-zst)
		# umoci 0.4.7 (Debian 12) refuses zstd layers ("blob is not correct mediatype").
		log "skip skopeo+umoci for $1: umoci $(umoci --version 2>/dev/null | awk '{print $3}') has no zstd"
		return 0 ;;
	esac
	local d=$C/umoci-$1-$rep
	userdir "$d"
	timed "$RUN/u.copy" skopeo copy -q --src-tls-verify=false "docker://$REG/bench/$1:latest" "oci:$d/oci:latest"
	timed "$RUN/u.unpack" umoci unpack --rootless --image "$d/oci:latest" "$d/bundle"
	paste "$RUN/u.copy" "$RUN/u.unpack" | awk '{printf "%.2f %d\n", $1+$3, ($2>$4?$2:$4)}' >>"$R/$1.umoci"
	rm -f "$RUN/u.copy" "$RUN/u.unpack"
}
# Decompression reference: klauspost (the library taproot uses) over the
# image's blobs, to io.Discard, serially and one goroutine per layer.
decomp_ref() { # image
	read -r kind dir tag extra <<<"${IMG[$1]}"
	local blobs
	blobs=$(as_user skopeo inspect --raw "oci:$dir:$tag" | grep -o '"digest":"sha256:[0-9a-f]*"' | tail -n +2 |
		sed 's/.*sha256:\([0-9a-f]*\)"/\1/' | sed "s|^|$dir/blobs/sha256/|")
	cat $blobs >/dev/null # same page-cache state as the registry's files
	"$MKB" decompress $blobs | sed 's/seconds=\([^ ]*\).*/\1/' >>"$R/$1.decomp-serial"
	"$MKB" decompress -parallel $blobs | sed 's/seconds=\([^ ]*\).*/\1/' >>"$R/$1.decomp-parallel"
}

wait_quiet
for rep in $(seq "$REPS"); do
	for n in $ONLY; do
		log "cold rep $rep/$REPS: $n"
		for tool in $TOOLS; do "cold_$tool" "$n"; done
		case $n in debian-*) decomp_ref "$n" ;; esac
	done
done

# --- warm: layers present --------------------------------------------------------
log "warm creates"
W=$RUN/w
userdir "$W"
as_user "$TAPROOT" --store "$W/store" create --insecure-registry "$REG" "docker://$REG/bench/debian-gz:latest" seed >/dev/null
as_user "$TAPROOT" --store "$W/store" create --insecure-registry "$REG" "docker://$REG/bench/many150:latest" seed150 >/dev/null
read -r _ gzdir gztag _ <<<"${IMG[debian-gz]}"
wait_quiet
declare -A WARMREF=(
	[warm_digest]="docker://$REG/bench/debian-gz@${DIGEST[debian-gz]}"
	[warm_oci]="oci:$gzdir:$gztag"
	[warm_tag]="docker://$REG/bench/debian-gz:latest"
	[warm_tag_150layers]="docker://$REG/bench/many150:latest"
)
WARMCASES=(warm_digest warm_oci warm_tag warm_tag_150layers)
for i in $(seq "$WARM_REPS"); do
	for c in "${WARMCASES[@]}"; do
		ms as_user "$TAPROOT" --store "$W/store" create --insecure-registry "$REG" "${WARMREF[$c]}" "$c-$i" >>"$R/$c"
	done
done
# Process start alone (the floor under every number above).
for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --help >>"$R/exec_floor"; done

# --- stats: empty upper, then 1 GiB in 1024 files --------------------------------
log "stats"
for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --store "$W/store" stats warm_digest-1 >>"$R/stats_empty"; done
as_user "$MKB" fill -dir "$W/store/images/warm_digest-1/diff/bench" -bytes $((1 << 30)) -files 1024
for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --store "$W/store" stats warm_digest-1 >>"$R/stats_1g"; done

# --- delete: images with 1 GiB in their upper dir ------------------------------------
log "deletes"
DEL_REPS=$(( REPS < 5 ? 5 : REPS ))
for i in $(seq "$DEL_REPS"); do
	as_user "$MKB" fill -dir "$W/store/images/warm_oci-$i/diff/bench" -bytes $((1 << 30)) -files 1024
	sync -f "$W/store/images/warm_oci-$i/diff" 2>/dev/null || true
	ms as_user "$TAPROOT" --store "$W/store" delete "warm_oci-$i" >>"$R/delete_1g"
done
sleep 2 # let the background reclaim finish

# --- report ---------------------------------------------------------------------------
col() { if [ -s "$2" ]; then awk -v c="$1" '{print $c}' "$2" | median; else echo nan; fi; }
rss() { if [ -s "$1" ]; then maxcol 2 <"$1"; else echo nan; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f\n", a/b }'; }
echo
printf '%-12s %10s %10s %10s %9s %9s %9s %11s %11s\n' image taproot_s podman_s umoci_s rss_tap rss_pod rss_umoci decomp_par decomp_ser
for n in $ONLY; do
	t=$(col 1 "$R/$n.taproot"); p=$(col 1 "$R/$n.podman"); u=$(col 1 "$R/$n.umoci")
	tr=$(rss "$R/$n.taproot"); pr=$(rss "$R/$n.podman"); ur=$(rss "$R/$n.umoci")
	dp=$(col 1 "$R/$n.decomp-parallel"); ds=$(col 1 "$R/$n.decomp-serial")
	printf '%-12s %10s %10s %10s %8sK %8sK %8sK %11s %11s\n' "$n" "$t" "$p" "$u" "$tr" "$pr" "$ur" "$dp" "$ds"
done
echo
{
	for n in $ONLY; do
		t=$(col 1 "$R/$n.taproot"); p=$(col 1 "$R/$n.podman"); u=$(col 1 "$R/$n.umoci")
		bench "cold_${n}_taproot" "$t" s
		bench "cold_${n}_podman" "$p" s
		bench "cold_${n}_skopeo_umoci" "$u" s
		bench "cold_${n}_taproot_peak_rss" "$(rss "$R/$n.taproot")" KB
		bench "cold_${n}_podman_peak_rss" "$(rss "$R/$n.podman")" KB
		bench "cold_${n}_taproot_vs_podman" "$(ratio "$t" "$p")" x
		bench "cold_${n}_taproot_vs_skopeo_umoci" "$(ratio "$t" "$u")" x
		if [ -s "$R/$n.decomp-parallel" ]; then
			dp=$(col 1 "$R/$n.decomp-parallel")
			bench "decompress_${n}_parallel" "$dp" s
			bench "decompress_${n}_serial" "$(col 1 "$R/$n.decomp-serial")" s
			bench "cold_${n}_taproot_vs_parallel_decompress" "$(ratio "$t" "$dp")" x
		fi
	done
	for c in "${WARMCASES[@]}" exec_floor stats_empty stats_1g delete_1g; do
		bench "$c" "$(col 1 "$R/$c")" ms
	done
	bench load_1min_max "$(sort -g "$RUN/loads" | tail -1)" load
} >/dev/null
echo "targets (issue 7):"
awk '
	{ split($2, n, "="); split($3, v, "="); val[n[2]] = v[2] }
	function row(what, got, op, target) {
		ok = (got == "nan" || got == "") ? "n/a" : ((op == "<=" && got + 0 <= target) ? "met" : "MISSED")
		printf "  %-52s %10s  %s %-6s %s\n", what, got, op, target, ok
	}
	END {
		row("cold debian-gz: taproot / podman pull", val["cold_debian-gz_taproot_vs_podman"], "<=", 0.4)
		row("cold debian-gz: taproot / parallel decompression", val["cold_debian-gz_taproot_vs_parallel_decompress"], "<=", 1.3)
		row("cold debian-zst: taproot / podman pull", val["cold_debian-zst_taproot_vs_podman"], "<=", 0.4)
		row("cold small60k: taproot / podman pull", val["cold_small60k_taproot_vs_podman"], "<=", 0.5)
		row("warm create, digest-pinned (ms)", val["warm_digest"], "<=", 10)
		row("warm create, oci: ref (ms)", val["warm_oci"], "<=", 10)
		row("warm create, tag lookup on a local registry (ms)", val["warm_tag"], "<=", 20)
		row("stats, empty upper (ms)", val["stats_empty"], "<=", 5)
		row("stats, 1 GiB upper (ms)", val["stats_1g"], "<=", 5)
		row("delete, 1 GiB upper (ms)", val["delete_1g"], "<=", 20)
		row("peak RSS, cold debian-gz create (KB)", val["cold_debian-gz_taproot_peak_rss"], "<=", 102400)
	}' "$RUN/bench"
echo
cat "$RUN/bench"
