package uml

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// Issue 15: nothing acknowledged is lost on a power cut.
//
// A chain of UML boots on one XFS disk image. Each boot but the first
// checks what the previous one's cut left, then does one action and has
// its power cut (every host process of the guest SIGKILLed: the guest's
// page cache and unforced XFS log are lost, what it wrote to the disk is
// kept; the next boot mounts it with XFS log recovery):
//
//   - acked: create an image; once create has exited 0, create it again
//     with sync = false into a store of its own (the control), write a
//     canary file without syncing it, and cut 0.4-2.5 s later. The next
//     boot must find the image intact with no repair (full check: every
//     file of every layer hashes back to its diffID; list shows it). The
//     canary must be lost in some cuts (else nothing was cut), and so must
//     the control's image (else the checks could not see what sync
//     prevents).
//   - random: delete every image, clean, then create/delete/clean in a
//     loop (cold creates: clean removed the layers), cut at a random
//     moment. The next boot runs what the boot unit runs (check --quick
//     --repair), one create, then the full check, which must pass; every
//     image whose create was acknowledged and not deleted is there, none
//     whose delete was acknowledged is.
//
// Each kind on a quiet guest and on one where a neighbour fsyncs a file on
// the same filesystem every 0.2 s (as journald or a database would: each
// fsync forces the XFS log, so renames reach the disk without waiting for
// taproot's own syncs).
//
// The guest reports on its console (fd 3), which the host reads as it is
// written: nothing the guest writes to files survives a cut reliably.
const powerCutScript = `
S=$UML_MNT/store
T=$UML_TMP
B=$T/bin
H=$T/home
mkdir -p $B $H
cp "$UML_WORK/bin/taproot" $B/
chown $U:$G $H
as() { setpriv --reuid=$U --regid=$G --init-groups env HOME=$H XDG_CONFIG_HOME=$H/.config "$@"; }
tp() { as $B/taproot --store $S "$@"; }
say() { echo "@@R $*" >&3; }
res() { name=$1; shift; out=$("$@" 2>&1); rc=$?; say "$name rc=$rc out=$(printf %s "$out" | tr '\n' '|')"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# op NAME ARGS...: one acknowledged store operation, timed.
op() { name=$1; shift; say "start $name"; a=$(ms); tp "$@" >/dev/null 2>$T/err; rc=$?; b=$(ms)
  if [ $rc = 0 ]; then say "done $name ms=$((b-a))"; else say "failed $name rc=$rc $(tr '\n' '|' <$T/err)"; fi; }

if [ ! -d $S ]; then mkdir -m 0700 $S && chown $U:$G $S; fi
printf '[create]\nsync = false\n' >$H/nosync.toml && chown $U:$G $H/nosync.toml
if [ "$NOSYNC" = 1 ]; then
  mkdir -p $H/.config/taproot && printf '[create]\nsync = false\n' >$H/.config/taproot/config.toml && chown -R $U:$G $H/.config
fi
say "boot $BOOT"

case "$VERIFY" in
acked)
  res check tp check
  [ $rc = 0 ] || res repair_after_failure tp check --repair
  ;;
random)
  res repair tp check --quick --repair
  res next as sh -c "$B/taproot --store $S create oci:$IMG $NEXT >/dev/null"
  res check tp check
  ;;
esac
if [ -n "$UNSYNCED" ]; then
  res ucheck as $B/taproot --store $UML_MNT/u-$UNSYNCED check
  res ulist as $B/taproot --store $UML_MNT/u-$UNSYNCED list
fi
if [ -n "$VERIFY" ]; then
  res list tp list
  if [ -n "$CANARY" ]; then res canary cat $UML_MNT/$CANARY; fi
  say "verified"
fi

if [ "$NEIGHBOUR" = 1 ]; then
  ( while :; do date >>$UML_MNT/neighbour; sync $UML_MNT/neighbour; sleep 0.2; done ) &
fi
case "$ACTION" in
acked)
  op "create $ID" create oci:$IMG $ID
  # The control: the same create with sync = false, into a store of its own.
  mkdir -m 0700 $UML_MNT/u-$ID && chown $U:$G $UML_MNT/u-$ID
  as $B/taproot --store $UML_MNT/u-$ID --config $H/nosync.toml create oci:$IMG $ID >/dev/null 2>$T/err && say "unsynced $ID" || say "failed unsynced $ID $(tr '\n' '|' <$T/err)"
  echo "canary $ID" >$UML_MNT/canary-$ID
  say "canary canary-$ID"
  echo @@CUT@@ >&3
  sleep 600
  ;;
random)
  echo @@CUT@@ >&3
  for id in $(tp list | grep -o '"id": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'); do op "delete $id" delete $id; done
  op clean clean
  i=0
  while :; do
    id=r$BOOT-$i
    op "create $id" create oci:$IMG $id
    op "delete $id" delete $id
    op clean clean
    i=$((i+1))
  done
  ;;
esac
`

