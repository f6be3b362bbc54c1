package fetcher

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// mapCache is a Cache in memory that checks nothing itself, so that the
// test sees what the fetcher does with content that does not match.
type mapCache struct {
	mu sync.Mutex
	m  map[digest.Digest][]byte
}

func (c *mapCache) CachedBlob(d digest.Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[d]
	return b, ok
}

func (c *mapCache) CacheBlob(d digest.Digest, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[d] = append([]byte(nil), b...)
	return nil
}

// TestCache: after one open through the registry, the manifest list, the
// chosen manifest and the config are cached under their digests and an
// open by digest works with the registry gone; content that does not hash
// to its digest is never used.
func TestCache(t *testing.T) {
	reg := startRegistry(t, "")
	fx := buildFixture(t)
	host := reg.host
	pushImage(t, host, "test/multi", "", fx.native)
	pushImage(t, host, "test/multi", "", fx.other)
	pushManifest(t, host, "test/multi", "v1", imgspecv1.MediaTypeImageIndex, fx.multiBlob)
	cache := &mapCache{m: map[digest.Digest][]byte{}}
	f := testFetcher(t, Options{InsecureRegistries: []string{host}, Cache: cache, Retries: -1, Timeout: 5 * time.Second})
	base := "docker://" + host + "/test/multi"
	byDigest := base + "@" + fx.multiDesc.Digest.String()

	src := mustOpen(t, f, base+":v1")
	want := src.Image()
	src.Close()
	if want.ManifestDigest != fx.native.manifestDigest || want.ListDigest != fx.multiDesc.Digest {
		t.Fatalf("opened %s (list %s), want %s (list %s)", want.ManifestDigest, want.ListDigest, fx.native.manifestDigest, fx.multiDesc.Digest)
	}
	configDigest := digest.FromBytes(fx.native.configBlob)
	for _, d := range []digest.Digest{fx.multiDesc.Digest, fx.native.manifestDigest, configDigest} {
		if _, ok := cache.CachedBlob(d); !ok {
			t.Errorf("%s not cached", d)
		}
	}
	if _, ok := cache.CachedBlob(fx.other.manifestDigest); ok {
		t.Errorf("the other platform's manifest was fetched and cached")
	}

	// Manifests and config from the cache, layers (concurrently) from the
	// registry source opened on demand.
	src = mustOpen(t, f, byDigest)
	checkBlobs(t, src)
	src.Close()

	reg.cmd.Process.Kill()
	time.Sleep(100 * time.Millisecond)

	src = mustOpen(t, f, byDigest)
	got := src.Image()
	src.Close()
	if got.ManifestDigest != want.ManifestDigest || got.ListDigest != want.ListDigest || len(got.Layers) != len(want.Layers) || got.Config.Architecture != want.Config.Architecture {
		t.Errorf("open by digest from the cache: %+v, want %+v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := f.Open(ctx, mustParse(t, base+":v1")); err == nil {
		t.Errorf("open by tag with the registry gone succeeded: a tag must be asked for")
	}

	// A config that does not hash to its digest is a miss: with the
	// registry gone, the open must fail rather than use it.
	good, _ := cache.CachedBlob(configDigest)
	cache.m[configDigest] = []byte(`{"architecture":"evil","os":"linux","rootfs":{"type":"layers"}}`)
	if src, err := f.Open(ctx, mustParse(t, byDigest)); err == nil {
		t.Errorf("open used a tampered cached config: %+v", src.Image().Config)
		src.Close()
	}
	cache.m[configDigest] = good
	if src, err := f.Open(ctx, mustParse(t, byDigest)); err != nil {
		t.Errorf("open with the config restored: %v", err)
	} else {
		src.Close()
	}
}
