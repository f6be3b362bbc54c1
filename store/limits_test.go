package store

import (
	"errors"
	"os"
	"testing"
)

func TestInodeLimit(t *testing.T) {
	const MiB = 1 << 20
	cases := []struct {
		name       string
		req        CreateRequest
		upper      uint64 // the project byte limit
		baseInodes int64
		want       uint64
		wantErr    error
	}{
		// A 3 MiB base of 400 entries under base + 10 MiB: the image may
		// have (13 MiB)/2 KiB = 6656 inodes, 6256 of them its container's.
		{"derived, base counted", CreateRequest{DiskLimit: 13 * MiB}, 10 * MiB, 400, 6656 - 400, nil},
		// A base of small files (40,000 entries in 3 MiB) does not starve
		// the container: it keeps one inode per 2 KiB of its 10 MiB.
		{"derived, small-file base", CreateRequest{DiskLimit: 13 * MiB}, 10 * MiB, 40000, 5120, nil},
		{"derived, exclude base", CreateRequest{DiskLimit: 10 * MiB, ExcludeBase: true}, 10 * MiB, 400, 5120, nil},
		{"derived, no limit: the filesystem's size", CreateRequest{}, 512 * MiB, 400, 262144, nil},
		{"derived, rounds up", CreateRequest{DiskLimit: 2049, ExcludeBase: true}, 2049, 0, 2, nil},
		{"derived, at least one", CreateRequest{DiskLimit: 1, ExcludeBase: true}, 1, 0, 1, nil},
		{"derived, no record of the base's inodes", CreateRequest{DiskLimit: 13 * MiB}, 10 * MiB, 0, 6656, nil},
		{"explicit, base counted", CreateRequest{DiskLimit: 13 * MiB, DiskLimitInodes: 1000}, 10 * MiB, 400, 600, nil},
		{"explicit, exclude base", CreateRequest{DiskLimitInodes: 1000, ExcludeBase: true}, 10 * MiB, 400, 1000, nil},
		{"explicit, below base", CreateRequest{DiskLimitInodes: 400}, 10 * MiB, 400, 0, ErrLimitBelowBase},
		{"explicit, no byte limit", CreateRequest{DiskLimitInodes: 5000}, 512 * MiB, 400, 4600, nil},
	}
	for _, c := range cases {
		got, err := inodeLimit(c.req, c.upper, c.baseInodes)
		if !errors.Is(err, c.wantErr) || got != c.want {
			t.Errorf("%s: inodeLimit = %d, %v; want %d, %v", c.name, got, err, c.want, c.wantErr)
		}
	}
}

// TestWalkUsageInodes: without a quota, stats counts the upper dir's
// inodes by walking it, a hardlinked file once.
func TestWalkUsageInodes(t *testing.T) {
	root := t.TempDir() + "/diff"
	if err := os.MkdirAll(root+"/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a", "d/b", "d/e/c"} {
		if err := os.WriteFile(root+"/"+f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(root+"/a", root+"/d/a2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", root+"/s"); err != nil {
		t.Fatal(err)
	}
	_, inodes, err := walkUsage(root)
	// diff, d, d/e, a (= d/a2), d/b, d/e/c, s
	if err != nil || inodes != 7 {
		t.Errorf("walkUsage inodes = %d, %v; want 7", inodes, err)
	}
	if _, n, err := walkUsage(root + "/missing"); err != nil || n != 0 {
		t.Errorf("walkUsage of a missing dir = %d, %v; want 0, nil", n, err)
	}
}
