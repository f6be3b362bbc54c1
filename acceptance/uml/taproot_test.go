package uml

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 4 end to end through the taproot CLI, in one UML boot: init-store
// on an XFS mount with pquota, per-image disk limits as the unprivileged
// test user, stats from the project quota, create/delete cycles, capacity,
// delete-store, and a rootless runc container writing past its limit.
//
// The guest prints one "RESULT <name> rc=<status> out=<output, newlines as
// |>" line per step (parseResults); the host asserts on each.
const taprootScript = `
S=$UML_MNT/store
` + taprootPrologue + `report() { xfs_quota -x -c 'report -p -n -N' $UML_MNT; }

res setuid_bit stat -c %a:%U:%G $Q
res tmp_opts awk -v m="$T" '$2==m{print $4}' /proc/mounts

# init-store: root only, listed, idempotent, refuses a mount without pquota.
res init_nonroot tp init-store --xfs-mount $UML_MNT --owner $U:$G
res init $B/taproot --store $S init-store --xfs-mount $UML_MNT --owner $U:$G
res stores cat /etc/taproot/stores
res stores_mode stat -c %a:%U /etc/taproot/stores
res store_owner stat -c %u:%g $S
res init_again $B/taproot --store $S init-store --xfs-mount $UML_MNT --owner $U:$G
res stores_again cat /etc/taproot/stores
res init_tmpfs $B/taproot --store $T/s2 init-store --xfs-mount $T --owner $U:$G
res init_tmpfs_left ls -d $T/s2
res stores_after_tmpfs cat /etc/taproot/stores
res check_store as $Q check-store $S

# An image without a limit, and the base size.
res create_free tp create oci:$IMG imgfree
res list tp list
BASE=$(printf %s "$out" | grep -o '"base_size":[0-9]*' | head -n 1 | cut -d: -f2)
res base echo "$BASE"
res free_ino stat -c %i $S/images/imgfree

# Limits at or below the base size fail and leave nothing.
res create_below tp create --disk-limit-size-bytes $((BASE - 1)) oci:$IMG img0
res create_equal tp create --disk-limit-size-bytes $BASE oci:$IMG img0
res images_after_below ls -A $S/images
res locks_after_below ls -A $S/locks
res tmp_after_below ls -A $S/tmp
res report_after_below report

# base + 10 MiB: the upper dir gets 10 MiB.
res create1 tp create --disk-limit-size-bytes $((BASE + 10485760)) oci:$IMG img1
res img1_ino stat -c %i $S/images/img1
res img1_diff_owner stat -c %u $S/images/img1/diff
res img1_proj xfs_io -c lsproj $S/images/img1/diff
res img1_quota as $Q stats $S/images/img1
res dd1 as dd if=/dev/zero of=$S/images/img1/diff/big bs=1M count=20
res size1 stat -c %s $S/images/img1/diff/big
res stats1 tp stats img1

# --exclude-image-from-quota: the whole limit is the upper dir's.
res create2 tp create --disk-limit-size-bytes 10485760 --exclude-image-from-quota oci:$IMG img2
res img2_ino stat -c %i $S/images/img2
res img2_quota as $Q stats $S/images/img2
res dd2 as dd if=/dev/zero of=$S/images/img2/diff/big bs=1M count=20
res size2 stat -c %s $S/images/img2/diff/big
res stats2 tp stats img2

# No limit: the write succeeds and stats still reads the project. The
# 4 MiB under hidden/ (root's, mode 0700) are unreadable to the user, so a
# tree walk as the user would miss them; the project quota does not.
res free_quota as $Q stats $S/images/imgfree
res dd_free as dd if=/dev/zero of=$S/images/imgfree/diff/big bs=1M count=20
res size_free stat -c %s $S/images/imgfree/diff/big
mkdir -m 0700 $S/images/imgfree/diff/hidden
res dd_hidden dd if=/dev/zero of=$S/images/imgfree/diff/hidden/f bs=1M count=4
res hidden_unreadable as ls $S/images/imgfree/diff/hidden
res stats_free tp stats imgfree
rm -rf $S/images/imgfree/diff/hidden

# A rootless runc container from the fragment writes past its limit.
# runc 1.1 refuses to run without a cgroup mount ("no cgroup mount found in
# mountinfo"); a rootless run does not need to write to it.
if [ -x /usr/sbin/runc ]; then
  mount -t sysfs sysfs /sys
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  res create_run tp create --disk-limit-size-bytes $((BASE + 8388608)) oci:$IMG imgrun
  printf '%s\n' "$out" >$H/frag.json
  res run_ino stat -c %i $S/images/imgrun
  res mkbundle as sh -c "$B/mkbundle -bundle $H/bundle -store $S -- sh -c 'id -u; echo more >>/etc/motd && cat /etc/motd; dd if=/dev/zero of=/big bs=1M count=20; echo dd=\$?; stat -c size=%s /big' <$H/frag.json"
  res runc as runc --root $H/runc-state run --bundle $H/bundle c1
  res run_size stat -c %s $S/images/imgrun/diff/big
  res run_stats tp stats imgrun
else
  echo "RESULT runc_missing rc=0 out=/usr/sbin/runc is not executable"
fi

# create/delete cycles leave no project behind.
cat >$H/cycles.sh <<'EOS'
fails=0
i=1
while [ $i -le $CYCLES ]; do
  $B/taproot --store $S create --disk-limit-size-bytes $((BASE + 1048576)) oci:$IMG cyc$i >/dev/null || fails=$((fails+1))
  dd if=/dev/zero of=$S/images/cyc$i/diff/f bs=64k count=4 2>/dev/null || fails=$((fails+1))
  $B/taproot --store $S delete cyc$i || fails=$((fails+1))
  i=$((i+1))
done
echo "n=$CYCLES fails=$fails"
EOS
export S B BASE
cycles_start=$(date +%s%N)
res cycles as sh $H/cycles.sh
cycles_end=$(date +%s%N)
res cycles_ms echo $(( (cycles_end - cycles_start) / 1000000 ))
# delete leaves the files to a background reclaim: wait for it.
res reclaim sh -c "i=0; while ls $S/tmp | grep -q trash && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i+1)); done; ls -A $S/tmp"
res images_after_cycles ls -A $S/images
res report_after_cycles report

res capacity tp capacity
res statfs stat -f -c '%b %S' $S

# A loop-backed store (--store-size-bytes): made, mounted pquota, listed,
# idempotent, usable, and undone by delete-store.
busybox insmod /usr/lib/uml/modules/$(uname -r)/kernel/drivers/block/loop.ko
L=$T/loopstore
res loop_init $B/taproot --store $L init-store --store-size-bytes 335544320 --owner $U:$G
res loop_mount awk -v m="$L" '$2==m{print $3" "$4}' /proc/mounts
res loop_init_again $B/taproot --store $L init-store --store-size-bytes 335544320 --owner $U:$G
res loop_listed grep -c -x "$L" /etc/taproot/stores
res loop_create as $B/taproot --store $L create --disk-limit-size-bytes $((BASE + 1048576)) oci:$IMG l1
res loop_quota as $Q stats $L/images/l1
res loop_delete_store $B/taproot --store $L delete-store
res loop_left ls -A $T
res loop_mounted awk -v m="$L" '$2==m' /proc/mounts
res loop_listed_after grep -c -x "$L" /etc/taproot/stores

# delete-store undoes init-store.
res delete_store_nonroot tp delete-store
res delete_store $B/taproot --store $S delete-store
res stores_after_delete cat /etc/taproot/stores
res store_left ls -d $S
res mount_kept awk -v m="$UML_MNT" '$2==m{print $3}' /proc/mounts
res report_after_delete_store report
res delete_store_again $B/taproot --store $S delete-store
`

