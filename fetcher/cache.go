package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/pkg/sysregistriesv2"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
)

// Cache keeps image manifests and configs by digest, so that a warm
// create needs no registry (by digest) or one manifest request (by tag).
// The store implements it. CachedBlob must return only content that hashes
// to d; CacheBlob must refuse content that does not.
type Cache interface {
	CachedBlob(d digest.Digest) ([]byte, bool)
	CacheBlob(d digest.Digest, data []byte) error
}

// cachedSource is a docker image source that serves manifests and blobs
// from the Cache when it has them and opens the registry source only when
// it must (containers/image's docker source pings the registry, over
// HTTPS first, and fetches the manifest as soon as it is opened).
type cachedSource struct {
	f     *Fetcher
	ref   Reference
	sys   *types.SystemContext
	cache Cache
	// top is the digest of the manifest the reference names: its own
	// digest, or the one a HEAD of its tag returned; "" when unknown.
	top digest.Digest

	mu   sync.Mutex
	real types.ImageSource
	hits map[digest.Digest]bool // served from the cache
}

// newCachedSource fails only when the HEAD of a tag got no answer within
// the timeout: asking again the usual way would double the wait.
func (f *Fetcher) newCachedSource(ctx context.Context, sys *types.SystemContext, ref Reference) (*cachedSource, error) {
	c := &cachedSource{f: f, ref: ref, sys: sys, cache: f.opts.Cache, hits: map[digest.Digest]bool{}}
	named := ref.imgRef.DockerReference()
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil || (reg != nil && reg.Blocked) {
		// Let the registry source report the configuration error or the block.
		return c, nil
	}
	if d, ok := named.(reference.Digested); ok {
		c.top = d.Digest()
		return c, nil
	}
	tagged, ok := named.(reference.Tagged)
	plain := f.isInsecure(ref.Registry) || (reg != nil && reg.Insecure)
	direct := reg == nil || (len(reg.Mirrors) == 0 && reg.Location == reg.Prefix)
	if ok && plain && direct {
		d, err := f.headManifest(ctx, ref, reference.Path(named), tagged.Tag())
		switch {
		case err != nil && (errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil):
			return nil, fmt.Errorf("reading manifest: %w", err)
		case err != nil:
			f.log.Debug("manifest HEAD failed; asking the registry the usual way", "ref", ref.String(), "error", err)
		default:
			if _, ok := c.get(d); ok {
				c.top = d
			}
		}
	}
	return c, nil
}

// headManifest asks a registry configured as insecure for the digest of a
// tag with one anonymous HEAD over plain HTTP. containers/image would first
// probe HTTPS and ping /v2/ (docker_client.go detectPropertiesHelper: https,
// then http when TLS verification is off, the same for
// DockerInsecureSkipTLSVerify and a registries.conf insecure entry; it has
// no setting to skip the probe). Any failure (an HTTPS-only registry, 401
// for one that wants credentials, which are never sent here) falls back to
// that path, costing this one request more. Asking over plain HTTP first
// gives a man in the middle nothing an insecure registry did not already
// give: with verification off, HTTPS can be intercepted too.
func (f *Fetcher) headManifest(ctx context.Context, ref Reference, repo, tag string) (digest.Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	u := fmt.Sprintf("http://%s/v2/%s/manifests/%s", ref.Registry, repo, tag)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return "", err
	}
	req.Header["Accept"] = manifest.DefaultRequestedManifestMIMETypes
	if f.opts.UserAgent != "" {
		req.Header.Set("User-Agent", f.opts.UserAgent)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD %s: %s", u, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("HEAD %s: Docker-Content-Digest: %w", u, err)
	}
	return d, nil
}

// get reads d from the cache, checking its content once more: the cache
// is a directory of files, and a file is data.
func (c *cachedSource) get(d digest.Digest) ([]byte, bool) {
	if d.Validate() != nil {
		return nil, false
	}
	b, ok := c.cache.CachedBlob(d)
	if !ok || d.Algorithm().FromBytes(b) != d {
		return nil, false
	}
	c.mu.Lock()
	c.hits[d] = true
	c.mu.Unlock()
	return b, true
}

// put keeps b in the cache unless it came from there.
func (c *cachedSource) put(b []byte) {
	d := digest.SHA256.FromBytes(b)
	c.mu.Lock()
	hit := c.hits[d]
	c.mu.Unlock()
	if hit {
		return
	}
	if err := c.cache.CacheBlob(d, b); err != nil {
		c.f.log.Debug("could not cache image metadata", "ref", c.ref.String(), "digest", d, "error", err)
	}
}

// source opens the registry source on first use.
func (c *cachedSource) source(ctx context.Context) (types.ImageSource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		return c.real, nil
	}
	src, err := c.ref.imgRef.NewImageSource(ctx, c.sys)
	if err != nil {
		return nil, err
	}
	c.real = src
	return src, nil
}

func (c *cachedSource) Reference() types.ImageReference { return c.ref.imgRef }

func (c *cachedSource) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		return c.real.Close()
	}
	return nil
}

func (c *cachedSource) GetManifest(ctx context.Context, instance *digest.Digest) ([]byte, string, error) {
	d := c.top
	if instance != nil {
		d = *instance
	}
	if d != "" {
		if b, ok := c.get(d); ok {
			return b, manifest.GuessMIMEType(b), nil
		}
	}
	src, err := c.source(ctx)
	if err != nil {
		return nil, "", err
	}
	return src.GetManifest(ctx, instance)
}

func (c *cachedSource) GetBlob(ctx context.Context, info types.BlobInfo, bic types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if b, ok := c.get(info.Digest); ok {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	src, err := c.source(ctx)
	if err != nil {
		return nil, 0, err
	}
	return src.GetBlob(ctx, info, bic)
}

func (c *cachedSource) HasThreadSafeGetBlob() bool { return true }

func (c *cachedSource) GetSignatures(ctx context.Context, instance *digest.Digest) ([][]byte, error) {
	src, err := c.source(ctx)
	if err != nil {
		return nil, err
	}
	return src.GetSignatures(ctx, instance)
}

// LayerInfosForCopy: nil means the manifest's layers, as for the docker source.
func (c *cachedSource) LayerInfosForCopy(context.Context, *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}
