// Package swaprace is a test helper: it plays the local user who swaps
// entries of a directory while taproot reads it, exchanging each pair of
// names with renameat2(RENAME_EXCHANGE) as fast as it can (the file and
// the symlink to a secret trade places atomically, so a reader that
// resolves a path twice can be handed the other one).
package swaprace

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Racer swaps pairs of names in one directory until Stop.
type Racer struct {
	stop  atomic.Bool
	swaps atomic.Int64
	wg    sync.WaitGroup
	err   error
}

// Start opens dir and swaps each pair of names in it, in a loop, in a
// goroutine of its own.
func Start(dir string, pairs [][2]string) (*Racer, error) {
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	r := &Racer{}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer unix.Close(dirfd)
		for !r.stop.Load() {
			for _, p := range pairs {
				if err := unix.Renameat2(dirfd, p[0], dirfd, p[1], unix.RENAME_EXCHANGE); err != nil {
					r.err = fmt.Errorf("renameat2 %s <-> %s in %s: %w", p[0], p[1], dir, err)
					return
				}
				r.swaps.Add(1)
			}
		}
	}()
	return r, nil
}

// Stop ends the swapping and returns how many swaps were made and the
// error that stopped them early, if any.
func (r *Racer) Stop() (swaps int64, err error) {
	r.stop.Store(true)
	r.wg.Wait()
	return r.swaps.Load(), r.err
}
