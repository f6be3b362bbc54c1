package uml

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The guest script runs every check in one boot and prints one line per
// step: "RESULT <name> rc=<exit status> out=<output, newlines as |>". The
// test then asserts on each line.
const quotaScript = `
Q=$UML_TMP/taproot-quota
cp "$UML_WORK/bin/taproot-quota" $Q && chown 0:0 $Q && chmod 4755 $Q
M=$UML_MNT
M2=$UML_MNT2
A=1001
B=1002
as() { u=$1; shift; setpriv --reuid=$u --regid=$u --clear-groups "$@"; }
` + resFunc + `
# Stores a (uid A, on the first XFS) and b (uid B, on the second: one
# owner per filesystem) are listed; c (uid A) is not.
chmod 0755 $M $M2
for d in i1 i2 i4 i5 i7; do mkdir -p $M/a/images/$d/diff $M/a/images/$d/work; done
mkdir -p $M/a/images/i3 $M/a/images/i6 $M/a/images/foreign $M/a/images/wide $M/a/meta
mkdir -p $M2/b/images/b1/diff $M2/b/images/b1/work $M/c/images/c1 $UML_TMP/x/images/y
chown -R $A:$A $M/a $M/c $UML_TMP/x
chown -R $B:$B $M2/b $M/a/images/foreign
chmod 0777 $M/a/images/wide
ln -s /etc $M/a/images/evil
ln -s $M2/b/images/b1 $M/a/images/evil2
ln -s $M2/b/images/b1/diff $M/a/images/i6/diff
chown -h $A:$A $M/a/images/evil $M/a/images/evil2 $M/a/images/i6/diff
printf '# taproot stores\n%s\n%s\n' $M/a $M2/b >/etc/taproot/stores
chmod 0644 /etc/taproot/stores
printf '%s\n' $M/c >$UML_TMP/evil-list
chown $A $UML_TMP/evil-list

res setuid_bit stat -c %a:%U $Q
res check_store as $A $Q check-store $M/a
res check_store_other as $A $Q check-store $M2/b

# A 10 MiB limit, filled past it.
res i1_ino stat -c %i $M/a/images/i1
res set_limit as $A $Q set-limit $M/a/images/i1 10485760 5120
res i1_proj xfs_io -c lsproj -c lsattr $M/a/images/i1/diff
res i1_work_proj xfs_io -c lsproj $M/a/images/i1/work
res stats_empty as $A $Q stats $M/a/images/i1
res dd_limited as $A dd if=/dev/zero of=$M/a/images/i1/diff/big bs=1M count=20
res size_limited stat -c %s $M/a/images/i1/diff/big
res stats_full as $A $Q stats $M/a/images/i1
res stats_fallback env TAPROOT_QUOTA_NO_QUOTACTL_FD=1 $Q stats $M/a/images/i1
res dd_root_limited dd if=/dev/zero of=$M/a/images/i1/diff/rootbig bs=1M count=1

# The same write without a limit.
res dd_unlimited as $A dd if=/dev/zero of=$M/a/images/i2/diff/big bs=1M count=20
res size_unlimited stat -c %s $M/a/images/i2/diff/big
res stats_unlimited as $A $Q stats $M/a/images/i2

# An inode limit of 100: file creation stops there, though the bytes and
# the filesystem's inodes are far from full.
res i7_ino stat -c %i $M/a/images/i7
res i7_set as $A $Q set-limit $M/a/images/i7 10485760 100
res i7_fill as $A sh -c "i=0; while touch $M/a/images/i7/diff/f\$i 2>/dev/null; do i=\$((i+1)); [ \$i -lt 100000 ] || break; done; echo \$i; touch $M/a/images/i7/diff/last"
res i7_mkdir as $A mkdir $M/a/images/i7/diff/d
res i7_stats as $A $Q stats $M/a/images/i7
res i7_ffree stat -f -c %d $M

# B's image on the other filesystem: out of A's reach.
res victim_ino stat -c %i $M2/b/images/b1
res victim_set as $B $Q set-limit $M2/b/images/b1 10485760 5120
# The project ID to steal: A's own i1 (A shares no filesystem with B).
VICTIM=$(stat -c %i $M/a/images/i1)

# Attacks by A.
res atk_outside as $A $Q set-limit $UML_TMP/x/images/y 1048576 512
res atk_symlink_etc as $A $Q set-limit $M/a/images/evil 1048576 512
res atk_symlink_store as $A $Q set-limit $M/a/images/evil2 1048576 512
res atk_symlink_diff as $A $Q set-limit $M/a/images/i6 1048576 512
res atk_dotdot as $A $Q set-limit $M/a/images/../images/i3 1048576 512
res atk_dotdot_escape as $A $Q set-limit $M/a/images/../../b/images/b1 1048576 512
res atk_relative sh -c "cd $M/a && setpriv --reuid=$A --regid=$A --clear-groups $Q set-limit images/i3 1048576 512"
res atk_other_set as $A $Q set-limit $M2/b/images/b1 1048576 512
res atk_other_clear as $A $Q clear $M2/b/images/b1
res atk_other_stats as $A $Q stats $M2/b/images/b1
res atk_unlisted as $A $Q set-limit $M/c/images/c1 1048576 512
res atk_env_list as $A env TAPROOT_QUOTA_STORES_LIST=$UML_TMP/evil-list $Q set-limit $M/c/images/c1 1048576 512
res atk_foreign_image as $A $Q set-limit $M/a/images/foreign 1048576 512
res atk_wide_image as $A $Q set-limit $M/a/images/wide 1048576 512
res size_neg as $A $Q set-limit $M/a/images/i3 -1 512
res size_zero as $A $Q set-limit $M/a/images/i3 0 512
res size_huge as $A $Q set-limit $M/a/images/i3 99999999999999999999999 512
res size_overflow as $A $Q set-limit $M/a/images/i3 18446744073709551616 512
res size_gt_fs as $A $Q set-limit $M/a/images/i3 1099511627776000 512
res size_unit as $A $Q set-limit $M/a/images/i3 10M 512
res size_hex as $A $Q set-limit $M/a/images/i3 0x100000 512
res size_garbage as $A $Q set-limit $M/a/images/i3 'abc;rm -rf /' 512
res size_empty as $A $Q set-limit $M/a/images/i3 '' 512
res size_space as $A $Q set-limit $M/a/images/i3 ' 1048576' 512
res ino_zero as $A $Q set-limit $M/a/images/i3 1048576 0
res ino_neg as $A $Q set-limit $M/a/images/i3 1048576 -5
res ino_unit as $A $Q set-limit $M/a/images/i3 1048576 5k
res ino_gt_fs as $A $Q set-limit $M/a/images/i3 1048576 1099511627776000
res ino_missing as $A $Q set-limit $M/a/images/i3 1048576
# Steal the victim's project ID: the kernel lets an owner set any ID on its
# own dir from the initial user namespace; the helper must not act on it.
res steal_chproj as $A xfs_io -c "chproj $VICTIM" $M/a/images/i3
res steal_lsproj xfs_io -c lsproj $M/a/images/i3
res steal_stats as $A $Q stats $M/a/images/i3
res steal_set as $A $Q set-limit $M/a/images/i3 1048576 512
res steal_after_set xfs_io -c lsproj $M/a/images/i3
res steal_clear as $A $Q clear $M/a/images/i3
res victim_stats as $A $Q stats $M/a/images/i1
res root_stats $Q stats $M2/b/images/b1

# overlayfs copy-up through work/ in the same project (helper) vs. not.
mkdir -p $UML_TMP/lower $UML_TMP/m4 $UML_TMP/m5
echo base >$UML_TMP/lower/f
res i4_ino stat -c %i $M/a/images/i4
res i4_set as $A $Q set-limit $M/a/images/i4 10485760 5120
xfs_io -c "chproj 777" -c "chattr +P" $M/a/images/i5/diff
mount -t overlay -o lowerdir=$UML_TMP/lower,upperdir=$M/a/images/i4/diff,workdir=$M/a/images/i4/work overlay $UML_TMP/m4
mount -t overlay -o lowerdir=$UML_TMP/lower,upperdir=$M/a/images/i5/diff,workdir=$M/a/images/i5/work overlay $UML_TMP/m5
res copyup_same sh -c "echo more >>$UML_TMP/m4/f && cat $UML_TMP/m4/f"
res copyup_split sh -c "echo more >>$UML_TMP/m5/f"
umount $UML_TMP/m4 $UML_TMP/m5

# set-limit/clear cycles on fresh dirs, then delete them.
N=${CYCLES:-50}
as $A sh -c "i=1; while [ \$i -le $N ]; do mkdir -p $M/a/images/cyc\$i/diff $M/a/images/cyc\$i/work; i=\$((i+1)); done"
fails=0
ids=
i=1
while [ $i -le $N ]; do
  d=$M/a/images/cyc$i
  ids="$ids $(stat -c %i $d)"
  as $A $Q set-limit $d 1048576 512 || fails=$((fails+1))
  as $A dd if=/dev/zero of=$d/diff/f bs=64k count=4 2>/dev/null || fails=$((fails+1))
  as $A $Q clear $d || fails=$((fails+1))
  i=$((i+1))
done
res cycles echo "n=$N fails=$fails"
res cycle_ids echo $ids
res cycle_rm as $A sh -c "rm -rf $M/a/images/cyc*"
res report xfs_quota -x -c 'report -p -n -N' $M

# One owner per filesystem: a listed store of B on A's filesystem (a list
# edited by hand) makes the helper refuse both owners, and root.
mkdir -p $M/d/images/d1
chown -R $B:$B $M/d
printf '%s\n' $M/d >>/etc/taproot/stores
res pair_a as $A $Q stats $M/a/images/i1
res pair_b as $B $Q set-limit $M/d/images/d1 1048576 512
res pair_root $Q stats $M/a/images/i1
res pair_check_store as $A $Q check-store $M/a
res pair_other_fs as $B $Q stats $M2/b/images/b1
printf '# taproot stores\n%s\n%s\n' $M/a $M2/b >/etc/taproot/stores
res pair_after as $A $Q stats $M/a/images/i1
`

