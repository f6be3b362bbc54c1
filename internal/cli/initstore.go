package cli

import (
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdInitStore returns `taproot init-store`.
func NewCmdInitStore(g *globals) *cobra.Command {
	var req builder.InitStoreRequest
	cmd := &cobra.Command{
		Use:   "init-store [--store-size-bytes N | --xfs-mount DIR] [--owner UID:GID]",
		Short: "Create a store for a daemon user, on XFS with project quotas (root, once)",
		Long: `Init-store prepares a store, as root, for the user that will run taproot:

  --store-size-bytes N   make a sparse file <store>.backing-store of N bytes,
                         mkfs.xfs it and mount it at the store path with
                         loop,pquota,noatime (at least 300 MB, mkfs.xfs's minimum)
  --xfs-mount DIR        use an existing XFS mount mounted with pquota; the store
                         is DIR unless --store names a dir inside it

Without either, the store is made on whatever filesystem holds it; if that is
not XFS with project quotas, disk limits are not available (taproot says so).
The store is handed to --owner (default: root) with the owner's sub-ID
mapping (or --uid-mapping/--gid-mapping), and, with quotas, listed in
/etc/taproot/stores, the only stores the setuid taproot-quota helper acts on.
Running it again with the same arguments changes nothing. Prints
{"store":…,"quota":…,"filesystem":…} on stdout.`,
		Example: `  taproot --store /var/lib/taproot init-store --store-size-bytes 10737418240 --owner 1000:1000
  taproot --store /srv/xfs/taproot init-store --xfs-mount /srv/xfs --owner garden:garden`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.printJSON(g.b.InitStore(cmd.Context(), req))
		},
	}
	f := cmd.Flags()
	f.Int64Var(&req.SizeBytes, "store-size-bytes", 0, "size of a new loop-backed XFS filesystem for the store")
	f.StringVar(&req.XFSMount, "xfs-mount", "", "existing XFS mount (with pquota) to put the store on")
	f.StringVar(&req.Owner, "owner", "", "UID:GID (or USER:GROUP) that will own and use the store (default 0:0)")
	f.StringArrayVar(&req.UIDMappings, "uid-mapping", nil, "container:host:size uid mapping of the store, repeatable (default: the owner's /etc/subuid range, maximus for root)")
	f.StringArrayVar(&req.GIDMappings, "gid-mapping", nil, "container:host:size gid mapping of the store, repeatable")
	return cmd
}

// NewCmdDeleteStore returns `taproot delete-store`.
func NewCmdDeleteStore(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-store",
		Short: "Remove a store and everything in it, undoing init-store (root)",
		Long: `Delete-store removes the store from /etc/taproot/stores, unmounts its
loop-backed filesystem and removes the backing file, and removes the store
directory with every image and layer in it. Containers still running from it
lose their rootfs. Deleting a store that does not exist succeeds.`,
		Example: "  taproot --store /var/lib/taproot delete-store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.b.DeleteStore(cmd.Context(), builder.DeleteStoreRequest{})
		},
	}
}

// NewCmdCapacity returns `taproot capacity`.
func NewCmdCapacity(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "capacity",
		Short:   `Print the store filesystem's size as {"capacity":N}`,
		Example: "  taproot capacity",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.printJSON(g.b.Capacity(cmd.Context(), builder.CapacityRequest{}))
		},
	}
}