// cutKind is one cut of the chain.
type cutKind struct {
	random    bool // cut at a random moment of create/delete/clean, else after an acked create
	neighbour bool
}

func (k cutKind) String() string {
	s := "acked"
	if k.random {
		s = "random"
	}
	if k.neighbour {
		return s + "+neighbour"
	}
	return s + "+quiet"
}

var (
	resultLine = regexp.MustCompile(`(?m)^@@R ([a-z_]+) rc=(-?\d+) out=(.*)$`)
	opLine     = regexp.MustCompile(`(?m)^@@R (start|done|failed) (create|delete|clean) ?(\S*)`)
	listID     = regexp.MustCompile(`"id": *"([^"]+)"`)
)

// buildCutImage writes an OCI layout with busybox, a layer of 600 files
// (about 10 MB, so that random cuts land inside unpacking often) and a
// small top layer.
func buildCutImage(t testing.TB, dir string) string {
	t.Helper()
	base, err := imagebuilder.BusyboxLayer("/bin/busybox", imagebuilder.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(15, 15))
	many := []imagebuilder.Entry{imagebuilder.Dir("data")}
	for i := 0; i < 600; i++ {
		b := make([]byte, 1+r.IntN(32<<10))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		many = append(many, imagebuilder.File(fmt.Sprintf("data/f%03d", i), string(b)))
	}
	img := imagebuilder.Image{Layers: []imagebuilder.Layer{
		base,
		{Compression: imagebuilder.Gzip, Entries: many},
		{Compression: imagebuilder.Gzip, Entries: []imagebuilder.Entry{imagebuilder.Dir("etc"), imagebuilder.File("etc/motd", "power cut\n")}},
	}, Config: imagebuilder.Config{Cmd: []string{"/bin/sh"}}}
	out := filepath.Join(dir, "cutimg")
	if _, err := imagebuilder.WriteLayout(out, "t", img); err != nil {
		t.Fatal(err)
	}
	return out + ":t"
}

