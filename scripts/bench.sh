#!/usr/bin/env bash
# `make bench`: taproot next to rootless podman (its peer) and to the floors
# (klauspost decompression of the same layers, and GNU tar decompressing and
# writing them) measured in the same run, on images built from this
# machine's own files and served by a local docker-registry; then 20
# concurrent cold creates against one, syscalls per entry (strace, this tree
# and a before-commit), and the store's scale curve (gc BenchmarkScale).
# Prints a table of medians with ratio columns, the goals of issue 18 with
# the measured figures, and machine-readable lines:
#   BENCH name=<what> value=<number> unit=<s|ms|KB|x|calls|load>
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
#   BENCH_ONLY="debian-gz debian-zst small60k many150 big1"   cold images
#   BENCH_TOOLS="taproot taproot_nosync podman tar"   cold tools (add umoci
#                          for skopeo+umoci; taproot_nosync: [create] sync = false)
#   BENCH_PARTS="cold warm conc strace scale"   sections to run
#   BENCH_BEFORE=667af9f   the commit whose unpacker the strace section
#                          compares against ("" skips it)
#   BENCH_BASE=COMMIT      adds the cold tool taproot_base: taproot built at
#                          COMMIT, to measure a change in the same run
set -euo pipefail

REPS=${REPS:-3}
WARM_REPS=${WARM_REPS:-15}
WORK=${BENCH_WORK:-/var/tmp/taproot-bench}
LOAD_MAX=${BENCH_LOAD_MAX:-1.0}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
ONLY=${BENCH_ONLY:-debian-gz debian-zst small60k many150 big1}
TOOLS=${BENCH_TOOLS:-taproot taproot_nosync podman tar}
PARTS=${BENCH_PARTS:-cold warm conc strace scale}
BEFORE=${BENCH_BEFORE-667af9f}
BASE=${BENCH_BASE:-}
[ -z "$BASE" ] || case " $TOOLS " in *" taproot_base "*) ;; *) TOOLS="$TOOLS taproot_base" ;; esac
TEST_USER=${TAPROOT_TEST_USER:-taproot-test}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp}

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }
[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, runs tools as $TEST_USER)"

# --- dependencies (idempotent) ------------------------------------------------
pkgs=(podman skopeo umoci time docker-registry uidmap util-linux strace zstd tar gzip)
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
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
# build_at COMMIT OUT: taproot built from the tree at COMMIT (git archive).
build_at() {
	[ -x "$2" ] && return 0
	log "building taproot at $1"
	rm -rf "$WORK/src-$1" && mkdir -p "$WORK/src-$1"
	(cd "$REPO_ROOT" && git archive "$1") | tar -x -C "$WORK/src-$1"
	(cd "$WORK/src-$1" && go build -o "$2" ./cmd/taproot)
}
BASE_TAPROOT=
if [ -n "$BASE" ]; then
	BASE_TAPROOT=$WORK/bin/taproot-base-$BASE
	build_at "$BASE" "$BASE_TAPROOT" || die "cannot build BENCH_BASE=$BASE"
fi
# The before-binary for syscalls per entry: the tree at $BEFORE (the
# unpacker that resolved every entry by a full-path openat2), built once.
OLD_TAPROOT=
if has_part strace && [ -n "$BEFORE" ]; then
	OLD_TAPROOT=$WORK/bin/taproot-$BEFORE
	build_at "$BEFORE" "$OLD_TAPROOT" || { log "cannot build $BEFORE: no before figure"; OLD_TAPROOT=; }
fi

# name → "kind layout tag extra-flags"
declare -A IMG=(
	[debian-gz]="debian $WORK/img/debian gz -compression=gzip"
	[debian-zst]="debian $WORK/img/debian zst -compression=zstd"
	[small60k]="smallfiles $WORK/img/small v1 -files=60000"
	[many150]="manylayers $WORK/img/many v1 -layers=150"
	[big1]="bigsingle $WORK/img/big v1 -compression=gzip"
)
NAMES=(debian-gz debian-zst small60k many150 big1)
for n in "${NAMES[@]}"; do
	read -r kind dir tag extra <<<"${IMG[$n]}"
	if [ -n "${BENCH_REBUILD:-}" ] || ! grep -q "\"$tag\"" "$dir/index.json" 2>/dev/null; then
		log "building image $n"
		"$MKB" "$kind" -out "$dir" -tag "$tag" $extra >&2
	fi
