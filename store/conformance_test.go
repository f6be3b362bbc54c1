package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/store"
	"github.com/taproot-dev/taproot/store/storetest"
)

// factory makes stores owned by root (the test runs as root) with maps,
// through store.Init as init-store does (quota recorded on when the check
// brings a limiter) and then store.Open as every command does.
func factory(maps []idmap.Mapping, sync bool) storetest.Factory {
	return func(t *testing.T, opts store.Options) *store.Store {
		t.Helper()
		dir := t.TempDir()
		// Container root must reach the store to run the worker.
		os.Chmod(dir, 0o755)
		os.Chmod(filepath.Dir(dir), 0o755)
		root := filepath.Join(dir, "store")
		ctx := context.Background()
		if _, err := store.Init(ctx, root, store.InitOptions{UIDMappings: maps, GIDMappings: maps, Quota: opts.Limiter != nil}); err != nil {
			t.Fatal(err)
		}
		opts.UIDMappings, opts.GIDMappings = maps, maps
		opts.Sync = sync
		st, err := store.Open(ctx, root, opts)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

// The suite against the two kinds of mapping a store has: one range from
// container root up (as a rootless owner's sub-IDs give; here container
// root is host 200000, not the owner) and maximus (root's default:
// container root is host 4294967294, container 1..N host 1..N), each with
// sync on and off.
func TestConformance(t *testing.T) {
	subIDs := []idmap.Mapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	storetest.Run(t, "subids-sync", factory(subIDs, true))
	storetest.Run(t, "subids-nosync", factory(subIDs, false))
	storetest.Run(t, "maximus-sync", factory(idmap.Maximus(), true))
	storetest.Run(t, "maximus-nosync", factory(idmap.Maximus(), false))
}