// TestPowerCut runs the chain: TAPROOT_UML_CUTS cuts (default 4, one of
// each kind; make soak runs many), cycling through the kinds.
func TestPowerCut(t *testing.T) {
	SkipIfUnavailable(t)
	start := time.Now()
	dir := t.TempDir()
	uid, gid := testUser(t)
	buildTaproot(t, dir)
	ref := buildCutImage(t, dir)
	cuts := 4
	// TAPROOT_UML_CUT_NOSYNC=1 runs the chain with sync = false, as a
	// control: it should fail (acknowledged images lost or damaged), which
	// shows the harness can see what durability prevents.
	nosync := os.Getenv("TAPROOT_UML_CUT_NOSYNC") == "1"
	if v := os.Getenv("TAPROOT_UML_CUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TAPROOT_UML_CUTS=%q: want a positive number", v)
		}
		cuts = n
	}
	kinds := []cutKind{{false, false}, {false, true}, {true, false}, {true, true}}
	disk := filepath.Join(dir, "xfs.img")

	present := map[string]bool{} // acked creates not deleted since
	gone := map[string]bool{}    // acked deletes
	var (
		prev          *cutKind
		canary        string
		unsynced      string // the id of the control image to verify
		uLost, uKept  int
		next          string
		tried, passed int
		lost, kept    int
		byKind        = map[string][2]int{} // kind -> tried, passed
		opMS          = map[string][]float64{}
	)
	for boot := 0; boot <= cuts; boot++ {
		env := map[string]string{"U": uid, "G": gid, "IMG": ref, "BOOT": strconv.Itoa(boot)}
		if nosync {
			env["NOSYNC"] = "1"
		}
		var kind *cutKind
		if boot < cuts {
			k := kinds[boot%len(kinds)]
			kind = &k
			env["ACTION"] = "acked"
			if k.random {
				env["ACTION"] = "random"
			}
			if k.neighbour {
				env["NEIGHBOUR"] = "1"
			}
			env["ID"] = fmt.Sprintf("a%d", boot)
		}
		if prev != nil {
			env["VERIFY"] = "acked"
			if prev.random {
				env["VERIFY"] = "random"
				next = fmt.Sprintf("n%d", boot)
				env["NEXT"] = next
			}
			env["CANARY"] = canary
		}
		env["UNSYNCED"] = unsynced
		canary, unsynced = "", ""
		opts := Options{WorkDir: dir, Disk: disk, DiskBytes: 1 << 30, Timeout: 5 * time.Minute, Env: env}
		var delay time.Duration
		if kind != nil {
			if kind.random {
				delay = time.Duration(mrand.Int64N(int64(20 * time.Second)))
			} else {
				delay = 400*time.Millisecond + time.Duration(mrand.Int64N(int64(2100*time.Millisecond)))
			}
			opts.Cut = &Cut{Marker: "@@CUT@@", Delay: delay}
		}
		res, err := Boot(context.Background(), t, powerCutScript, opts)
		if err != nil {
			t.Fatalf("boot %d: %v", boot, err)
		}
		con := res.Console
		if kind != nil && res.CutAt == 0 {
			t.Fatalf("boot %d (%v): the guest ended (exit %d) before its power was cut; console:\n%s\noutput:\n%s", boot, kind, res.ExitCode, tail(con, 3000), tail(res.Output, 3000))
		}
		results := map[string][2]string{}
		for _, m := range resultLine.FindAllStringSubmatch(con, -1) {
			results[m[1]] = [2]string{m[2], m[3]}
		}
		get := func(name string) (rc, out string) {
			r, ok := results[name]
			if !ok {
				t.Errorf("boot %d: no %s result on the console:\n%s", boot, name, tail(con, 3000))
				return "-1", ""
			}
			return r[0], strings.ReplaceAll(r[1], "|", "\n")
		}

		// What the previous cut left.
		if prev != nil {
			tried++
			ok := true
			fail := func(format string, args ...any) {
				t.Helper()
				ok = false
				t.Errorf("cut %d (%v): "+format, append([]any{boot - 1, *prev}, args...)...)
			}
			if prev.random {
				rc, out := get("repair")
				if rc != "0" {
					fail("check --quick --repair exited %s: %s", rc, out)
				}
				t.Logf("cut %d: check --quick --repair: %s", boot-1, summary(out))
				if rc, out := get("next"); rc != "0" {
					fail("the next create failed (%s): %s", rc, out)
				} else {
					present[next] = true
				}
			}
			if rc, out := get("check"); rc != "0" {
				if prev.random {
					fail("check after one check --quick --repair and a create exited %s: %s", rc, out)
				} else {
					fail("check of a store cut after an acknowledged create exited %s (it must pass without repair): %s", rc, out)
				}
			}
			_, listOut := get("list")
			listed := map[string]bool{}
			for _, m := range listID.FindAllStringSubmatch(listOut, -1) {
				listed[m[1]] = true
			}
			for id := range present {
				if !listed[id] {
					fail("image %s, whose create was acknowledged, is gone (list: %s)", id, listOut)
					delete(present, id)
				}
			}
			for id := range gone {
				if listed[id] {
					fail("image %s, whose delete was acknowledged, is back", id)
				}
			}
			if u := env["UNSYNCED"]; u != "" {
				crc, _ := get("ucheck")
				_, lout := get("ulist")
				if crc == "0" && strings.Contains(lout, `"`+u+`"`) {
					uKept++
				} else {
					uLost++
				}
			}
			if c := env["CANARY"]; c != "" {
				rc, out := get("canary")
				if rc == "0" && strings.TrimSpace(out) == "canary "+strings.TrimPrefix(c, "canary-") {
					kept++
				} else {
					lost++
				}
			}
			k := byKind[prev.String()]
			k[0]++
			if ok {
				passed++
				k[1]++
			}
			byKind[prev.String()] = k
		}

		// What this boot did before its cut.
		if kind != nil {
			inflight := ""
			for _, m := range opLine.FindAllStringSubmatch(con, -1) {
				what, op, id := m[1], m[2], m[3]
				switch what {
				case "start":
					inflight = op + " " + id
				case "done":
					inflight = ""
					if op == "create" {
						present[id] = true
					} else if op == "delete" {
						delete(present, id)
						gone[id] = true
					}
				case "failed":
					inflight = ""
					t.Errorf("boot %d (%v): %s %s failed: %s", boot, kind, op, id, lineOf(con, m[0]))
				}
			}
			for _, m := range regexp.MustCompile(`(?m)^@@R done (create|delete|clean) ?\S* ms=(\d+)`).FindAllStringSubmatch(con, -1) {
				v, _ := strconv.ParseFloat(m[2], 64)
				opMS[m[1]] = append(opMS[m[1]], v)
			}
			// An operation the cut interrupted may or may not have
			// happened: its image is expected neither way.
			if op, id, _ := strings.Cut(inflight, " "); id != "" {
				delete(present, id)
				if op == "delete" {
					delete(gone, id)
				}
			}
			if !kind.random {
				if !strings.Contains(con, "@@R done create "+env["ID"]) {
					t.Fatalf("boot %d: the acked create did not finish before the cut:\n%s", boot, tail(con, 3000))
				}
				canary = "canary-" + env["ID"]
				if !strings.Contains(con, "@@R unsynced "+env["ID"]) {
					t.Errorf("boot %d: the control create with sync = false did not finish: %s", boot, lineOf(con, "@@R failed unsynced"))
				} else {
					unsynced = env["ID"]
				}
			}
			t.Logf("boot %d: %v cut %v after the marker, in flight: %q", boot, kind, delay.Round(time.Millisecond), inflight)
		}
		prev = kind
	}
	t.Logf("power cuts: %d tried, %d survived (%v); canary lost in %d of %d acked cuts; the control image (sync = false) lost or damaged in %d of %d; guest op ms %v; total %v",
		tried, passed, byKind, lost, lost+kept, uLost, uLost+uKept, medians(opMS), time.Since(start).Round(time.Second))
	if lost == 0 {
		t.Errorf("the unsynced canary survived every one of %d acked cuts: the harness does not cut power (the guest's page cache outlived it)", kept)
	}
	if uLost == 0 {
		t.Errorf("the control image, created with sync = false, survived every one of %d acked cuts: the checks do not see what sync prevents", uKept)
	}
}