// buildTaproot builds taproot, taproot-quota and mkbundle (static) into
// dir/bin, and the busybox OCI image (mkimage) into dir/img.
func buildTaproot(t testing.TB, dir string) (ref string) {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-o", bin+"/",
		"github.com/taproot-dev/taproot/cmd/taproot",
		"github.com/taproot-dev/taproot/cmd/taproot-quota",
		"github.com/taproot-dev/taproot/acceptance/cmd/mkbundle",
		"github.com/taproot-dev/taproot/acceptance/cmd/mkimage")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("the test image needs a static %s (apt-get install busybox-static): %v", busybox, err)
	}
	if out, err := exec.Command(filepath.Join(bin, "mkimage"), "-busybox", busybox, "-out", filepath.Join(dir, "img"), "-tag", "t").CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, out)
	}
	return filepath.Join(dir, "img") + ":t"
}

// taprootPrologue starts a guest script that runs taproot (store $S) as
// the test user ($U:$G): the binaries buildTaproot made copied into the
// guest's tmpfs, taproot-quota setuid root, and the shell functions as
// (run as the test user), tp (taproot as the test user) and res.
const taprootPrologue = `T=$UML_TMP
B=$T/bin
H=$T/home
Q=$B/taproot-quota
mkdir -p $B $H
cp "$UML_WORK/bin/taproot" "$UML_WORK/bin/taproot-quota" "$UML_WORK/bin/mkbundle" $B/
chown 0:0 $Q && chmod 4755 $Q
chown $U:$G $H
as() { setpriv --reuid=$U --regid=$G --init-groups env HOME=$H XDG_RUNTIME_DIR=$H "$@"; }
tp() { as $B/taproot --store $S "$@"; }
` + resFunc

