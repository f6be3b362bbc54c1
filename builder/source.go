package builder

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/store"
)

// Registry are the registry settings of one create or pull (flags); the
// config's [registry] and [create] insecure_registries complete them.
type Registry struct {
	Username, Password string
	// InsecureRegistries are added to the config's.
	InsecureRegistries []string
}

// openSource opens ref with the config's registry settings and r, with the
// store's cache of manifests and configs.
func (b *Builder) openSource(ctx context.Context, ref fetcher.Reference, r Registry, st *store.Store) (*fetcher.Source, error) {
	insecure := append(append([]string(nil), b.cfg.Create.InsecureRegistries...), r.InsecureRegistries...)
	f := fetcher.New(fetcher.Options{
		InsecureRegistries: insecure,
		Username:           r.Username,
		Password:           r.Password,
		RegistriesConfPath: b.cfg.Registry.RegistriesConf,
		AuthFilePath:       b.cfg.Registry.AuthFile,
		PolicyPath:         b.cfg.Registry.Policy,
		Timeout:            b.cfg.Registry.Timeout.Duration,
		Retries:            b.cfg.Registry.Retries,
		Logger:             b.log,
		Cache:              st,
	})
	return f.Open(ctx, ref)
}

// storeLayers describes src's layers to the store, streaming from src
// through wrap (nil: as they are).
func storeLayers(src *fetcher.Source, wrap func(int, Layer, io.ReadCloser) io.ReadCloser) []store.Layer {
	var out []store.Layer
	img := src.Image()
	cacheKey := localVersion(img.Ref)
	for i, l := range img.Layers {
		out = append(out, store.Layer{
			CacheKey:   cacheKey,
			BlobDigest: l.BlobDigest,
			DiffID:     l.DiffID,
			MediaType:  l.MediaType,
			Size:       l.Size,
			Open: func(ctx context.Context) (io.ReadCloser, error) {
				rc, err := src.OpenLayer(ctx, i)
				if err != nil || wrap == nil {
					return rc, err
				}
				return wrap(i, layerOf(l), rc), nil
			},
		})
	}
	return out
}

// localVersion names the version of a local rootfs dir or tarball by its
// path, size and modification time, as GrootFS does: touch the dir after
// changing what is inside to make creates read it again. "" for a
// registry or layout image, whose layers have digests.
func localVersion(ref fetcher.Reference) string {
	if ref.Kind != fetcher.LocalDir && ref.Kind != fetcher.LocalTarball {
		return ""
	}
	fi, err := os.Stat(ref.Path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s:%s\x00size=%d\x00mtime=%d", ref.Kind, ref.Path, fi.Size(), fi.ModTime().UnixNano())
}

// PullRequest asks for an image's layers in the store.
type PullRequest struct {
	Ref string
	// UIDMappings, GIDMappings ("C:H:N") for a new store; nil: the config's,
	// else the default.
	UIDMappings, GIDMappings []string
	Registry                 Registry
	Hooks                    Hooks
}

// PullResult says what a pull brought.
type PullResult struct {
	Ref string
	// Layers is how many layers the image has (all now in the store).
	Layers int
}

// Pull fetches an image's layers into the store without creating an
// image, so that later creates need no download.
func (b *Builder) Pull(ctx context.Context, req PullRequest) (PullResult, error) {
	ref, err := fetcher.ParseRef(req.Ref)
	if err != nil {
		return PullResult{}, err
	}
	uids, gids, err := b.parseMappings(req.UIDMappings, req.GIDMappings)
	if err != nil {
		return PullResult{}, err
	}
	st, err := b.openStore(ctx, uids, gids, req.Hooks.storeProgress())
	if err != nil {
		return PullResult{}, err
	}
	src, err := b.openSource(ctx, ref, req.Registry, st)
	if err != nil {
		return PullResult{}, err
	}
	defer src.Close()
	req.Hooks.resolved(src.Image())
	keys, err := st.Pull(ctx, storeLayers(src, req.Hooks.Layer))
	if err != nil {
		return PullResult{}, err
	}
	return PullResult{Ref: ref.String(), Layers: len(keys)}, nil
}
