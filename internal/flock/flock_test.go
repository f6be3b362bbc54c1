package flock

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExclusiveExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l")
	ctx := context.Background()
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Exclusive(ctx, path)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			if n > maxInside.Load() {
				maxInside.Store(n)
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			if i%2 == 0 {
				l.RemoveAndRelease()
			} else {
				l.Release()
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
}

func TestTryExclusiveAndContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l")
	l, err := Shared(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := TryExclusive(path); ok || err != nil {
		t.Fatalf("TryExclusive under a shared lock: ok=%v err=%v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Exclusive(ctx, path); err == nil {
		t.Fatal("Exclusive under a shared lock did not time out")
	}
	l2, err := Shared(context.Background(), path)
	if err != nil {
		t.Fatal("second shared lock:", err)
	}
	l.Release()
	l2.Release()
	l3, ok, err := TryExclusive(path)
	if !ok || err != nil {
		t.Fatalf("TryExclusive on a free lock: ok=%v err=%v", ok, err)
	}
	l3.Release()
}