func lineOf(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j]
	}
	return s
}

func medians(m map[string][]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = median(v)
	}
	return out
}

// summary is the gist of a check report: what it found, not the lists.
func summary(report string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(report), &m); err != nil {
		return fmt.Sprintf("%q", tail(report, 300))
	}
	var parts []string
	for _, key := range []string{"healthy", "repaired", "damaged_layers", "damaged_images", "dangling_links", "missing_links", "debris"} {
		switch v := m[key].(type) {
		case []any:
			if len(v) > 0 {
				parts = append(parts, fmt.Sprintf("%s=%d %v", key, len(v), v))
			}
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", key, v))
		}
	}
	return strings.Join(parts, " ")
}

// durableBenchScript times, as the unprivileged user on XFS: cold creates
// (each into a new store) with sync on and off, alternating; warm creates
// (layers present) likewise; warm creates with sync on and off while a
// neighbour has 256 MB of unflushed data on the same filesystem, against
// one syncfs of that filesystem in the same state (what create would cost
// had it synced the whole filesystem instead of its own files), and cold
// creates in that state (whose layers the worker flushes with syncfs, so
// they pay for the neighbour's data too); and check
// --quick against check on a store of 100 images. "T <name> <ms>" lines.
const durableBenchScript = `
T=$UML_TMP
B=$T/bin
H=$T/home
mkdir -p $B $H/.config/taproot $UML_MNT/u
cp "$UML_WORK/bin/taproot" $B/
printf '[create]\nsync = false\n' >$H/nosync.toml
chown -R $U:$G $H $UML_MNT/u
echo 70 >/proc/sys/vm/dirty_ratio; echo 60 >/proc/sys/vm/dirty_background_ratio; echo 360000 >/proc/sys/vm/dirty_expire_centisecs
cat >$H/bench.sh <<'EOS'
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t() { name=$1; shift; a=$(ms); "$@" >/dev/null || { echo "FAIL $name: $*"; exit 1; }; b=$(ms); echo "T $name $((b-a))"; }
tp() { $B/taproot "$@"; }
W=$UML_MNT/u
i=0
while [ $i -lt $N ]; do
  if [ $((i % 2)) = 0 ]; then
    t cold_on tp --store $W/on$i create oci:$IMG img
    t cold_off tp --store $W/off$i --config $H/nosync.toml create oci:$IMG img
  else
    t cold_off tp --store $W/off$i --config $H/nosync.toml create oci:$IMG img
    t cold_on tp --store $W/on$i create oci:$IMG img
  fi
  i=$((i+1))
done
i=0
while [ $i -lt $N ]; do
  t warm_on tp --store $W/on0 create oci:$IMG w-on$i
  t warm_off tp --store $W/off0 --config $H/nosync.toml create oci:$IMG w-off$i
  i=$((i+1))
done
# dirty: a neighbour's 256 MB written and not yet flushed (root raised
# the dirty limits so that it stays in the page cache, as on a big host).
dirty() { dd if=/dev/zero of=$W/dirty bs=1M count=256 conv=notrunc 2>/dev/null; }
i=0
while [ $i -lt 3 ]; do
  dirty; t warm_on_dirty_neighbour tp --store $W/on0 create oci:$IMG d-on$i
  dirty; t warm_off_dirty_neighbour tp --store $W/off0 --config $H/nosync.toml create oci:$IMG d-off$i
  dirty; t syncfs_dirty_neighbour sync -f $W
  dirty; t cold_on_dirty_neighbour tp --store $W/don$i create oci:$IMG img
  dirty; t cold_off_dirty_neighbour tp --store $W/doff$i --config $H/nosync.toml create oci:$IMG img
  i=$((i+1))
done
rm -f $W/dirty; sync
S=$W/hundred
i=0
while [ $i -lt 100 ]; do tp --store $S create oci:$IMG h$i >/dev/null || { echo "FAIL create h$i"; exit 1; }; i=$((i+1)); done
i=0
while [ $i -lt 3 ]; do t check_quick_100 tp --store $S check --quick; i=$((i+1)); done
t check_full_100 tp --store $S check
t list_100 tp --store $S list
EOS
export B IMG H N
setpriv --reuid=$U --regid=$G --init-groups env HOME=$H XDG_CONFIG_HOME=$H/.config sh $H/bench.sh
`