// taprootHost is the host side of a guest that runs taproot as the test
// user: the binaries and the busybox image built into dir (buildTaproot).
type taprootHost struct {
	dir, uid, gid, ref string
	start              time.Time
	built              time.Duration // the host build
}

// newTaprootHost skips the test without UML, and builds into a new dir.
func newTaprootHost(t *testing.T) *taprootHost {
	t.Helper()
	SkipIfUnavailable(t)
	h := &taprootHost{start: time.Now(), dir: t.TempDir()}
	h.uid, h.gid = testUser(t)
	h.ref = buildTaproot(t, h.dir)
	h.built = time.Since(h.start)
	return h
}

// logTimes logs where the test's time went.
func (h *taprootHost) logTimes(t *testing.T, res *Result) {
	t.Helper()
	t.Logf("host build %v, UML boot %v, guest run %v, test total %v", h.built.Round(time.Millisecond),
		res.BootTime.Round(time.Millisecond), res.Duration.Round(time.Millisecond), time.Since(h.start).Round(time.Millisecond))
}

// testUser is the unprivileged user the guest runs taproot as.
func testUser(t testing.TB) (uid, gid string) {
	t.Helper()
	u, err := user.Lookup("taproot-test")
	if err != nil {
		t.Fatalf("user taproot-test: %v (make test-user creates it, with an /etc/subuid range)", err)
	}
	return u.Uid, u.Gid
}

// quotaReport parses `xfs_quota -x -c 'report -p -n -N'`: project ID →
// blocks used (KiB) and hard limit (KiB).
func quotaReport(t *testing.T, out string) map[uint64][2]uint64 {
	t.Helper()
	m := map[uint64][2]uint64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "#") {
			t.Errorf("quota report line %q", line)
			continue
		}
		id, err1 := strconv.ParseUint(f[0][1:], 10, 64)
		used, err2 := strconv.ParseUint(f[1], 10, 64)
		hard, err3 := strconv.ParseUint(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Errorf("quota report line %q", line)
			continue
		}
		m[id] = [2]uint64{used, hard}
	}
	return m
}

