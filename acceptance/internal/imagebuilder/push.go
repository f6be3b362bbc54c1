package imagebuilder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
)

// Push uploads a built image to docker://<registry>/<repo> with
// containers/image's docker transport (over plain HTTP when the registry
// has no TLS). Blobs go up unchanged, so their digests stay those of b.
//
// It drives the ImageDestination directly rather than through copy.Image:
// the copy package drags cgo (sqlite blob-info cache, pkcs11) and progress
// bar modules into the build for no gain here.
func Push(ctx context.Context, b Built, registry, repo string) error {
	ref, err := docker.ParseReference("//" + registry + "/" + repo)
	if err != nil {
		return fmt.Errorf("destination %s/%s: %w", registry, repo, err)
	}
	sys := &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		AuthFilePath:                "/nonexistent/taproot-acceptance-auth.json",
	}
	dest, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return fmt.Errorf("push to %s: %w", ref.StringWithinTransport(), err)
	}
	defer dest.Close()
	// Several blobs at once when the destination allows it: an image of
	// 500 small layers took ~60 s one blob at a time on the loopback
	// registry of the tests.
	par := 1
	if dest.HasThreadSafePutBlob() {
		par = 8
	}
	sem := make(chan struct{}, par)
	errs := make([]error, len(b.Layers))
	var wg sync.WaitGroup
	for i, l := range b.Layers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			info := types.BlobInfo{Digest: l.Digest, Size: int64(len(l.Data)), MediaType: l.MediaType}
			if _, err := dest.PutBlob(ctx, bytes.NewReader(l.Data), info, none.NoCache, false); err != nil {
				errs[i] = fmt.Errorf("push layer %s: %w", l.Digest, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	info := types.BlobInfo{Digest: b.ConfigDigest, Size: int64(len(b.ConfigBytes))}
	if _, err := dest.PutBlob(ctx, bytes.NewReader(b.ConfigBytes), info, none.NoCache, true); err != nil {
		return fmt.Errorf("push config: %w", err)
	}
	if err := dest.PutManifest(ctx, b.ManifestBytes, nil); err != nil {
		return fmt.Errorf("push manifest: %w", err)
	}
	return dest.Commit(ctx, nil)
}
