package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/store"
)

// fetchFlags are the registry flags of create and pull.
type fetchFlags struct {
	username, password string
	insecureRegistries []string
}

func (f *fetchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.username, "username", "", "registry user name (default: credentials from auth.json / credential helpers)")
	fl.StringVar(&f.password, "password", "", "registry password")
	fl.StringArrayVar(&f.insecureRegistries, "insecure-registry", nil, "registry HOST[:PORT] to reach over plain HTTP or unverified TLS, repeatable")
}

// openSource opens ref with the config's registry settings and the flags,
// with the store's cache of manifests and configs.
func (g *globals) openSource(ctx context.Context, ref fetcher.Reference, ff fetchFlags, st *store.Store) (*fetcher.Source, error) {
	insecure := append(append([]string(nil), g.cfg.Create.InsecureRegistries...), ff.insecureRegistries...)
	f := fetcher.New(fetcher.Options{
		InsecureRegistries: insecure,
		Username:           ff.username,
		Password:           ff.password,
		RegistriesConfPath: g.cfg.Registry.RegistriesConf,
		AuthFilePath:       g.cfg.Registry.AuthFile,
		PolicyPath:         g.cfg.Registry.Policy,
		Timeout:            g.cfg.Registry.Timeout.Duration,
		Retries:            g.cfg.Registry.Retries,
		Logger:             g.log,
		Cache:              st,
	})
	return f.Open(ctx, ref)
}

// storeLayers describes src's layers to the store, streaming from src and
// counting bytes for p and ev (nil: no progress shown, no events).
func storeLayers(src *fetcher.Source, p *progress, ev *events) []store.Layer {
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
				if err != nil {
					return nil, err
				}
				return ev.track(i, p.track(layerName(l.BlobDigest, i), l.Size, rc)), nil
			},
		})
	}
	return out
}

// NewCmdPull returns `taproot pull`.
func NewCmdPull(g *globals) *cobra.Command {
	var ff fetchFlags
	var maps mappingFlags
	cmd := &cobra.Command{
		Use:   "pull [flags] <image-ref>",
		Short: "Fetch an image's layers into the store without creating an image",
		Long: `Pull pre-warms the store: later creates of the image (or of images sharing
its layers) need no download. Layers no image uses are removed by clean, so
run pull shortly before the creates it speeds up, or clean with a threshold.`,
		Example: "  taproot pull docker://registry.example.com/app:1.2",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref, err := fetcher.ParseRef(args[0])
			if err != nil {
				return err
			}
			uids, gids, err := maps.parse(g)
			if err != nil {
				return err
			}
			p, ev, err := g.progressSetup()
			if err != nil {
				return err
			}
			g.events = ev
			st, err := g.openStore(ctx, uids, gids)
			if err != nil {
				return err
			}
			src, err := g.openSource(ctx, ref, ff, st)
			if err != nil {
				return err
			}
			defer src.Close()
			img := src.Image()
			ev.resolved(&img)
			keys, err := st.Pull(ctx, storeLayers(src, p, ev))
			p.finish()
			if err != nil {
				return err
			}
			ev.done(map[string]any{"ref": ref.String()})
			g.log.Info("pulled", "ref", ref.String(), "layers", len(keys))
			return nil
		},
	}
	ff.register(cmd)
	cmd.Flags().StringArrayVar(&maps.uid, "uid-mapping", nil, "container:host:size uid mapping for a new store, repeatable")
	cmd.Flags().StringArrayVar(&maps.gid, "gid-mapping", nil, "container:host:size gid mapping for a new store, repeatable")
	return cmd
}

// localVersion names the version of a local rootfs dir or tarball by its
// path, size and modification time, as GrootFS does: touch the dir after
// changing what is inside to make creates read it again.
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

// layerName is how progress names a layer: its short blob digest.
func layerName(d digest.Digest, i int) string {
	if d == "" {
		return fmt.Sprintf("layer %d", i+1)
	}
	if e := d.Encoded(); len(e) >= 12 {
		return e[:12]
	}
	return d.String()
}
