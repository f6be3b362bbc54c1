package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/fetcher"
	"github.com/taproot-dev/taproot/gc"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
)

type createOptions struct {
	maps                  mappingFlags
	diskLimit             int64
	diskLimitInodes       int64
	excludeImageFromQuota bool
	fetchFlags
	withMount    bool
	withoutMount bool
}

// NewCmdCreate returns `taproot create`.
func NewCmdCreate(g *globals) *cobra.Command {
	o := &createOptions{}
	cmd := &cobra.Command{
		Use:   "create [flags] <image-ref> <id>",
		Short: "Create a rootfs for a container from an image and print its runtime-spec fragment",
		Long: `Create pulls the image's layers into the store (each layer once, shared by
every image that has it), prepares an overlay upper and work dir for <id>,
and prints an OCI runtime-spec fragment on stdout:

  root.path        <store>/images/<id>/rootfs (an empty mount point)
  mounts           one overlay mount at "/" (userxattr, lowerdir, upperdir, workdir)
                   which the runtime prepends to its mounts and performs inside
                   the container's user namespace
  process          env, cwd and user from the image config; args = entrypoint + cmd
  linux            uidMappings/gidMappings of the store
  annotations      the image's labels as io.taproot.image.label.<key> (never verbatim:
                   runtimes act on keys like run.oci.*), plus io.taproot.image.{ref,manifest-digest,id}

Image references:
  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry (docker:///REPO means Docker Hub;
                                            "#TAG" works as in GrootFS)
  oci:DIR[:TAG]  oci-archive:FILE[:TAG]  docker-archive:FILE
  /path/to/rootfs-dir  /path/to/rootfs.tar[.gz|.zst]

<id> is one path component of [A-Za-z0-9_.-]; creating an existing id fails.`,
		Example: `  taproot create docker://127.0.0.1:5000/busybox:latest c1 --insecure-registry 127.0.0.1:5000
  taproot create oci:/srv/images/app:v2 c2 --disk-limit-size-bytes 1073741824
  taproot create /srv/rootfs/debian c3`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd.Context(), g, o, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.maps.uid, "uid-mapping", nil, "container:host:size uid mapping, repeatable (default: the store's; for a new store, /etc/subuid or maximus as root)")
	f.StringArrayVar(&o.maps.gid, "gid-mapping", nil, "container:host:size gid mapping, repeatable")
	f.Int64Var(&o.diskLimit, "disk-limit-size-bytes", 0, "disk limit of the image in bytes, image included unless --exclude-image-from-quota (0 = none; needs an init-store'd XFS store)")
	f.Int64Var(&o.diskLimitInodes, "disk-limit-inodes", 0, "inode limit of the image, its own inodes included unless --exclude-image-from-quota (0 = one per 2 KiB of the disk limit, see docs/admin.md)")
	f.BoolVar(&o.excludeImageFromQuota, "exclude-image-from-quota", false, "do not count the image's own size (and inodes) against the disk limit")
	o.fetchFlags.register(cmd)
	f.BoolVar(&o.withMount, "with-mount", false, "mount the rootfs here (root only) and print no mounts")
	f.BoolVar(&o.withoutMount, "without-mount", false, "print the overlay mount for the runtime to perform (the default)")
	return cmd
}

func runCreate(ctx context.Context, g *globals, o *createOptions, rawRef, id string) (err error) {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	if o.diskLimit < 0 {
		return badInput(fmt.Errorf("--disk-limit-size-bytes %d: must not be negative", o.diskLimit))
	}
	if o.diskLimitInodes < 0 {
		return fmt.Errorf("--disk-limit-inodes %d: must not be negative", o.diskLimitInodes)
	}
	if o.withMount && os.Geteuid() != 0 {
		return badInput(fmt.Errorf("--with-mount needs root: a rootless caller lets the runtime mount inside the container's user namespace"))
	}
	ref, err := fetcher.ParseRef(rawRef)
	if err != nil {
		return err
	}
	uids, gids, err := o.maps.parse(g)
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
	if t := g.cfg.Clean.ThresholdBytes; t > 0 {
		res, err := gc.Collect(ctx, st, gc.Options{ThresholdBytes: t})
		if err != nil {
			g.log.Warn("clean before create failed; creating anyway", "error", err)
		} else if !res.Skipped {
			g.log.Info("cleaned the store before create", "reclaimed_bytes", res.ReclaimedBytes, "layers_removed", res.LayersRemoved)
		}
	}
	src, err := g.openSource(ctx, ref, o.fetchFlags, st)
	if err != nil {
		return err
	}
	defer src.Close()
	img := src.Image()
	ev.resolved(&img)

	req := store.CreateRequest{
		ID:              id,
		Ref:             ref.String(),
		ManifestDigest:  img.ManifestDigest,
		Config:          img.Config,
		DiskLimit:       uint64(o.diskLimit),
		DiskLimitInodes: uint64(o.diskLimitInodes),
		ExcludeBase:     o.excludeImageFromQuota || g.cfg.Create.ExcludeImageFromQuota,
	}
	if req.DiskLimit == 0 && g.cfg.Create.DiskLimitSizeBytes > 0 {
		req.DiskLimit = uint64(g.cfg.Create.DiskLimitSizeBytes)
	}
	req.Layers = storeLayers(src, p, ev)
	rec, err := st.Create(ctx, req)
	p.finish()
	if err != nil {
		return err
	}
	// From here a failure must not leave the image behind.
	defer func() {
		if err != nil {
			if delErr := st.Delete(context.WithoutCancel(ctx), id); delErr != nil {
				g.log.Warn("could not remove the image after a failed create", "id", id, "error", delErr)
			}
		}
	}()
	user, err := st.ResolveUser(rec)
	if err != nil {
		return err
	}
	// The mounts planned and persisted at create: performed here with
	// --with-mount (and then not printed), else printed for the runtime.
	root := rec.Mounts[0].Target
	var mounts []specs.Mount
	for _, m := range rec.Mounts {
		if o.withMount {
			if err := m.Mount(); err != nil {
				return err
			}
			defer func() {
				if err != nil {
					m.Unmount()
				}
			}()
			continue
		}
		sm, err := m.SpecMount(root)
		if err != nil {
			return err
		}
		mounts = append(mounts, sm)
	}
	frag := spec.Fragment(spec.FragmentInput{
		ID:             id,
		Ref:            rec.Ref,
		ManifestDigest: string(rec.ManifestDigest),
		RootPath:       root,
		Mounts:         mounts,
		Config:         rec.Config.Config,
		UID:            user.UID,
		GID:            user.GID,
		AdditionalGids: user.AdditionalGids,
		UIDMappings:    st.Meta().UIDMappings,
		GIDMappings:    st.Meta().GIDMappings,
	})
	enc := json.NewEncoder(g.streams.Out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(frag); err != nil {
		return err
	}
	ev.done(map[string]any{"id": id, "ref": rec.Ref, "manifest_digest": rec.ManifestDigest})
	return nil
}
