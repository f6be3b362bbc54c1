package builder

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/taproot-dev/taproot/idmap"
	"github.com/taproot-dev/taproot/internal/config"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
)

// ReclaimCommand is the hidden command taproot runs itself as to remove
// deleted images' files; delete starts it in the background (see Delete).
// The cobra side lives in internal/cli. (The store's user-namespace worker
// is no command: package worker's Main runs it before cobra.)
const ReclaimCommand = "__reclaim"

// Options make a Builder: what every use case shares.
type Options struct {
	// Config is the loaded config file (config.Default() when there is
	// none); requests override it field by field.
	Config config.Config
	// Store is the store path the caller gave (--store); "" means not
	// given: the config's, else config.DefaultStore().
	Store string
	// Logger receives warnings and progress notes (nil: discarded).
	Logger *slog.Logger
	// Exe is the taproot binary re-executed as the store's worker and as
	// the background reclaimer (default /proc/self/exe).
	Exe string
}

// Builder runs taproot's use cases against one store.
type Builder struct {
	cfg        config.Config
	storePath  string
	storeGiven bool
	// storePathErr says why there is no store path (only use cases that
	// need a store fail with it).
	storePathErr error
	log          *slog.Logger
	exe          string
}

// New resolves the store path (flag, else config, else the default) and
// returns the Builder.
func New(o Options) *Builder {
	b := &Builder{cfg: o.Config, log: o.Logger, exe: o.Exe, storePath: o.Store, storeGiven: o.Store != ""}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.exe == "" {
		b.exe = "/proc/self/exe"
	}
	if b.storePath == "" {
		b.storePath = o.Config.Store
	}
	if b.storePath == "" {
		b.storePath, b.storePathErr = config.DefaultStore()
	}
	return b
}

// StorePath is the resolved store path ("" when there is none).
func (b *Builder) StorePath() string { return b.storePath }

// parseMappings resolves --uid-mapping/--gid-mapping ("C:H:N" each) over
// the config's; nil results mean the store's (or a new store's default).
func (b *Builder) parseMappings(uid, gid []string) (uids, gids []idmap.Mapping, err error) {
	if len(uid) == 0 {
		uid = b.cfg.Create.UIDMappings
	}
	if len(gid) == 0 {
		gid = b.cfg.Create.GIDMappings
	}
	if len(uid) > 0 {
		if uids, err = idmap.ParseList(uid); err != nil {
			return nil, nil, BadInput(err)
		}
	}
	if len(gid) > 0 {
		if gids, err = idmap.ParseList(gid); err != nil {
			return nil, nil, BadInput(err)
		}
	}
	return uids, gids, nil
}

// storeRoot is the store's absolute path, or why there is none (no
// --store, no config store and no home to default to).
func (b *Builder) storeRoot() (string, error) {
	if b.storePathErr != nil {
		return "", b.storePathErr
	}
	return filepath.Abs(b.storePath)
}

// openStore opens (or makes, on first use) the store with the given
// mappings (nil = the store's); progress receives the store's layer
// reports (nil: none).
func (b *Builder) openStore(ctx context.Context, uids, gids []idmap.Mapping, progress func(store.Progress)) (*store.Store, error) {
	root, err := b.storeRoot()
	if err != nil {
		return nil, err
	}
	var lim store.Limiter
	helper := b.quotaHelperPath()
	if helper != "" {
		lim = quotaLimiter{overlayxfs.QuotaHelper{Path: helper}}
	}
	c := b.cfg.Create
	st, err := store.Open(ctx, root, store.Options{
		Limiter:        lim,
		UIDMappings:    uids,
		GIDMappings:    gids,
		WorkerExe:      b.exe,
		ParallelLayers: c.ParallelLayers,
		MaxLayerBytes:  c.MaxLayerBytes,
		MaxImageBytes:  c.MaxImageBytes,
		MaxEntries:     c.MaxLayerEntries,
		MaxRatio:       c.MaxCompressionRatio,
		Sync:           c.Sync,
		Logger:         b.log,
		DeferReclaim:   true,
		Progress:       progress,
	})
	if err == nil && st.Meta().Quota && helper == "" {
		b.log.Warn("the store has XFS project quotas but taproot-quota is not installed: no disk limits", "store", st.Root())
	}
	return st, err
}

// openExistingStore opens a store that must already exist, without
// creating it (for delete, stats, list...): ok is false when there is
// none.
func (b *Builder) openExistingStore(ctx context.Context) (st *store.Store, ok bool, err error) {
	root, err := b.storeRoot()
	if err != nil {
		return nil, false, err
	}
	if _, err := os.Stat(root); err != nil {
		if os.IsNotExist(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	st, err = b.openStore(ctx, nil, nil, nil)
	return st, st != nil, err
}

// quotaLimiter adapts the helper client to the store's Limiter.
type quotaLimiter struct{ h overlayxfs.QuotaHelper }

func (q quotaLimiter) SetLimit(ctx context.Context, dir string, bytes, inodes uint64) error {
	return q.h.SetLimit(ctx, dir, bytes, inodes)
}

func (q quotaLimiter) Usage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	u, err := q.h.Usage(ctx, dir)
	return u.BytesUsed, u.InodesUsed, err
}

func (q quotaLimiter) Clear(ctx context.Context, dir string) error { return q.h.Clear(ctx, dir) }

// quotaHelperPath finds taproot-quota: the config's path, else beside the
// taproot binary, else the usual install dirs. "" when there is none.
func (b *Builder) quotaHelperPath() string {
	if p := b.cfg.Quota.Helper; p != "" {
		return p
	}
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "taproot-quota"))
	}
	candidates = append(candidates, "/usr/local/bin/taproot-quota", "/usr/bin/taproot-quota")
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return c
		}
	}
	return ""
}

// noStore is the error of a use case that needs an existing store.
func (b *Builder) noStore() error { return fmt.Errorf("%w at %s", ErrNoStore, b.storePath) }