// buildHelper builds taproot-quota, static, into dir/bin.
func buildHelper(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "taproot-quota"), "github.com/taproot-dev/taproot/cmd/taproot-quota")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build taproot-quota: %v\n%s", err, out)
	}
}

func TestQuotaHelperInUML(t *testing.T) {
	SkipIfUnavailable(t)
	start := time.Now()
	dir := t.TempDir()
	buildHelper(t, dir)
	cycles := "50"
	if testing.Short() {
		cycles = "10"
	}
	r, res := guest(t, quotaScript, Options{WorkDir: dir, SecondDisk: true, Env: map[string]string{"CYCLES": cycles}})
	t.Logf("UML boot %v, guest run %v, test total %v", res.BootTime.Round(time.Millisecond),
		res.Duration.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	num := func(name string) uint64 { return uint64(r.num(name)) } // the helper's numbers are unsigned

	if got := r.ok("setuid_bit"); got != "4755:root" {
		t.Errorf("helper mode %q, want 4755:root", got)
	}
	var cs struct {
		Filesystem string `json:"filesystem"`
		Acct       bool   `json:"project_quota_accounting"`
		Enforced   bool   `json:"project_quota_enforced"`
		Capacity   uint64 `json:"capacity_bytes"`
	}
	if err := json.Unmarshal([]byte(r.ok("check_store")), &cs); err != nil {
		t.Error(err)
	}
	if cs.Filesystem != "xfs" || !cs.Acct || !cs.Enforced || cs.Capacity < 400<<20 {
		t.Errorf("check-store: %+v", cs)
	}
	r.refused("check_store_other", "not by the caller")

	// Limit, project ID and inheritance.
	ino := num("i1_ino")
	r.ok("set_limit")
	if p := r.ok("i1_proj"); !strings.Contains(p, fmt.Sprintf("projid = %d", ino)) || !strings.Contains(p, "P") {
		t.Errorf("diff of i1 has %q, want projid %d and the P (inherit) flag", p, ino)
	}
	if p := r.ok("i1_work_proj"); !strings.Contains(p, fmt.Sprintf("projid = %d", ino)) {
		t.Errorf("work of i1 has %q, want projid %d", p, ino)
	}
	if s := r.helperStats("stats_empty"); s.ProjectID != ino || s.BytesLimit != 10485760 || s.BytesUsed > 64<<10 ||
		s.InodesLimit != 5120 || s.InodesUsed < 3 || s.InodesUsed > 4 {
		t.Errorf("stats before writing: %+v, want project %d, limit 10485760 bytes and 5120 inodes, ~0 bytes and 3 inodes (the dir, diff/, work/) used", s, ino)
	}
	dd := r.step("dd_limited")
	if dd.rc == 0 {
		t.Errorf("20 MiB write under a 10 MiB limit succeeded: %s", dd.out)
	}
	if !strings.Contains(dd.out, "No space left on device") {
		t.Errorf("write past the limit failed with %q, want ENOSPC", dd.out)
	}
	written := num("size_limited")
	if written < 9<<20 || written > 10<<20 {
		t.Errorf("wrote %d bytes under a 10 MiB limit, want about 10 MiB", written)
	}
	full := r.helperStats("stats_full")
	if d := float64(full.BytesUsed) - float64(written); d < -0.05*float64(written) || d > 0.05*float64(written) {
		t.Errorf("stats bytes_used %d, wrote %d: more than 5%% apart", full.BytesUsed, written)
	}
	if fb := r.helperStats("stats_fallback"); fb != full {
		t.Errorf("quotactl(2) fallback reports %+v, quotactl_fd reports %+v", fb, full)
	}
	if s := r.step("dd_root_limited"); s.rc == 0 || !strings.Contains(s.out, "No space left on device") {
		t.Errorf("root wrote past the project limit: exit %d %s", s.rc, s.out)
	}
	r.ok("dd_unlimited")
	if n := num("size_unlimited"); n != 20<<20 {
		t.Errorf("unlimited write gave %d bytes, want %d", n, 20<<20)
	}
	r.refused("stats_unlimited", "no project quota from this helper")

	// Attacks.
	// Inodes.
	i7 := num("i7_ino")
	r.ok("i7_set")
	filled, err := strconv.Atoi(strings.Split(r.step("i7_fill").out, "\n")[0])
	if err != nil {
		t.Errorf("i7_fill: %v", err)
	}
	i7s := r.helperStats("i7_stats")
	if i7s.InodesLimit != 100 || i7s.InodesUsed != 100 || i7s.ProjectID != i7 {
		t.Errorf("after filling i7: %+v, want project %d with 100 of 100 inodes used", i7s, i7)
	}
	// The project starts with 3 (images/i7, diff/, work/).
	if filled != 97 {
		t.Errorf("created %d files under an inode limit of 100 (3 taken), want 97", filled)
	}
	if s := r.step("i7_fill"); s.rc == 0 || !strings.Contains(s.out, "No space left on device") {
		t.Errorf("the file past the inode limit: exit %d %q, want ENOSPC", s.rc, s.out)
	}
	if s := r.step("i7_mkdir"); s.rc == 0 || !strings.Contains(s.out, "No space left on device") {
		t.Errorf("mkdir past the inode limit: exit %d %q, want ENOSPC", s.rc, s.out)
	}
	if free := num("i7_ffree"); free < 10000 {
		t.Errorf("the filesystem has only %d free inodes: the limit did not stop i7 well before them", free)
	} else {
		t.Logf("inode limit 100 reached with %d inodes still free on the filesystem", free)
	}

	victim := num("victim_ino")
	r.ok("victim_set")
	r.refused("atk_outside", "not inside a store listed")
	r.refused("atk_symlink_etc", "symbolic link")
	r.refused("atk_symlink_store", "symbolic link")
	r.refused("atk_symlink_diff", "symbolic link")
	r.refused("atk_dotdot", "not clean")
	r.refused("atk_dotdot_escape", "not clean")
	r.refused("atk_relative", "not clean and absolute")
	r.refused("atk_other_set", "not by the caller")
	r.refused("atk_other_clear", "not by the caller")
	r.refused("atk_other_stats", "not by the caller")
	r.refused("atk_unlisted", "not inside a store listed")
	r.refused("atk_env_list", "not inside a store listed")
	r.refused("atk_foreign_image", "not by the store's owner")
	r.refused("atk_wide_image", "writable by group or others")
	for _, n := range []string{"size_neg", "size_zero", "size_huge", "size_overflow", "size_unit", "size_hex", "size_garbage", "size_empty", "size_space"} {
		r.refused(n, "invalid size")
	}
	r.refused("size_gt_fs", "larger than the filesystem")
	for _, n := range []string{"ino_zero", "ino_neg", "ino_unit"} {
		r.refused(n, "invalid inode count")
	}
	r.refused("ino_gt_fs", "more than the filesystem")
	if s := r.step("ino_missing"); s.rc != 2 {
		t.Errorf("set-limit without an inode count: exit %d, want 2 (usage): %s", s.rc, s.out)
	}
	r.ok("steal_chproj")
	if p := r.ok("steal_lsproj"); !strings.Contains(p, fmt.Sprintf("projid = %d", ino)) {
		t.Errorf("the kernel did not let the owner set a project ID (%q): update doc.go", p)
	}
	r.refused("steal_stats", "no project quota from this helper")
	r.ok("steal_set")
	if p := r.ok("steal_after_set"); strings.Contains(p, fmt.Sprintf("projid = %d", ino)) {
		t.Errorf("set-limit kept the stolen project ID: %q", p)
	}
	r.ok("steal_clear")
	if s := r.helperStats("victim_stats"); s.ProjectID != ino || s.BytesLimit != 10485760 || s.InodesLimit != 5120 {
		t.Errorf("the stolen project's quota changed: %+v, want project %d limits 10485760 bytes, 5120 inodes", s, ino)
	}
	if s := r.helperStats("root_stats"); s.ProjectID != victim {
		t.Errorf("root's stats of a listed store: %+v", s)
	}

	// overlayfs copy-up needs work/ in the upper dir's project.
	i4 := num("i4_ino")
	r.ok("i4_set")
	if got := r.ok("copyup_same"); got != "base\nmore" {
		t.Errorf("copy-up with work/ in the project gave %q", got)
	}
	if s := r.step("copyup_split"); s.rc == 0 {
		t.Errorf("copy-up with work/ outside the project succeeded; the EXDEV note in doc.go is wrong")
	} else {
		t.Logf("copy-up with work/ outside the upper dir's project fails: %s", strings.TrimSpace(s.out))
	}

	// Cycles leave nothing behind.
	if c := r.ok("cycles"); c != "n="+cycles+" fails=0" {
		t.Errorf("cycles: %s", c)
	}
	r.ok("cycle_rm")
	left := map[uint64]bool{}
	for _, line := range strings.Split(r.ok("report"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(f[0][1:], 10, 64)
		if err != nil {
			t.Errorf("report line %q", line)
			continue
		}
		left[id] = true
	}
	if !left[ino] || !left[i7] {
		t.Errorf("xfs_quota report lacks the live projects %d and %d: %v", ino, i7, left)
	}
	cyc := strings.Fields(r.ok("cycle_ids"))
	if strconv.Itoa(len(cyc)) != cycles {
		t.Errorf("got %d cycle IDs", len(cyc))
	}
	for _, s := range cyc {
		id, _ := strconv.ParseUint(s, 10, 64)
		if left[id] && id != ino && id != i7 {
			t.Errorf("project %d of a cleared, deleted image is still in the quota report", id)
		}
	}
	for id := range left {
		if id != 0 && id != ino && id != i7 && id != i4 && id != 777 {
			t.Errorf("unexpected project %d left in the report", id)
		}
	}
	t.Logf("quota report projects after the cycles: %v", left)

	// One owner per filesystem.
	const shared = "one filesystem holds the quota stores of two owners"
	r.refused("pair_a", shared)
	r.refused("pair_b", shared)
	r.refused("pair_root", shared)
	r.refused("pair_check_store", shared)
	if s := r.step("pair_a"); !strings.Contains(s.out, "--store-size-bytes") {
		t.Errorf("the refusal does not say what to do: %s", s.out)
	}
	r.ok("pair_other_fs")
	r.ok("pair_after")
}

type statsJSON struct {
	ProjectID   uint64 `json:"project_id"`
	BytesUsed   uint64 `json:"bytes_used"`
	BytesLimit  uint64 `json:"bytes_limit"`
	InodesUsed  uint64 `json:"inodes_used"`
	InodesLimit uint64 `json:"inodes_limit"`
}
