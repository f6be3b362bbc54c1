package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdCreate returns `taproot create`.
func NewCmdCreate(g *globals) *cobra.Command {
	var req builder.CreateRequest
	var diskLimit int64
	var exclude bool
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
			req.Ref, req.ID = args[0], args[1]
			f := cmd.Flags()
			if f.Changed("disk-limit-size-bytes") {
				req.DiskLimitSizeBytes = &diskLimit
			}
			if f.Changed("exclude-image-from-quota") {
				req.ExcludeImageFromQuota = &exclude
			}
			res, ev, err := withProgress(g, &req.Hooks, func() (builder.CreateResult, error) {
				return g.b.Create(cmd.Context(), req)
			})
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.streams.Out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res.Fragment); err != nil {
				return err
			}
			ev.done(map[string]any{"id": res.ID, "ref": res.Ref, "manifest_digest": res.ManifestDigest})
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&req.UIDMappings, "uid-mapping", nil, "container:host:size uid mapping, repeatable (default: the store's; for a new store, /etc/subuid or maximus as root)")
	f.StringArrayVar(&req.GIDMappings, "gid-mapping", nil, "container:host:size gid mapping, repeatable")
	f.Int64Var(&diskLimit, "disk-limit-size-bytes", 0, "disk limit of the image in bytes, image included unless --exclude-image-from-quota (0 = none; default [create] disk_limit_size_bytes; needs an init-store'd XFS store)")
	f.Int64Var(&req.DiskLimitInodes, "disk-limit-inodes", 0, "inode limit of the image, its own inodes included unless --exclude-image-from-quota (0 = one per 2 KiB of the disk limit, see docs/admin.md)")
	f.BoolVar(&exclude, "exclude-image-from-quota", false, "do not count the image's own size (and inodes) against the disk limit (default [create] exclude_image_from_quota)")
	registryFlags(cmd, &req.Registry)
	f.BoolVar(&req.WithClean, "with-clean", false, "clean the store first when its layers take more than [clean] threshold_bytes (default [create] with_clean)")
	f.BoolVar(&req.WithoutClean, "without-clean", false, "do not clean the store first, whatever [create] with_clean says")
	f.BoolVar(&req.WithMount, "with-mount", false, "mount the rootfs here (root only) and print no mounts")
	f.BoolVar(&req.WithoutMount, "without-mount", false, "print the overlay mount for the runtime to perform (the default)")
	return cmd
}
