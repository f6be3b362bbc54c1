package cli

import (
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// registryFlags registers the registry flags of create and pull into r.
func registryFlags(cmd *cobra.Command, r *builder.Registry) {
	fl := cmd.Flags()
	fl.StringVar(&r.Username, "username", "", "registry user name (default: credentials from auth.json / credential helpers)")
	fl.StringVar(&r.Password, "password", "", "registry password")
	fl.StringArrayVar(&r.InsecureRegistries, "insecure-registry", nil, "registry HOST[:PORT] to reach over plain HTTP or unverified TLS, repeatable")
}

// withProgress runs one create or pull (call) with the terminal display and
// the JSON events (--progress, --progress-fd) plugged into *hooks, the
// request's, and returns the events (nil: none) for the caller's done line.
// The display's last state is drawn before it returns, whether call failed
// or not.
func withProgress[R any](g *globals, hooks *builder.Hooks, call func() (R, error)) (R, *events, error) {
	p, ev, err := g.progressSetup()
	if err != nil {
		var none R
		return none, nil, err
	}
	*hooks = builder.Hooks{
		Resolved: ev.resolved,
		Layer: func(i int, l builder.Layer, rc io.ReadCloser) io.ReadCloser {
			return ev.track(i, p.track(layerName(l.BlobDigest, i), l.Size, rc))
		},
		Event: ev.event,
	}
	res, err := call()
	p.finish()
	return res, ev, err
}

// NewCmdPull returns `taproot pull`.
func NewCmdPull(g *globals) *cobra.Command {
	var req builder.PullRequest
	cmd := &cobra.Command{
		Use:   "pull [flags] <image-ref>",
		Short: "Fetch an image's layers into the store without creating an image",
		Long: `Pull pre-warms the store: later creates of the image (or of images sharing
its layers) need no download. Layers no image uses are removed by clean, so
run pull shortly before the creates it speeds up, or clean with a threshold.`,
		Example: "  taproot pull docker://registry.example.com/app:1.2",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Ref = args[0]
			res, ev, err := withProgress(g, &req.Hooks, func() (builder.PullResult, error) {
				return g.b.Pull(cmd.Context(), req)
			})
			if err != nil {
				return err
			}
			ev.done(map[string]any{"ref": res.Ref})
			g.log.Info("pulled", "ref", res.Ref, "layers", res.Layers)
			return nil
		},
	}
	registryFlags(cmd, &req.Registry)
	cmd.Flags().StringArrayVar(&req.UIDMappings, "uid-mapping", nil, "container:host:size uid mapping for a new store, repeatable")
	cmd.Flags().StringArrayVar(&req.GIDMappings, "gid-mapping", nil, "container:host:size gid mapping for a new store, repeatable")
	return cmd
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