done
chmod -R a+rX "$WORK/img"

avail=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
[ "$avail" -gt $(( (REPS * 10 + 10) * 1024 * 1024 )) ] ||
	log "warning: $((avail / 1024 / 1024)) GiB free in $WORK; the cold runs keep ~10 GiB per repetition until the end"

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
    disabled: false
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
if has_part conc; then
	# Two more repos of debian-gz, new to every store: one create, 20 at once.
	read -r _ gzdir gztag _ <<<"${IMG[debian-gz]}"
	for repo in conc-one conc-twenty; do
		skopeo copy -q --dest-tls-verify=false "oci:$gzdir:$gztag" "docker://$REG/bench/$repo:latest" >&2
	done
fi
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
# max_rss_kb cpu_seconds user_seconds sys_seconds" to OUT (%M: the largest process of the tree; CPU:
# user+sys of the whole tree, the figure least moved by others' load);
# fails if CMD does.
timed() {
	local out=$1; shift
	/usr/bin/time -f '%e %M %U %S' -o "$RUN/time.raw" "${USERCMD[@]}" "$@" >/dev/null 2>"$RUN/stderr" ||
		{ cat "$RUN/stderr" >&2; die "failed: $*"; }
	awk '{printf "%s %s %.2f %s %s\n", $1, $2, $3 + $4, $3, $4}' "$RUN/time.raw" >>"$out"
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
# The same with [create] sync = false: no syncfs per layer. Neither podman
# pull nor the tar floor flushes; this column shows what the flush costs.
cold_taproot_nosync() {
	local d=$C/taproot-nosync-$1-$rep
	userdir "$d"
	[ -f "$RUN/nosync.toml" ] || { printf '[create]\nsync = false\n' >"$RUN/nosync.toml"; chmod 0644 "$RUN/nosync.toml"; }
	timed "$R/$1.taproot_nosync" "$TAPROOT" --config "$RUN/nosync.toml" --store "$d/store" create --insecure-registry "$REG" "docker://$REG/bench/$1:latest" c1
}
# taproot at $BENCH_BASE, same everything else.
cold_taproot_base() {
	local d=$C/taproot-base-$1-$rep
	userdir "$d"
	timed "$R/$1.taproot_base" "$BASE_TAPROOT" --store "$d/store" create --insecure-registry "$REG" "docker://$REG/bench/$1:latest" c1
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
	paste "$RUN/u.copy" "$RUN/u.unpack" | awk '{printf "%.2f %d %.2f %.2f %.2f\n", $1+$6, ($2>$7?$2:$7), $3+$8, $4+$9, $5+$10}' >>"$R/$1.umoci"
	rm -f "$RUN/u.copy" "$RUN/u.unpack"
}
# layer_blobs IMAGE: the paths of the image's layer blobs in its layout.
layer_blobs() {
	read -r kind dir tag extra <<<"${IMG[$1]}"
	as_user skopeo inspect --raw "oci:$dir:$tag" | grep -o '"digest":"sha256:[0-9a-f]*"' | tail -n +2 |
		sed 's/.*sha256:\([0-9a-f]*\)"/\1/' | sed "s|^|$dir/blobs/sha256/|"
}
# The write floor: GNU tar decompressing and extracting every layer blob, one
# pipeline per layer, all at once, as the test user, into a fresh dir each
# (what taproot does minus hashing, ownership and records).
cold_tar() {
	local d=$C/tar-$1-$rep blobs
	blobs=$(layer_blobs "$1")
	userdir "$d"
	timed "$R/$1.tar" bash -c '
		d=$1; shift; i=0
		for b in "$@"; do
			mkdir "$d/$i"
			case $(head -c4 "$b" | od -An -tx1 | tr -d " ") in
			28b52ffd) (zstd -dcq "$b" | tar -x -C "$d/$i") & ;;
			*) (gzip -dc "$b" | tar -x -C "$d/$i") & ;;
			esac
			i=$((i + 1))
		done
		wait' _ "$d" $blobs
}
# Decompression floor: klauspost (the library taproot uses) over the
# image's blobs, to io.Discard, serially and one goroutine per layer.
decomp_ref() { # image
	local blobs
	blobs=$(layer_blobs "$1")
	cat $blobs >/dev/null # same page-cache state as the registry's files
	"$MKB" decompress $blobs | sed 's/seconds=\([^ ]*\).*/\1/' >>"$R/$1.decomp-serial"
	"$MKB" decompress -parallel $blobs | sed 's/seconds=\([^ ]*\).*/\1/' >>"$R/$1.decomp-parallel"
}
loadnow() { cut -d' ' -f1 /proc/loadavg; }