func projectIDs(m map[uint64][2]uint64) []uint64 {
	var ids []uint64
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

type diskUsage struct {
	DiskUsage struct {
		Total     int64 `json:"total_bytes_used"`
		Exclusive int64 `json:"exclusive_bytes_used"`
	} `json:"disk_usage"`
}

func TestTaprootQuotaInUML(t *testing.T) {
	h := newTaprootHost(t)
	dir, uid, gid, ref := h.dir, h.uid, h.gid, h.ref
	// Each cycle starts five Go processes in the guest (create, set-limit,
	// delete, clear, reclaim): 1.4-3.7 s a cycle, depending on the host's load.
	cycles := 50
	if testing.Short() {
		cycles = 10
	}
	if v := os.Getenv("TAPROOT_UML_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TAPROOT_UML_CYCLES=%q: want a positive number", v)
		}
		cycles = n
	}
	r, res := guest(t, taprootScript, Options{
		WorkDir: dir,
		Timeout: 10 * time.Minute,
		Env:     map[string]string{"U": uid, "G": gid, "IMG": ref, "CYCLES": strconv.Itoa(cycles)},
	})
	stats := func(name string) diskUsage {
		t.Helper()
		var d diskUsage
		r.decode(name, &d)
		return d
	}
	within5 := func(what string, got, want int64) {
		t.Helper()
		if d := float64(got - want); d < -0.05*float64(want) || d > 0.05*float64(want) {
			t.Errorf("%s: %d bytes, want %d within 5%%", what, got, want)
		}
	}
	const MiB = 1 << 20
	store := filepath.Join(dir, "mnt", "store")

	// Setup.
	if got := r.ok("setuid_bit"); got != "4755:root:root" {
		t.Errorf("taproot-quota in the guest is %q, want 4755:root:root", got)
	}
	if o := r.ok("tmp_opts"); strings.Contains(o, "nosuid") {
		t.Errorf("the guest tmpfs holding taproot-quota is mounted %s: setuid would do nothing", o)
	}

	// init-store.
	r.fails("init_nonroot", "must run as root")
	var initOut struct {
		Store      string `json:"store"`
		Quota      bool   `json:"quota"`
		Filesystem string `json:"filesystem"`
	}
	r.decode("init", &initOut)
	if initOut.Store != store || !initOut.Quota || initOut.Filesystem != "xfs" {
		t.Errorf("init-store printed %+v, want store %s with quota on xfs", initOut, store)
	}
	if got := r.ok("stores"); got != store {
		t.Errorf("/etc/taproot/stores is %q, want just %q", got, store)
	}
	if got := r.ok("stores_mode"); got != "644:root" {
		t.Errorf("/etc/taproot/stores mode %q, want 644:root", got)
	}
	if got := r.ok("store_owner"); got != uid+":"+gid {
		t.Errorf("store owned by %s, want %s:%s", got, uid, gid)
	}
	if a, b := r.ok("init_again"), r.ok("init"); a != b {
		t.Errorf("init-store again printed %q, first %q", a, b)
	}
	if got := r.ok("stores_again"); got != store {
		t.Errorf("after a second init-store /etc/taproot/stores is %q, want just %q", got, store)
	}
	r.fails("init_tmpfs", "project quotas are off", "tmpfs", "pquota")
	r.fails("init_tmpfs_left")
	if got := r.ok("stores_after_tmpfs"); got != store {
		t.Errorf("a refused init-store changed /etc/taproot/stores: %q", got)
	}
	var cs struct {
		Capacity uint64 `json:"capacity_bytes"`
		Enforced bool   `json:"project_quota_enforced"`
	}
	r.decode("check_store", &cs)
	if !cs.Enforced {
		t.Errorf("check-store: project quota not enforced: %+v", cs)
	}

	// The base size and the unlimited image.
	r.ok("create_free")
	base := r.num("base")
	if base < 1<<20 || base > 4<<20 {
		t.Fatalf("base size %d: want about the size of busybox", base)
	}
	freeIno := uint64(r.num("free_ino"))

	// Limits at or below the base.
	r.fails("create_below", "disk limit is smaller than the image's base size")
	r.fails("create_equal", "disk limit is smaller than the image's base size")
	if got := r.ok("images_after_below"); got != "imgfree" {
		t.Errorf("after the refused creates images/ holds %q, want only imgfree", got)
	}
	if got := r.ok("locks_after_below"); strings.Contains(got, "img0") {
		t.Errorf("a refused create left a lock: %q", got)
	}
	if got := r.ok("tmp_after_below"); got != "" {
		t.Errorf("a refused create left tmp/ debris: %q", got)
	}
	if ids := projectIDs(quotaReport(t, r.ok("report_after_below"))); fmt.Sprint(ids) != fmt.Sprint([]uint64{0, freeIno}) {
		t.Errorf("projects after the refused creates: %v, want [0 %d]", ids, freeIno)
	}

	// base + 10 MiB.
	r.ok("create1")
	ino1 := uint64(r.num("img1_ino"))
	if got := r.ok("img1_diff_owner"); got != uid {
		t.Errorf("diff/ is owned by %s, want container root = the test user %s", got, uid)
	}
	if p := r.ok("img1_proj"); !strings.Contains(p, fmt.Sprintf("projid = %d", ino1)) {
		t.Errorf("diff/ of img1: %q, want projid %d", p, ino1)
	}
	if q := r.helperStats("img1_quota"); q.ProjectID != ino1 || q.BytesLimit != 10*MiB || q.BytesUsed > 64<<10 {
		t.Errorf("img1's quota %+v, want project %d with a limit of exactly 10 MiB (limit - base), ~0 used", q, ino1)
	}
	r.fails("dd1", "No space left on device")
	w1 := r.num("size1")
	if w1 < 9*MiB || w1 > 10*MiB {
		t.Errorf("wrote %d bytes under a 10 MiB upper limit, want 9-10 MiB", w1)
	}
	s1 := stats("stats1")
	within5("img1 exclusive bytes", s1.DiskUsage.Exclusive, w1)
	if s1.DiskUsage.Total != base+s1.DiskUsage.Exclusive {
		t.Errorf("img1 stats %+v: total != base %d + exclusive", s1.DiskUsage, base)
	}

	// --exclude-image-from-quota.
	r.ok("create2")
	ino2 := uint64(r.num("img2_ino"))
	if q := r.helperStats("img2_quota"); q.BytesLimit != 10*MiB {
		t.Errorf("--exclude-image-from-quota: upper limit %d, want the full 10 MiB", q.BytesLimit)
	}
	r.fails("dd2", "No space left on device")
	w2 := r.num("size2")
	if w2 < 10*MiB-base+MiB/2 || w2 > 10*MiB {
		t.Errorf("--exclude-image-from-quota: wrote %d bytes under a 10 MiB limit, want more than 10 MiB - base (%d) and at most 10 MiB", w2, 10*MiB-base)
	}
	s2 := stats("stats2")
	within5("img2 exclusive bytes", s2.DiskUsage.Exclusive, w2)
	if s2.DiskUsage.Total != base+s2.DiskUsage.Exclusive {
		t.Errorf("img2 stats %+v: total != base %d + exclusive", s2.DiskUsage, base)
	}

	// No limit.
	if q := r.helperStats("free_quota"); q.ProjectID != freeIno || q.BytesLimit < 400*MiB {
		t.Errorf("imgfree's quota %+v: want project %d limited to the filesystem's size", q, freeIno)
	}
	r.ok("dd_free")
	if n := r.num("size_free"); n != 20*MiB {
		t.Errorf("unlimited write gave %d bytes, want %d", n, 20*MiB)
	}
	r.ok("dd_hidden")
	r.fails("hidden_unreadable", "Permission denied")
	sf := stats("stats_free")
	within5("imgfree exclusive bytes (20 MiB + 4 MiB the user cannot read)", sf.DiskUsage.Exclusive, 24*MiB)
	if sf.DiskUsage.Total != base+sf.DiskUsage.Exclusive {
		t.Errorf("imgfree stats %+v: total != base %d + exclusive", sf.DiskUsage, base)
	}

	// runc.
	live := map[uint64]string{0: "none", freeIno: "imgfree", ino1: "img1", ino2: "img2"}
	t.Run("runc", func(t *testing.T) {
		if s, missing := r.r["runc_missing"]; missing {
			t.Skipf("no container run: %s", s.out)
		}
		r.ok("create_run")
		live[uint64(r.num("run_ino"))] = "imgrun"
		r.ok("mkbundle")
		s := r.step("runc")
		if s.rc != 0 {
			t.Fatalf("runc run: exit %d:\n%s", s.rc, s.out)
		}
		lines := strings.Split(strings.TrimSpace(s.out), "\n")
		if len(lines) < 4 || lines[0] != "0" {
			t.Fatalf("container output %q: want uid 0 first", s.out)
		}
		if lines[1] != "hello from a taproot rootfs" || lines[2] != "more" {
			t.Errorf("copy-up of /etc/motd in the container gave %q", lines[1:3])
		}
		if !strings.Contains(s.out, "No space left on device") || !strings.Contains(s.out, "\ndd=1\n") {
			t.Errorf("the container's write past its limit did not fail with ENOSPC:\n%s", s.out)
		}
		n := r.num("run_size")
		if !strings.Contains(s.out, fmt.Sprintf("size=%d", n)) {
			t.Errorf("the container saw a size other than the upper dir's %d:\n%s", n, s.out)
		}
		if n < 7*MiB || n > 8*MiB {
			t.Errorf("the container wrote %d bytes under an 8 MiB upper limit", n)
		}
		within5("imgrun exclusive bytes", stats("run_stats").DiskUsage.Exclusive, n)
	})

	// Cycles: every project left is a live image's (a cycle's project
	// left behind, limited or just charged, is not).
	if c := r.ok("cycles"); c != fmt.Sprintf("n=%d fails=0", cycles) {
		t.Errorf("create/delete cycles: %s", c)
	}
	t.Logf("%d create/delete cycles took %s ms in the guest", cycles, r.ok("cycles_ms"))
	if got := r.ok("reclaim"); got != "" {
		t.Errorf("background reclaim left %q in tmp/", got)
	}
	if imgs := r.ok("images_after_cycles"); strings.Contains(imgs, "cyc") {
		t.Errorf("images after the cycles: %q", imgs)
	}
	rep := quotaReport(t, r.ok("report_after_cycles"))
	for id, v := range rep {
		if _, ok := live[id]; !ok {
			t.Errorf("project %d is in the report after the cycles (used KiB, hard limit KiB: %v); live images: %v", id, v, live)
		}
	}
	for id, name := range live {
		if _, ok := rep[id]; !ok && id != 0 {
			t.Errorf("live image %s's project %d is not in the report", name, id)
		}
	}
	t.Logf("projects after the cycles: %v", projectIDs(rep))

	// capacity.
	var capOut struct {
		Capacity *uint64 `json:"capacity"`
	}
	capText := r.ok("capacity")
	r.decode("capacity", &capOut)
	f := strings.Fields(r.ok("statfs"))
	var blocks, bsize uint64
	if len(f) == 2 {
		blocks, _ = strconv.ParseUint(f[0], 10, 64)
		bsize, _ = strconv.ParseUint(f[1], 10, 64)
	}
	if blocks*bsize == 0 {
		t.Errorf("statfs of the store: %q", f)
	} else if capOut.Capacity == nil || *capOut.Capacity != blocks*bsize || *capOut.Capacity != cs.Capacity {
		t.Errorf("capacity printed %q, want {\"capacity\":%d} (statfs), check-store says %d", capText, blocks*bsize, cs.Capacity)
	}

	// The loop-backed store.
	var loopInit struct {
		Store string `json:"store"`
		Quota bool   `json:"quota"`
	}
	r.decode("loop_init", &loopInit)
	loopStore := filepath.Join(dir, "tmp", "loopstore")
	if loopInit.Store != loopStore || !loopInit.Quota {
		t.Errorf("init-store --store-size-bytes printed %+v, want %s with quota", loopInit, loopStore)
	}
	if m := r.ok("loop_mount"); !strings.HasPrefix(m, "xfs ") || !strings.Contains(m, "prjquota") {
		t.Errorf("the loop-backed store is mounted %q, want xfs with prjquota", m)
	}
	if a, b := r.ok("loop_init_again"), r.ok("loop_init"); a != b {
		t.Errorf("init-store --store-size-bytes again printed %q, first %q", a, b)
	}
	if n := r.ok("loop_listed"); n != "1" {
		t.Errorf("the loop-backed store is listed %s times in /etc/taproot/stores, want once", n)
	}
	r.ok("loop_create")
	if q := r.helperStats("loop_quota"); q.BytesLimit != MiB {
		t.Errorf("image on the loop-backed store: quota %+v, want a 1 MiB limit", q)
	}
	r.ok("loop_delete_store")
	if left := r.ok("loop_left"); strings.Contains(left, "loopstore") {
		t.Errorf("delete-store left %q in %s", left, filepath.Dir(loopStore))
	}
	if m := r.ok("loop_mounted"); m != "" {
		t.Errorf("delete-store left the loop-backed store mounted: %q", m)
	}
	if s := r.step("loop_listed_after"); strings.TrimSpace(s.out) != "0" {
		t.Errorf("delete-store left the loop-backed store listed: %q", s.out)
	}

	// delete-store.
	r.fails("delete_store_nonroot", "must run as root")
	r.ok("delete_store")
	if got := r.ok("stores_after_delete"); strings.Contains(got, store) {
		t.Errorf("delete-store left %q in /etc/taproot/stores", got)
	}
	r.fails("store_left", "No such file")
	if got := r.ok("mount_kept"); got != "xfs" {
		t.Errorf("delete-store of an --xfs-mount store unmounted it (%q)", got)
	}
	for id, v := range quotaReport(t, r.ok("report_after_delete_store")) {
		if id != 0 {
			t.Errorf("delete-store left project %d with %v (used KiB, hard limit KiB)", id, v)
		}
	}
	r.ok("delete_store_again")

	h.logTimes(t, res)
}

