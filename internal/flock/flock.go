// Package flock provides advisory file locks with flock(2). The kernel
// releases them when the holder dies, so a killed taproot never leaves a
// lock behind; lock files themselves are small and may be removed by the
// holder of an exclusive lock (Lock re-checks the inode after locking, so a
// waiter on a removed file retries on the new one).
//
// Its one user is package store, whose lock sequences (store/locks.go) and
// lock names (store/layout.go) are written there once. A leaf: it imports
// no other taproot package (internal/depcheck pins that).
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held lock on one file.
type Lock struct {
	f    *os.File
	path string
}

// Exclusive takes an exclusive lock on path, creating the file if needed,
// waiting until ctx is done.
func Exclusive(ctx context.Context, path string) (*Lock, error) {
	return lock(ctx, path, unix.LOCK_EX)
}

// Shared takes a shared lock on path.
func Shared(ctx context.Context, path string) (*Lock, error) {
	return lock(ctx, path, unix.LOCK_SH)
}

// TryExclusive takes an exclusive lock without waiting; ok is false when
// another process holds the lock.
func TryExclusive(path string) (l *Lock, ok bool, err error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, false, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, false, nil
			}
			return nil, false, &os.PathError{Op: "flock", Path: path, Err: err}
		}
		if same(f, path) {
			return &Lock{f: f, path: path}, true, nil
		}
		f.Close()
	}
}

func lock(ctx context.Context, path string, how int) (*Lock, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		if err := wait(ctx, f, path, how); err != nil {
			f.Close()
			return nil, err
		}
		// The holder before us may have removed the file; then our lock
		// is on an orphan inode and protects nothing.
		if same(f, path) {
			return &Lock{f: f, path: path}, nil
		}
		f.Close()
	}
}

// wait blocks in flock. A blocking flock cannot be interrupted by a context,
// so poll with LOCK_NB and a short, growing sleep.
func wait(ctx context.Context, f *os.File, path string, how int) error {
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return &os.PathError{Op: "flock", Path: path, Err: err}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

func same(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// Path returns the locked file's path.
func (l *Lock) Path() string { return l.path }

// Release unlocks and closes. Safe on nil.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last fd releases the flock
	l.f = nil
	return err
}

// RemoveAndRelease removes the lock file and then releases the lock. Only
// the holder of an exclusive lock may call it: waiters notice the removal
// and retry on a fresh file.
func (l *Lock) RemoveAndRelease() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, l.Release())
}