if has_part cold; then
	wait_quiet
	for rep in $(seq "$REPS"); do
		for n in $ONLY; do
			log "cold rep $rep/$REPS: $n (load $(loadnow))"
			loadnow >>"$RUN/loads"
			for tool in $TOOLS; do
				case $tool/$n in tar/many150) continue ;; esac # 150 tiny layers: no floor wanted
				"cold_$tool" "$n"
			done
			case $n in many150) ;; *) decomp_ref "$n" ;; esac
		done
	done
fi

# --- warm: layers present --------------------------------------------------------
W=$RUN/w
if has_part warm; then
	log "warm creates"
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
	# Process start alone (the floor under every number above): --help, and
	# list of this store (opens it, reads the records).
	for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --help >>"$R/exec_floor"; done
	for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --store "$W/store" list >>"$R/list_floor"; done

	log "stats"
	for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --store "$W/store" stats warm_digest-1 >>"$R/stats_empty"; done
	as_user "$MKB" fill -dir "$W/store/images/warm_digest-1/diff/bench" -bytes $((1 << 30)) -files 1024
	for i in $(seq "$WARM_REPS"); do ms as_user "$TAPROOT" --store "$W/store" stats warm_digest-1 >>"$R/stats_1g"; done

	log "deletes"
	DEL_REPS=$(( REPS < 5 ? 5 : REPS ))
	for i in $(seq "$DEL_REPS"); do
		as_user "$MKB" fill -dir "$W/store/images/warm_oci-$i/diff/bench" -bytes $((1 << 30)) -files 1024
		sync -f "$W/store/images/warm_oci-$i/diff" 2>/dev/null || true
		ms as_user "$TAPROOT" --store "$W/store" delete "warm_oci-$i" >>"$R/delete_1g"
	done
	sleep 2 # let the background reclaim finish
fi

# --- 20 concurrent cold creates of one image new to the store vs one ------------------
# debian-gz under two more repo names, so that the registry's access log
# tells this section's blob GETs apart.
if has_part conc; then
	log "20 concurrent cold creates (load $(loadnow))"
	loadnow >>"$RUN/loads"
	d=$C/conc
	userdir "$d"
	timed "$R/conc_one" "$TAPROOT" --store "$d/one" create --insecure-registry "$REG" "docker://$REG/bench/conc-one:latest" c1
	timed "$R/conc_twenty" bash -c '
		for i in $(seq 20); do "$1" --store "$2" create --insecure-registry "$3" "docker://$3/bench/conc-twenty:latest" "c$i" >/dev/null & done
		fail=0; for j in $(jobs -p); do wait "$j" || fail=1; done; exit $fail' _ "$TAPROOT" "$d/twenty" "$REG"
	nlayers=0 gets=0
	for b in $(layer_blobs debian-gz); do
		h=$(basename "$b")
		nlayers=$((nlayers + 1))
		gets=$((gets + $(grep -c "\"GET /v2/bench/conc-twenty/blobs/sha256:$h HTTP/[0-9.]*\" 20[06] " "$RUN/registry/log" || true)))
	done
	awk -v g="$gets" -v n="$nlayers" 'BEGIN{printf "%.2f\n", g/n}' >"$R/conc_gets_per_blob"
fi