// statsBenchScript times `taproot stats` of an image with 1 MiB written and
// of one with 1 GiB written (1024 files of 1 MiB, so that a tree walk would
// cost 1024 stats), alternating, as the unprivileged user; and, for scale,
// one `du -s` (a walk) of each. Each timing line is "T <name> <ns>".
const statsBenchScript = `
S=$UML_MNT/store
T=$UML_TMP
B=$T/bin
H=$T/home
mkdir -p $B $H
cp "$UML_WORK/bin/taproot" "$UML_WORK/bin/taproot-quota" $B/
chown 0:0 $B/taproot-quota && chmod 4755 $B/taproot-quota
chown $U:$G $H
$B/taproot --store $S init-store --xfs-mount $UML_MNT --owner $U:$G >/dev/null || exit 1
cat >$H/bench.sh <<'EOS'
tp() { $B/taproot --store $S "$@"; }
tp create oci:$IMG small >/dev/null && tp create oci:$IMG big >/dev/null || exit 1
dd if=/dev/zero of=$S/images/small/diff/f bs=1M count=1 2>/dev/null || exit 1
mkdir $S/images/big/diff/d || exit 1
a=$(date +%s%N)
dd if=/dev/zero bs=1M count=1024 2>/dev/null | (cd $S/images/big/diff/d && split -b 1M -a 4 - f) || exit 1
sync
b=$(date +%s%N)
echo "T write1g $((b-a))"
echo "STATS small $(tp stats small)"
echo "STATS big $(tp stats big)"
i=0
while [ $i -lt $N ]; do
  for img in small big; do
    a=$(date +%s%N); tp stats $img >/dev/null || exit 1; b=$(date +%s%N)
    echo "T $img $((b-a))"
  done
  i=$((i+1))
done
for img in small big; do
  a=$(date +%s%N); du -s $S/images/$img/diff >/dev/null; b=$(date +%s%N)
  echo "T du_$img $((b-a))"
done
echo "FILES big $(ls $S/images/big/diff/d | wc -l)"
EOS
export S B
setpriv --reuid=$U --regid=$G --init-groups env HOME=$H sh $H/bench.sh
`

