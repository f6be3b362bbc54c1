package uml

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 13 (inode limits, one owner per filesystem) and issue 12 (quotas
// on a root-owned "maximus" store) through the taproot CLI, in one boot:
// a rootless store of the test user on the first XFS, a root store on the
// second (two owners may not share one).
const limitsScript = `
S=$UML_MNT/store
R=$UML_MNT2/rootstore
` + taprootPrologue + `field() { grep -o "\"$1\": *[0-9]*" "$2" | head -n 1 | grep -o '[0-9]*$'; }
report() { xfs_quota -x -c 'report -p -n -N' "$1"; }

res init $B/taproot --store $S init-store --xfs-mount $UML_MNT --owner $U:$G

# A second owner's store on the same XFS is refused, and leaves nothing.
res init_second $B/taproot --store $UML_MNT/other init-store --xfs-mount $UML_MNT --owner 1234:1234 --uid-mapping 0:1234:1 --gid-mapping 0:1234:1
res init_root_second $B/taproot --store $UML_MNT/rootother init-store --xfs-mount $UML_MNT
res second_left ls -A $UML_MNT
res stores_after_second cat /etc/taproot/stores

# The base image's bytes and inodes, and an image without a limit.
res create_free tp create oci:$IMG imgfree
BASE=$(field base_size $S/images/imgfree/image.json)
BINO=$(field base_inodes $S/images/imgfree/image.json)
res base echo "$BASE $BINO"
res capacity stat -f -c '%b %S' $S
res free_quota as $Q stats $S/images/imgfree

# The derived inode limit: base + 2 MiB. Empty files until the limit, in
# few processes (xargs): each file costs an inode and no block.
res create_i tp create --disk-limit-size-bytes $((BASE + 2097152)) oci:$IMG imgi
res i_quota as $Q stats $S/images/imgi
res i_fill as sh -c "cd $S/images/imgi/diff && seq 1 20000 | sed 's/^/f/' | xargs touch 2>&1 | head -n 1"
res i_files sh -c "ls -A $S/images/imgi/diff | wc -l"
res i_mkdir as mkdir $S/images/imgi/diff/onemore
res i_quota_full as $Q stats $S/images/imgi
res i_stats tp stats imgi
res i_ffree stat -f -c '%d %c' $S

# --disk-limit-inodes, counted like the bytes; with --exclude-image-from-quota
# all of it is the container's; at or below the base it is refused.
res create_n tp create --disk-limit-size-bytes $((BASE + 10485760)) --disk-limit-inodes $((BINO + 300)) oci:$IMG imgn
res n_quota as $Q stats $S/images/imgn
res n_fill as sh -c "cd $S/images/imgn/diff && seq 1 1000 | sed 's/^/f/' | xargs touch 2>&1 | head -n 1"
res n_files sh -c "ls -A $S/images/imgn/diff | wc -l"
res create_x tp create --disk-limit-inodes 500 --exclude-image-from-quota oci:$IMG imgx
res x_quota as $Q stats $S/images/imgx
res create_below tp create --disk-limit-inodes $BINO oci:$IMG imgb
res below_left ls -A $S/images

# A root-owned (maximus) store with quotas on the second XFS: container
# root (host uid 4294967294) writes past its limit.
res root_init $B/taproot --store $R init-store --xfs-mount $UML_MNT2
res root_create $B/taproot --store $R create --disk-limit-size-bytes $((BASE + 10485760)) oci:$IMG r1
res r1_ino stat -c %i $R/images/r1
res r1_diff_owner stat -c %u:%g $R/images/r1/diff
res r1_quota $Q stats $R/images/r1
res r1_dd setpriv --reuid=4294967294 --regid=4294967294 --clear-groups dd if=/dev/zero of=$R/images/r1/diff/big bs=1M count=20
res r1_size stat -c %s $R/images/r1/diff/big
res r1_stats $B/taproot --store $R stats r1
res r1_report report $UML_MNT2
res r1_delete $B/taproot --store $R delete r1
res r1_reclaim sh -c "i=0; while ls $R/tmp | grep -q trash && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i+1)); done; ls -A $R/tmp"
res r1_report_after report $UML_MNT2
`

// TestLimitsInUML: inode limits (derived and --disk-limit-inodes) stop file
// creation with ENOSPC and show in stats; a second owner's init-store on
// one XFS is refused; quotas work on a root (maximus) store.
func TestLimitsInUML(t *testing.T) {
	h := newTaprootHost(t)
	dir, uid, gid, ref := h.dir, h.uid, h.gid, h.ref
	r, res := guest(t, limitsScript, Options{
		WorkDir:    dir,
		SecondDisk: true,
		Timeout:    10 * time.Minute,
		Env:        map[string]string{"U": uid, "G": gid, "IMG": ref},
	})
	const MiB = 1 << 20

	// One owner per filesystem.
	r.ok("init")
	for _, name := range []string{"init_second", "init_root_second"} {
		out := r.fails(name, "one filesystem holds the quota stores of two owners", "--store-size-bytes", "store "+filepath.Join(dir, "mnt", "store")+" of uid "+uid)
		if strings.Count(out, "\n") != 0 {
			t.Errorf("%s: want one line, got %q", name, out)
		}
	}
	if left := r.ok("second_left"); left != "store" {
		t.Errorf("refused init-stores left %q on the filesystem, want only the first store", left)
	}
	if got := r.ok("stores_after_second"); got != filepath.Join(dir, "mnt", "store") {
		t.Errorf("refused init-stores changed /etc/taproot/stores: %q", got)
	}

	// The base.
	r.ok("create_free")
	var base, baseInodes uint64
	if _, err := fmt.Sscan(r.ok("base"), &base, &baseInodes); err != nil {
		t.Fatalf("base size and inodes: %v", err)
	}
	if base < MiB || baseInodes < 10 || baseInodes > 2000 {
		t.Fatalf("base %d bytes, %d inodes: want a busybox image", base, baseInodes)
	}
	var blocks, bsize uint64
	if _, err := fmt.Sscan(r.ok("capacity"), &blocks, &bsize); err != nil {
		t.Fatalf("capacity: %v", err)
	}
	perInode := func(b uint64) uint64 { return (b + 2047) / 2048 }
	if q := r.helperStats("free_quota"); q.InodesLimit != perInode(blocks*bsize) {
		t.Errorf("unlimited image: %+v, want an inode limit of the filesystem's size / 2 KiB = %d", q, perInode(blocks*bsize))
	}

	// The derived limit: max(ceil(L/2048) - base inodes, ceil((L - base)/2048)).
	r.ok("create_i")
	limit := base + 2*MiB
	want := max(perInode(limit)-baseInodes, perInode(2*MiB))
	q := r.helperStats("i_quota")
	if q.InodesLimit != want || q.BytesLimit != 2*MiB {
		t.Errorf("base + 2 MiB: quota %+v, want %d inodes (base %d bytes, %d inodes) and 2 MiB", q, want, base, baseInodes)
	}
	if !strings.Contains(r.step("i_fill").out, "No space left on device") {
		t.Errorf("creating files past the inode limit did not fail with ENOSPC: %q", r.step("i_fill").out)
	}
	if s := r.step("i_mkdir"); s.rc == 0 || !strings.Contains(s.out, "No space left on device") {
		t.Errorf("mkdir past the inode limit: exit %d %q", s.rc, s.out)
	}
	files := uint64(r.num("i_files"))
	full := r.helperStats("i_quota_full")
	// Taken before the container's first file: images/imgi, diff/, work/
	// and image.json.
	if full.InodesUsed != want || files+q.InodesUsed != want {
		t.Errorf("at the inode limit: %d files + %d inodes before them, quota %+v; want %d inodes used", files, q.InodesUsed, full, want)
	}
	if full.BytesUsed > MiB {
		t.Errorf("the inode limit was reached with %d bytes charged: want far below the 2 MiB byte limit", full.BytesUsed)
	}
	var st statsInodes
	r.decode("i_stats", &st)
	if st.DiskUsage.ExclusiveInodes != int64(full.InodesUsed) || st.DiskUsage.TotalInodes != int64(baseInodes+full.InodesUsed) {
		t.Errorf("stats %+v: want %d exclusive inodes and %d in total (base %d)", st.DiskUsage, full.InodesUsed, baseInodes+full.InodesUsed, baseInodes)
	}
	if st.DiskUsage.Exclusive != int64(full.BytesUsed) || st.DiskUsage.Total != int64(base+full.BytesUsed) {
		t.Errorf("stats %+v: bytes do not match the quota %+v and base %d", st.DiskUsage, full, base)
	}
	var ffree, files0 uint64
	if _, err := fmt.Sscan(r.ok("i_ffree"), &ffree, &files0); err != nil {
		t.Errorf("i_ffree: %v", err)
	} else if ffree < 20*want {
		t.Errorf("the filesystem has %d free inodes (of %d) at the image's limit of %d: not well before", ffree, files0, want)
	} else {
		t.Logf("derived inode limit %d reached (%d files, %d bytes charged); the filesystem still has %d of %d inodes free", want, files, full.BytesUsed, ffree, files0)
	}

	// --disk-limit-inodes.
	r.ok("create_n")
	nq := r.helperStats("n_quota")
	if nq.InodesLimit != 300 || nq.BytesLimit != 10*MiB {
		t.Errorf("--disk-limit-inodes base+300: quota %+v, want 300 inodes and 10 MiB", nq)
	}
	if !strings.Contains(r.step("n_fill").out, "No space left on device") {
		t.Errorf("--disk-limit-inodes: creating files past it did not fail with ENOSPC: %q", r.step("n_fill").out)
	}
	if n := uint64(r.num("n_files")); n+nq.InodesUsed != 300 {
		t.Errorf("--disk-limit-inodes: %d files + %d inodes before them, want 300", n, nq.InodesUsed)
	}
	r.ok("create_x")
	if xq := r.helperStats("x_quota"); xq.InodesLimit != 500 {
		t.Errorf("--disk-limit-inodes 500 --exclude-image-from-quota: quota %+v, want 500 inodes", xq)
	}
	r.fails("create_below", "disk limit is smaller than the image's base size", "inode limit")
	if left := r.ok("below_left"); strings.Contains(left, "imgb") {
		t.Errorf("a refused create left its image: %q", left)
	}

	// The root (maximus) store.
	r.ok("root_init")
	r.ok("root_create")
	rino := uint64(r.num("r1_ino"))
	if got := r.ok("r1_diff_owner"); got != "4294967294:4294967294" {
		t.Errorf("root store: diff/ owned by %s, want container root 4294967294:4294967294", got)
	}
	rq := r.helperStats("r1_quota")
	if rq.ProjectID != rino || rq.BytesLimit != 10*MiB || rq.InodesLimit == 0 {
		t.Errorf("root store: quota %+v, want project %d with a 10 MiB limit and an inode limit", rq, rino)
	}
	if s := r.step("r1_dd"); s.rc == 0 || !strings.Contains(s.out, "No space left on device") {
		t.Errorf("container root wrote 20 MiB under a 10 MiB limit: exit %d %q", s.rc, s.out)
	}
	written := r.num("r1_size")
	if written < 9*MiB || written > 10*MiB {
		t.Errorf("container root wrote %d bytes under a 10 MiB limit, want 9-10 MiB", written)
	}
	var rs statsInodes
	r.decode("r1_stats", &rs)
	if d := float64(rs.DiskUsage.Exclusive - written); d < -0.05*float64(written) || d > 0.05*float64(written) {
		t.Errorf("root store stats: %d exclusive bytes, wrote %d: more than 5%% apart", rs.DiskUsage.Exclusive, written)
	}
	if _, ok := quotaReport(t, r.ok("r1_report"))[rino]; !ok {
		t.Errorf("root store: project %d is not in the quota report", rino)
	}
	r.ok("r1_delete")
	if got := r.ok("r1_reclaim"); got != "" {
		t.Errorf("root store: reclaim left %q in tmp/", got)
	}
	for id, v := range quotaReport(t, r.ok("r1_report_after")) {
		if id != 0 {
			t.Errorf("root store: project %d left after delete with %v (used KiB, hard limit KiB)", id, v)
		}
	}
	h.logTimes(t, res)
}

type statsInodes struct {
	DiskUsage struct {
		Total           int64 `json:"total_bytes_used"`
		Exclusive       int64 `json:"exclusive_bytes_used"`
		TotalInodes     int64 `json:"total_inodes_used"`
		ExclusiveInodes int64 `json:"exclusive_inodes_used"`
	} `json:"disk_usage"`
}