# --- syscalls per entry: strace -c -f of a cold create of small60k -------------------
# Counted over the whole create (parent and worker), divided by the layer's
# tar entries; before = the tree at $BEFORE, after = this tree.
if has_part strace; then
	read -r _ sdir stag _ <<<"${IMG[small60k]}"
	entries=$(for b in $(layer_blobs small60k); do gzip -dc "$b" | tar -t | wc -l; done | awk '{s+=$1} END{print s}')
	echo "$entries" >"$R/strace_entries"
	for which in after before; do
		bin=$TAPROOT
		if [ "$which" = before ]; then bin=$OLD_TAPROOT; [ -n "$bin" ] || continue; fi
		log "strace -c -f of a cold small60k create ($which, load $(loadnow))"
		d=$C/strace-$which
		userdir "$d"
		strace -c -f -o "$RUN/strace.$which" "${USERCMD[@]}" "$bin" --store "$d/store" create --insecure-registry "$REG" "docker://$REG/bench/small60k:latest" c1 >/dev/null 2>"$RUN/stderr" ||
			{ cat "$RUN/stderr" >&2; die "strace of the $which create failed"; }
		# "% time seconds usecs/call calls [errors] syscall": calls per entry.
		awk -v e="$entries" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {printf "%s %.3f\n", $NF, $4/e}' "$RUN/strace.$which" |
			sort -k2 -gr >"$R/strace_$which"
		awk '{s+=$2} END{printf "%.2f\n", s}' "$R/strace_$which" >"$R/strace_${which}_total"
		# Without the Go runtime's own calls (scheduler, GC, signals):
		# what the unpack asks of the kernel.
		awk '$1 !~ /^(futex|nanosleep|sched_yield|epoll_pwait|epoll_ctl|epoll_create1|tgkill|getpid|gettid|rt_sigreturn|rt_sigaction|rt_sigprocmask|sigaltstack|mmap|munmap|madvise|clone|clone3|mprotect|brk|arch_prctl|set_tid_address|set_robust_list|rseq|prlimit64|sched_getaffinity|getrlimit|uname|wait4|waitid|pidfd_open|pidfd_send_signal|eventfd2)$/ {s+=$2} END{printf "%.2f\n", s}' \
			"$R/strace_$which" >"$R/strace_${which}_fs"
	done
fi