// BenchmarkStatsInUML checks that stats is O(1) (issue 4): `taproot stats`
// of an image with 1 GiB written (1024 files) takes as long as one with
// 1 MiB, within noise. One UML boot whatever b.N; it prints a BENCH line
// and reports the medians (ns/op is the 1 GiB median).
func BenchmarkStatsInUML(b *testing.B) {
	SkipIfUnavailable(b)
	dir := b.TempDir()
	uid, gid := testUser(b)
	ref := buildTaproot(b, dir)
	n := 21
	res, err := Boot(context.Background(), b, statsBenchScript, Options{
		WorkDir:   dir,
		DiskBytes: 2 << 30,
		Timeout:   10 * time.Minute,
		Env:       map[string]string{"U": uid, "G": gid, "IMG": ref, "N": strconv.Itoa(n)},
	})
	if err != nil {
		b.Fatal(err)
	}
	if res.ExitCode != 0 {
		b.Fatalf("guest script exited %d:\n%s", res.ExitCode, res.Output)
	}
	times := map[string][]float64{}
	var sizes []string
	for _, line := range strings.Split(res.Output, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "T":
			ns, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				b.Fatalf("bad line %q", line)
			}
			times[f[1]] = append(times[f[1]], ns/1e6)
		case len(f) >= 2 && (f[0] == "STATS" || f[0] == "FILES"):
			sizes = append(sizes, line)
		}
	}
	if len(times["small"]) != n || len(times["big"]) != n {
		b.Fatalf("got %d and %d timings, want %d each:\n%s", len(times["small"]), len(times["big"]), n, res.Output)
	}
	var big diskUsage
	for _, s := range sizes {
		if rest, ok := strings.CutPrefix(s, "STATS big "); ok {
			if err := json.Unmarshal([]byte(rest), &big); err != nil {
				b.Fatal(err)
			}
		}
	}
	if big.DiskUsage.Exclusive < 1<<30 {
		b.Fatalf("the big image has %d exclusive bytes, want 1 GiB: %q", big.DiskUsage.Exclusive, sizes)
	}
	small, large := median(times["small"]), median(times["big"])
	fmt.Printf("BENCH uml-stats n=%d stats_1MiB_median_ms=%.1f stats_1GiB_median_ms=%.1f ratio=%.2f du_1MiB_ms=%.1f du_1GiB_ms=%.1f write_1GiB_ms=%.0f boot_ms=%d\n",
		n, small, large, large/small, median(times["du_small"]), median(times["du_big"]), median(times["write1g"]), res.BootTime.Milliseconds())
	b.Logf("%s", strings.Join(sizes, "\n"))
	b.ReportMetric(large*1e6, "ns/op")
	b.ReportMetric(small, "ms/stats-1MiB")
	b.ReportMetric(large, "ms/stats-1GiB")
	// Equal within noise: a walk of 1024 files would not be.
	if large > 1.5*small+20 {
		b.Errorf("stats of 1 GiB (%.1f ms median) is slower than of 1 MiB (%.1f ms): not O(1)?", large, small)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
