package store

import "github.com/taproot-dev/taproot/worker"

// worker is the store's user-namespace worker (package worker): the
// store's mapping, the bounds and sync of its options. Files inside layers
// are owned by container IDs, which only the worker can write or remove.
func (s *Store) worker() *worker.Runner {
	return &worker.Runner{
		Exe:       s.opts.WorkerExe,
		UIDs:      s.meta.UIDMappings,
		GIDs:      s.meta.GIDMappings,
		NewUIDMap: s.opts.NewUIDMap,
		NewGIDMap: s.opts.NewGIDMap,
		Bounds: worker.Bounds{
			MaxLayerBytes: s.opts.MaxLayerBytes,
			MaxImageBytes: s.opts.MaxImageBytes,
			MaxEntries:    s.opts.MaxEntries,
			MaxRatio:      s.opts.MaxRatio,
		},
		Parallel: s.opts.ParallelLayers,
		Sync:     s.opts.Sync,
		Log:      s.log,
	}
}
