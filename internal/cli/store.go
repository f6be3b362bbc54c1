package cli

import (
	"context"
	"os"
	"os/exec"
	"syscall"

	"github.com/taproot-dev/taproot/internal/idmap"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
)

// mappingFlags are --uid-mapping/--gid-mapping, repeatable "C:H:N".
type mappingFlags struct {
	uid, gid []string
}

func (m mappingFlags) parse(g *globals) (uids, gids []idmap.Mapping, err error) {
	u, gr := m.uid, m.gid
	if len(u) == 0 {
		u = g.cfg.Create.UIDMappings
	}
	if len(gr) == 0 {
		gr = g.cfg.Create.GIDMappings
	}
	if len(u) > 0 {
		if uids, err = idmap.ParseList(u); err != nil {
			return nil, nil, badInput(err)
		}
	}
	if len(gr) > 0 {
		if gids, err = idmap.ParseList(gr); err != nil {
			return nil, nil, badInput(err)
		}
	}
	return uids, gids, nil
}

// openStore opens the store with the given mappings (nil = the store's).
func (g *globals) openStore(ctx context.Context, uids, gids []idmap.Mapping) (*store.Store, error) {
	var lim store.Limiter
	helper := g.quotaHelperPath()
	if helper != "" {
		lim = quotaLimiter{overlayxfs.QuotaHelper{Path: helper}}
	}
	if g.storePathErr != nil {
		return nil, g.storePathErr
	}
	st, err := store.Open(ctx, g.storePath, g.storeOptions(uids, gids, lim))
	if err == nil && st.Meta().Quota && helper == "" {
		g.log.Warn("the store has XFS project quotas but taproot-quota is not installed: no disk limits", "store", st.Root())
	}
	return st, err
}

func (g *globals) storeOptions(uids, gids []idmap.Mapping, lim store.Limiter) store.Options {
	return store.Options{
		Limiter:        lim,
		UIDMappings:    uids,
		GIDMappings:    gids,
		WorkerExe:      "/proc/self/exe",
		WorkerArgs:     []string{workerCommand},
		ParallelLayers: g.cfg.Create.ParallelLayers,
		MaxLayerBytes:  g.cfg.Create.MaxLayerBytes,
		MaxImageBytes:  g.cfg.Create.MaxImageBytes,
		MaxEntries:     g.cfg.Create.MaxLayerEntries,
		MaxRatio:       g.cfg.Create.MaxCompressionRatio,
		Sync:           g.cfg.Create.Sync,
		Logger:         g.log,
		DeferReclaim:   true,
		Progress:       g.storeProgress(),
	}
}

// storeProgress is the store's progress callback: the JSON events of this
// command, if any.
func (g *globals) storeProgress() func(store.Progress) {
	if g.events == nil {
		return nil
	}
	return g.events.store
}

// startReclaim removes deleted images' files in a detached process, so that
// delete returns as soon as the image is moved aside. If that process dies,
// the next clean finishes its work.
func (g *globals) startReclaim(storeRoot string) {
	cmd := exec.Command("/proc/self/exe", "--store", storeRoot, "--log-level", "error", reclaimCommand)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		g.log.Warn("could not start background reclaim; clean will remove the deleted files", "error", err)
		return
	}
	cmd.Process.Release()
}

// openExistingStore opens a store that must already exist, without
// creating it (for delete, stats, list).
func (g *globals) openExistingStore(ctx context.Context) (*store.Store, bool, error) {
	if g.storePathErr != nil {
		return nil, false, g.storePathErr
	}
	if _, err := os.Stat(g.storePath); err != nil {
		if os.IsNotExist(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	s, err := g.openStore(ctx, nil, nil)
	return s, s != nil, err
}

// storeUsage is the usage of the store, all zero when there is none yet.
func (g *globals) storeUsage(ctx context.Context) (store.Usage, error) {
	st, ok, err := g.openExistingStore(ctx)
	if err != nil || !ok {
		return store.Usage{}, err
	}
	return st.Usage(ctx, store.UsageOptions{})
}