# --- scale: 10 / 100 / 1,000 images (in-process store costs) ----------------------------
if has_part scale; then
	log "scale curve (gc BenchmarkScale, load $(loadnow))"
	(cd "$REPO_ROOT" && go test -count=1 -run '^$' -bench '^BenchmarkScale$' -benchtime=1x -timeout 20m ./gc/) >"$RUN/scale.out" 2>&1 ||
		{ cat "$RUN/scale.out" >&2; die "BenchmarkScale failed"; }
	# "BenchmarkScale/images=N-2  1  V unit  V unit ..."
	awk '/^BenchmarkScale\/images=/ {
		split($1, a, "[=-]"); n = a[2]
		for (i = 3; i < NF; i += 2) { u = $(i+1); sub(/^ms\//, "", u); if (u != "ns/op") print n, u, $i }
	}' "$RUN/scale.out" >"$R/scale"
fi

# --- report ---------------------------------------------------------------------------
col() { if [ -s "$2" ]; then awk -v c="$1" '{print $c}' "$2" | median; else echo nan; fi; }
rss() { if [ -s "$1" ]; then maxcol 2 <"$1"; else echo nan; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f\n", a/b }'; }
scale() { awk -v n="$1" -v u="$2" '$1 == n && $2 == u {print $3; f=1} END{if (!f) print "nan"}' "$R/scale" 2>/dev/null || echo nan; }
{
	for n in $ONLY; do
		has_part cold || break
		t=$(col 1 "$R/$n.taproot"); p=$(col 1 "$R/$n.podman"); u=$(col 1 "$R/$n.umoci"); tf=$(col 1 "$R/$n.tar")
		tc=$(col 3 "$R/$n.taproot"); pc=$(col 3 "$R/$n.podman"); tfc=$(col 3 "$R/$n.tar")
		bench "cold_${n}_taproot" "$t" s
		bench "cold_${n}_taproot_cpu" "$tc" s
		bench "cold_${n}_taproot_user" "$(col 4 "$R/$n.taproot")" s
		bench "cold_${n}_taproot_sys" "$(col 5 "$R/$n.taproot")" s
		bench "cold_${n}_taproot_peak_rss" "$(rss "$R/$n.taproot")" KB
		if [ -s "$R/$n.taproot_base" ]; then
			bench "cold_${n}_taproot_base" "$(col 1 "$R/$n.taproot_base")" s
			bench "cold_${n}_taproot_base_cpu" "$(col 3 "$R/$n.taproot_base")" s
			bench "cold_${n}_taproot_base_peak_rss" "$(rss "$R/$n.taproot_base")" KB
			bench "cold_${n}_taproot_vs_base" "$(ratio "$t" "$(col 1 "$R/$n.taproot_base")")" x
			bench "cold_${n}_taproot_vs_base_cpu" "$(ratio "$tc" "$(col 3 "$R/$n.taproot_base")")" x
		fi
		if [ -s "$R/$n.taproot_nosync" ]; then
			ns=$(col 1 "$R/$n.taproot_nosync")
			bench "cold_${n}_taproot_nosync" "$ns" s
			bench "cold_${n}_taproot_nosync_cpu" "$(col 3 "$R/$n.taproot_nosync")" s
			bench "cold_${n}_taproot_nosync_peak_rss" "$(rss "$R/$n.taproot_nosync")" KB
			[ -s "$R/$n.tar" ] && bench "cold_${n}_taproot_nosync_vs_tar_floor" "$(ratio "$ns" "$(col 1 "$R/$n.tar")")" x
			[ -s "$R/$n.podman" ] && bench "cold_${n}_taproot_nosync_vs_podman" "$(ratio "$ns" "$(col 1 "$R/$n.podman")")" x
		fi
		bench "cold_${n}_podman" "$p" s
		bench "cold_${n}_podman_cpu" "$pc" s
		bench "cold_${n}_podman_user" "$(col 4 "$R/$n.podman")" s
		bench "cold_${n}_podman_sys" "$(col 5 "$R/$n.podman")" s
		bench "cold_${n}_podman_peak_rss" "$(rss "$R/$n.podman")" KB
		bench "cold_${n}_taproot_vs_podman" "$(ratio "$t" "$p")" x
		bench "cold_${n}_taproot_vs_podman_cpu" "$(ratio "$tc" "$pc")" x
		if [ -s "$R/$n.umoci" ]; then
			bench "cold_${n}_skopeo_umoci" "$u" s
			bench "cold_${n}_taproot_vs_skopeo_umoci" "$(ratio "$t" "$u")" x
		fi
		if [ -s "$R/$n.tar" ]; then
			bench "tar_floor_${n}" "$tf" s
			bench "tar_floor_${n}_cpu" "$tfc" s
			bench "tar_floor_${n}_user" "$(col 4 "$R/$n.tar")" s
			bench "tar_floor_${n}_sys" "$(col 5 "$R/$n.tar")" s
			bench "cold_${n}_taproot_vs_tar_floor" "$(ratio "$t" "$tf")" x
			bench "cold_${n}_taproot_vs_tar_floor_cpu" "$(ratio "$tc" "$tfc")" x
		fi
		if [ -s "$R/$n.decomp-parallel" ]; then
			dp=$(col 1 "$R/$n.decomp-parallel"); ds=$(col 1 "$R/$n.decomp-serial")
			bench "decompress_${n}_parallel" "$dp" s
			bench "decompress_${n}_serial" "$ds" s
			bench "cold_${n}_taproot_vs_parallel_decompress" "$(ratio "$t" "$dp")" x
		fi
	done
	if has_part warm; then
		for c in "${WARMCASES[@]}" exec_floor list_floor stats_empty stats_1g delete_1g; do
			bench "$c" "$(col 1 "$R/$c")" ms
		done
	fi
	if has_part conc; then
		c1=$(col 1 "$R/conc_one"); c20=$(col 1 "$R/conc_twenty")
		bench conc_one_create "$c1" s
		bench conc_twenty_creates "$c20" s
		bench conc_twenty_vs_one "$(ratio "$c20" "$c1")" x
		bench conc_twenty_cpu_vs_one "$(ratio "$(col 3 "$R/conc_twenty")" "$(col 3 "$R/conc_one")")" x
		bench conc_twenty_gets_per_blob "$(cat "$R/conc_gets_per_blob")" calls
		bench conc_twenty_peak_rss "$(rss "$R/conc_twenty")" KB
	fi
	if has_part strace; then
		bench strace_small60k_entries "$(cat "$R/strace_entries")" entries
		for which in before after; do
			[ -s "$R/strace_$which" ] || continue
			bench "syscalls_per_entry_$which" "$(cat "$R/strace_${which}_total")" calls
			bench "syscalls_per_entry_${which}_without_go_runtime" "$(cat "$R/strace_${which}_fs")" calls
			head -8 "$R/strace_$which" | while read -r sc v; do bench "syscalls_per_entry_${which}_$sc" "$v" calls; done
		done
	fi
	if has_part scale; then
		for n in 10 100 1000; do
			for u in warm-create stats delete list clean-nothing clean-per-removed-layer; do
				bench "scale_${n}_${u}" "$(scale "$n" "$u")" ms
			done
		done
		for u in warm-create stats delete list clean-nothing clean-per-removed-layer; do
			bench "scale_1000_vs_10_${u}" "$(ratio "$(scale 1000 "$u")" "$(scale 10 "$u")")" x
		done
	fi
	bench load_1min_min "$(sort -g "$RUN/loads" | head -1)" load
	bench load_1min_max "$(sort -g "$RUN/loads" | tail -1)" load
} >/dev/null
val() { awk -v k="$1" '{split($2, n, "="); split($3, v, "="); if (n[2] == k) x = v[2]} END{print (x == "" ? "nan" : x)}' "$RUN/bench"; }

echo
if has_part cold; then
	echo "cold create, medians of $REPS (wall s; cpu = user+sys s of the whole process tree; ratios: taproot over the other)"
	printf '%-11s %8s %6s %6s %7s %6s | %8s %6s %6s %6s | %8s %6s %6s %6s %6s | %8s %6s | %8s %7s\n' \
		image taproot cpu rss_MB nosync cpu podman cpu x_wall x_cpu tar_flr cpu x_wall x_cpu xnosyn dec_par x_wall dec_ser rss_pod
	for n in $ONLY; do
		printf '%-11s %8s %6s %6s %7s %6s | %8s %6s %6s %6s | %8s %6s %6s %6s %6s | %8s %6s | %8s %7s\n' "$n" \
			"$(val "cold_${n}_taproot")" "$(val "cold_${n}_taproot_cpu")" "$(awk -v k="$(val "cold_${n}_taproot_peak_rss")" 'BEGIN{printf "%.0f", k/1024}')" \
			"$(val "cold_${n}_taproot_nosync")" "$(val "cold_${n}_taproot_nosync_cpu")" \
			"$(val "cold_${n}_podman")" "$(val "cold_${n}_podman_cpu")" "$(val "cold_${n}_taproot_vs_podman")" "$(val "cold_${n}_taproot_vs_podman_cpu")" \
			"$(val "tar_floor_${n}")" "$(val "tar_floor_${n}_cpu")" "$(val "cold_${n}_taproot_vs_tar_floor")" "$(val "cold_${n}_taproot_vs_tar_floor_cpu")" "$(val "cold_${n}_taproot_nosync_vs_tar_floor")" \
			"$(val "decompress_${n}_parallel")" "$(val "cold_${n}_taproot_vs_parallel_decompress")" "$(val "decompress_${n}_serial")" \
			"$(awk -v k="$(val "cold_${n}_podman_peak_rss")" 'BEGIN{printf "%.0f", k/1024}')"
	done
	if [ -n "$BASE" ]; then
		echo "taproot at $BASE (before) vs this tree, same run: wall s, cpu s, ratios"
		for n in $ONLY; do
			printf '  %-11s before %8s cpu %6s rss %6s KB | now %8s cpu %6s | x_wall %5s x_cpu %5s\n' "$n" \
				"$(val "cold_${n}_taproot_base")" "$(val "cold_${n}_taproot_base_cpu")" "$(val "cold_${n}_taproot_base_peak_rss")" \
				"$(val "cold_${n}_taproot")" "$(val "cold_${n}_taproot_cpu")" "$(val "cold_${n}_taproot_vs_base")" "$(val "cold_${n}_taproot_vs_base_cpu")"
		done
	fi
	echo "  (x_*: taproot over the column before; xnosyn: taproot with sync = false over the tar floor;"
	echo "   big1 is one layer: its dec_par is one decompression stream; rss in MB, the largest process)"
	echo
fi
if has_part strace; then
	echo "syscalls per entry, cold create of small60k ($(cat "$R/strace_entries") entries; strace -c -f of the whole create)"
	for which in before after; do
		[ -s "$R/strace_$which" ] || continue
		printf '  %-6s %6s total, %5s without the Go runtime:' "$which" "$(cat "$R/strace_${which}_total")" "$(cat "$R/strace_${which}_fs")"
		head -11 "$R/strace_$which" | awk '{printf " %s %s", $1, $2}'
		echo
	done
	echo
fi
if has_part scale; then
	echo "scale (in-process store costs, medians; ms)"
	printf '  %-26s %8s %8s %8s %10s\n' what 10 100 1000 1000/10
	for u in warm-create stats delete list clean-nothing clean-per-removed-layer; do
		printf '  %-26s %8s %8s %8s %10s\n' "$u" "$(scale 10 "$u")" "$(scale 100 "$u")" "$(scale 1000 "$u")" "$(val "scale_1000_vs_10_$u")"
	done
	echo
fi
echo "goals (issue 18):"
awk '
	{ split($2, n, "="); split($3, v, "="); val[n[2]] = v[2] }
	function row(what, key, op, target,   got, ok) {
		got = val[key]
		if (got == "") got = "nan"
		ok = (got == "nan") ? "n/a" : ((op == "<=" && got + 0 <= target) ? "met" : "MISSED")
		printf "  %-58s %10s  %s %-7s %s\n", what, got, op, target, ok
	}
	END {
		row("cold debian-gz / podman pull", "cold_debian-gz_taproot_vs_podman", "<=", 0.4)
		row("cold debian-gz / parallel decompression", "cold_debian-gz_taproot_vs_parallel_decompress", "<=", 1.3)
		row("cold debian-gz / GNU tar floor", "cold_debian-gz_taproot_vs_tar_floor", "<=", 1.2)
		row("cold debian-gz, sync = false / GNU tar floor", "cold_debian-gz_taproot_nosync_vs_tar_floor", "<=", 1.2)
		row("cold debian-zst / podman pull", "cold_debian-zst_taproot_vs_podman", "<=", 0.4)
		row("cold debian-zst / GNU tar floor", "cold_debian-zst_taproot_vs_tar_floor", "<=", 1.2)
		row("cold small60k / podman pull", "cold_small60k_taproot_vs_podman", "<=", 0.5)
		row("cold small60k / GNU tar floor", "cold_small60k_taproot_vs_tar_floor", "<=", 1.2)
		row("cold small60k, sync = false / GNU tar floor", "cold_small60k_taproot_nosync_vs_tar_floor", "<=", 1.2)
		row("cold big1 (1 layer) / one decompression stream", "cold_big1_taproot_vs_parallel_decompress", "<=", 1.2)
		row("cold big1 / GNU tar floor", "cold_big1_taproot_vs_tar_floor", "<=", 1.2)
		row("cold big1, sync = false / GNU tar floor", "cold_big1_taproot_nosync_vs_tar_floor", "<=", 1.2)
		row("warm create by digest (ms, process start included)", "warm_digest", "<=", 10)
		row("warm create by tag (ms)", "warm_tag", "<=", 15)
		row("  floor: taproot list of the same store (ms)", "list_floor", "<=", 10)
		row("stats, empty upper (ms)", "stats_empty", "<=", 5)
		row("delete, 1 GiB upper (ms)", "delete_1g", "<=", 20)
		row("20 concurrent cold creates / one", "conc_twenty_vs_one", "<=", 1.3)
		row("20 concurrent: registry GETs per layer blob", "conc_twenty_gets_per_blob", "<=", 1)
		row("scale 1000/10: warm create (in-process)", "scale_1000_vs_10_warm-create", "<=", 1.2)
		row("scale 1000/10: stats", "scale_1000_vs_10_stats", "<=", 1.2)
		row("scale 1000/10: delete", "scale_1000_vs_10_delete", "<=", 1.2)
		row("scale 1000: list (ms, in-process)", "scale_1000_list", "<=", 100)
		row("scale 1000: clean with nothing to remove (ms)", "scale_1000_clean-nothing", "<=", 1000)
		row("scale 1000/10: clean per removed layer", "scale_1000_vs_10_clean-per-removed-layer", "<=", 1.5)
		for (k in val) if (k ~ /^cold_.*_taproot_peak_rss$/) { w = k; sub(/^cold_/, "", w); sub(/_taproot_peak_rss$/, "", w); row("peak RSS of a cold " w " create (KB)", k, "<=", 102400) }
		row("peak RSS of 20 concurrent creates, largest process (KB)", "conc_twenty_peak_rss", "<=", 102400)
	}' "$RUN/bench"
echo "  load (1 min) during the run: $(val load_1min_min)–$(val load_1min_max)"
echo
cat "$RUN/bench"