// BenchmarkDurableCreateInUML measures the cost of durability on XFS (the
// filesystem stores are made for) in one guest boot: see
// durableBenchScript. It prints one BENCH line.
func BenchmarkDurableCreateInUML(b *testing.B) {
	SkipIfUnavailable(b)
	dir := b.TempDir()
	uid, gid := testUser(b)
	buildTaproot(b, dir)
	ref := buildCutImage(b, dir)
	const n = 6
	res, err := Boot(context.Background(), b, durableBenchScript, Options{
		WorkDir: dir, DiskBytes: 3 << 30, Timeout: 20 * time.Minute,
		Env: map[string]string{"U": uid, "G": gid, "IMG": ref, "N": strconv.Itoa(n)},
	})
	if err != nil {
		b.Fatal(err)
	}
	if res.ExitCode != 0 {
		b.Fatalf("guest script exited %d:\n%s", res.ExitCode, tail(res.Output, 4000))
	}
	times := map[string][]float64{}
	for _, line := range strings.Split(res.Output, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "T" {
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				b.Fatalf("bad line %q", line)
			}
			times[f[1]] = append(times[f[1]], v)
		}
	}
	for _, k := range []string{"cold_on", "cold_off", "warm_on", "warm_off", "warm_on_dirty_neighbour", "warm_off_dirty_neighbour", "syncfs_dirty_neighbour", "cold_on_dirty_neighbour", "cold_off_dirty_neighbour", "check_quick_100", "check_full_100"} {
		if len(times[k]) == 0 {
			b.Fatalf("no %s timing:\n%s", k, tail(res.Output, 4000))
		}
	}
	m := medians(times)
	fmt.Printf("BENCH durable-create-uml fs=xfs n=%d cold_create_sync_on_median_ms=%.0f cold_create_sync_off_median_ms=%.0f cold_ratio=%.2f warm_create_sync_on_median_ms=%.0f warm_create_sync_off_median_ms=%.0f warm_ratio=%.2f warm_create_dirty_neighbour_sync_on_ms=%.0f sync_off_ms=%.0f syncfs_dirty_neighbour_ms=%.0f cold_create_dirty_neighbour_sync_on_ms=%.0f sync_off_ms=%.0f check_quick_100_images_ms=%.0f check_full_100_images_ms=%.0f list_100_images_ms=%.0f\n",
		n, m["cold_on"], m["cold_off"], m["cold_on"]/m["cold_off"], m["warm_on"], m["warm_off"], m["warm_on"]/m["warm_off"],
		m["warm_on_dirty_neighbour"], m["warm_off_dirty_neighbour"], m["syncfs_dirty_neighbour"], m["cold_on_dirty_neighbour"], m["cold_off_dirty_neighbour"], m["check_quick_100"], m["check_full_100"], m["list_100"])
	b.ReportMetric(m["cold_on"], "ms/cold-create-sync")
	b.ReportMetric(m["cold_off"], "ms/cold-create-nosync")
	b.ReportMetric(m["check_quick_100"], "ms/check-quick-100-images")
	b.ReportMetric(0, "ns/op")
}
