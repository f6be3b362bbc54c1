package acceptance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ib "github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

// treeHash hashes names, modes, owners, link targets and contents of a tree.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	sum := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		io.WriteString(sum, rel+"\x00"+info.Mode().String()+"\x00"+info.ModTime().String()+"\x00")
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			io.WriteString(sum, target)
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(sum, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// Writes inside the container land in the image's upper dir and never in a
// layer dir.
func TestWritesLandInUpperDir(t *testing.T) {
	need(t)
	t.Parallel()
	store, b, run := createImage(t, "writes", layer(ib.Dir("etc"), ib.File("etc/conf", "orig\n"), ib.Dir("data"), ib.File("data/del", "x")))
	before := map[string]string{}
	for _, l := range b.Layers {
		before[l.DiffID.Encoded()] = treeHash(t, layerDir(store, l.DiffID))
	}
	got := run("echo new > /newfile; echo more >> /etc/conf; rm /data/del; rm /bin/cat; mkdir -p /made/deep; echo ok")
	if got != "ok\n" {
		t.Fatalf("got %q", got)
	}
	upper := filepath.Join(imageDir(store, "writes"), "diff")
	if s := readFile(t, filepath.Join(upper, "newfile")); s != "new\n" {
		t.Errorf("upper newfile = %q", s)
	}
	if s := readFile(t, filepath.Join(upper, "etc", "conf")); s != "orig\nmore\n" {
		t.Errorf("upper etc/conf = %q", s)
	}
	for _, p := range []string{"data/del", "bin/cat"} {
		fi, err := os.Lstat(filepath.Join(upper, p))
		if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
			t.Errorf("upper %s: want a whiteout char device, got %v %v", p, fi, err)
		}
	}
	if !exists(filepath.Join(upper, "made", "deep")) {
		t.Errorf("upper made/deep missing")
	}
	for _, l := range b.Layers {
		if after := treeHash(t, layerDir(store, l.DiffID)); after != before[l.DiffID.Encoded()] {
			t.Errorf("layer dir %s changed after writes in the container", l.DiffID.Encoded())
		}
	}
	if s := readFile(t, filepath.Join(layerDir(store, b.Layers[1].DiffID), "etc", "conf")); s != "orig\n" {
		t.Errorf("layer etc/conf = %q, want orig", s)
	}
}

type statsJSON struct {
	DiskUsage struct {
		TotalBytesUsed     *int64 `json:"total_bytes_used"`
		ExclusiveBytesUsed *int64 `json:"exclusive_bytes_used"`
	} `json:"disk_usage"`
}

// Two images sharing layers share their dirs, the shared blobs are fetched
// once, and delete removes one image but keeps what the other uses.
func TestSharedLayersAndDelete(t *testing.T) {
	need(t)
	t.Parallel()
	shared := layer(ib.Dir("shared"), ib.File("shared/f", "shared\n"))
	refA, a := pushImage(t, "share-a", busyboxImage(shared, layer(ib.File("only-a", "a\n"))))
	refB, bb := pushImage(t, "share-b", busyboxImage(shared, layer(ib.File("only-b", "b\n"))))
	if a.Layers[1].DiffID != bb.Layers[1].DiffID || a.Layers[0].DiffID != bb.Layers[0].DiffID {
		t.Fatal("the two images do not share their two lower layers")
	}
	store := newStore(t)
	fragA := create(t, store, refA, "a")
	getsBefore := registryBlobGets(t, "acceptance/share-b", bb.Layers[0].Digest)
	fragB := create(t, store, refB, "b")
	if n := registryBlobGets(t, "acceptance/share-b", bb.Layers[0].Digest) - getsBefore; n != 0 {
		t.Errorf("creating b fetched the busybox layer already in the store %d times, want 0", n)
	}
	if n := registryBlobGets(t, "acceptance/share-b", bb.Layers[2].Digest); n != 1 {
		t.Errorf("creating b fetched its own top layer %d times, want 1", n)
	}

	want := map[string]bool{}
	for _, l := range append(a.Layers, bb.Layers[2]) {
		want[l.DiffID.Encoded()] = true
	}
	got := dirEntries(t, filepath.Join(store, "layers"))
	sort.Strings(got)
	if len(got) != len(want) {
		t.Errorf("layers/ holds %v, want the %d distinct diffIDs", got, len(want))
	}
	for d := range want {
		if !exists(filepath.Join(store, "layers", d, "diff")) {
			t.Errorf("layers/%s/diff missing", d)
		}
	}
	if sh(t, store, fragA, "cat /shared/f /only-a") != "shared\na\n" || sh(t, store, fragB, "cat /shared/f /only-b") != "shared\nb\n" {
		t.Error("images do not see their content")
	}

	// list names both, stats reports usage.
	if ids := listIDs(t, store); strings.Join(ids, ",") != "a,b" {
		t.Errorf("list ids = %v, want [a b]", ids)
	}
	r := taproot(t, store, "stats", "a")
	var st statsJSON
	if r.code != 0 {
		t.Errorf("stats a:\n%s", r)
	} else if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.DiskUsage.TotalBytesUsed == nil || st.DiskUsage.ExclusiveBytesUsed == nil {
		t.Errorf("stats a printed %q, want {\"disk_usage\":{\"total_bytes_used\":N,\"exclusive_bytes_used\":N}} (%v)", r.stdout, err)
	} else if *st.DiskUsage.TotalBytesUsed < int64(len(readFile(t, h.busybox))) {
		t.Errorf("stats a total_bytes_used = %d, less than busybox alone", *st.DiskUsage.TotalBytesUsed)
	}

	r = taproot(t, store, "delete", "a")
	if r.code != 0 {
		t.Fatalf("delete a:\n%s", r)
	}
	if exists(imageDir(store, "a")) {
		t.Errorf("images/a still exists after delete")
	}
	for _, l := range bb.Layers {
		if !exists(layerDir(store, l.DiffID)) {
			t.Errorf("delete a removed layer %s that b uses", l.DiffID.Encoded())
		}
	}
	if got := sh(t, store, fragB, "cat /shared/f /only-b"); got != "shared\nb\n" {
		t.Errorf("b after deleting a: %q", got)
	}
	if ids := listIDs(t, store); strings.Join(ids, ",") != "b" {
		t.Errorf("list ids after delete a = %v, want [b]", ids)
	}
	// delete of an unknown id succeeds (daemons retry).
	if r := taproot(t, store, "delete", "a"); r.code != 0 {
		t.Errorf("second delete a should succeed with a warning:\n%s", r)
	}
}

// listIDs runs `taproot list` and returns the sorted image ids of its JSON
// array of {"id": …} objects.
func listIDs(t *testing.T, store string) []string {
	t.Helper()
	r := taproot(t, store, "list")
	if r.code != 0 {
		t.Fatalf("list:\n%s", r)
	}
	var recs []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("list printed %q, want a JSON array of {\"id\":…}: %v", r.stdout, err)
	}
	var ids []string
	for _, rec := range recs {
		ids = append(ids, rec.ID)
	}
	sort.Strings(ids)
	return ids
}
