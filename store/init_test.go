package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/flock"
)

// newStoreDir is a fresh store path the namespace's root can reach.
func newStoreDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("Init makes stores for other owners and the worker needs a root-written mapping: run as root (make test does)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	return filepath.Join(dir, "store")
}

// Open's implicit init and Init are one way: both refuse a mapping that
// does not map container root, and write nothing.
func TestBothWaysRefuseUnmappedContainerRoot(t *testing.T) {
	ctx := context.Background()
	noRoot := []idmap.Mapping{{ContainerID: 1, HostID: 200001, Size: 65535}}
	root := newStoreDir(t)
	if _, err := Open(ctx, root, Options{UIDMappings: noRoot, GIDMappings: noRoot}); err == nil {
		t.Error("Open made a store whose mapping does not map container root")
	}
	if _, err := Init(ctx, root, InitOptions{UIDMappings: noRoot, GIDMappings: noRoot}); err == nil {
		t.Error("Init made a store whose mapping does not map container root")
	}
	if _, err := os.Stat(layout{root}.metaPath()); err == nil {
		t.Error("a refused store has a meta record")
	}
}

// Init refuses a store of a newer format as Open does (before, Init
// confirmed it and handed its layout over).
func TestBothWaysRefuseNewerFormat(t *testing.T) {
	ctx := context.Background()
	root := newStoreDir(t)
	m, err := Init(ctx, root, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Version = MetaVersion + 1
	if err := writeJSONAtomic(layout{root}.metaPath(), &m, 0o644, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, root, InitOptions{}); err == nil {
		t.Error("Init confirmed a store of a newer format")
	}
	if _, err := Open(ctx, root, Options{}); err == nil {
		t.Error("Open took a store of a newer format")
	}
}

// A process making a new store changes nothing that depends on its mapping
// until it holds the init lock and has read the record again under it: a
// second process asking for another mapping must not re-own the first's
// dirs before it is refused (before, it chowned the root to its own
// container root's group while waiting).
func TestMakingAStoreWaitsForTheInitLockFirst(t *testing.T) {
	ctx := context.Background()
	root := newStoreDir(t)
	if err := os.MkdirAll(filepath.Join(root, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := flock.Exclusive(ctx, layout{root}.initLock())
	if err != nil {
		t.Fatal(err)
	}
	maps := []idmap.Mapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	done := make(chan error, 1)
	go func() {
		_, err := Open(ctx, root, Options{UIDMappings: maps, GIDMappings: maps})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	fi, st := statOf(t, root)
	if st.Gid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("while waiting for the init lock the store root became mode %04o group %d", fi.Mode().Perm(), st.Gid)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("while waiting for the init lock the store got %d entries, want only locks/", len(entries))
	}
	held.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	other := []idmap.Mapping{{ContainerID: 0, HostID: 400000, Size: 65536}}
	if _, err := Open(ctx, root, Options{UIDMappings: other, GIDMappings: other}); !errors.Is(err, ErrMappingDiffer) {
		t.Errorf("open with another mapping: %v, want ErrMappingDiffer", err)
	}
	if _, st := statOf(t, root); st.Gid != 300000 {
		t.Errorf("the refused open left the root's group %d, want 300000", st.Gid)
	}
}

// Concurrent Opens (and an Init) of one new store agree on one record.
func TestConcurrentMakersAgreeOnOneMeta(t *testing.T) {
	ctx := context.Background()
	root := newStoreDir(t)
	maps := []idmap.Mapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	const n = 8
	metas := make([]Meta, n+1)
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := Open(ctx, root, Options{UIDMappings: maps, GIDMappings: maps})
			if err == nil {
				metas[i] = st.Meta()
			}
			errs[i] = err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		metas[n], errs[n] = Init(ctx, root, InitOptions{UIDMappings: maps, GIDMappings: maps})
	}()
	wg.Wait()
	for i := range metas {
		if errs[i] != nil {
			t.Fatalf("maker %d: %v", i, errs[i])
		}
		if !metas[i].Created.Equal(metas[0].Created) {
			t.Errorf("maker %d saw a store created at %v, maker 0 at %v", i, metas[i].Created, metas[0].Created)
		}
	}
	var onDisk Meta
	if err := readJSON(layout{root}.metaPath(), &onDisk); err != nil || !onDisk.Created.Equal(metas[0].Created) {
		t.Errorf("record on disk %+v (%v), makers saw %v", onDisk, err, metas[0].Created)
	}
}
