package cli

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/store"
	"golang.org/x/sys/unix"
)

// NewCmdDelete returns `taproot delete`.
func NewCmdDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <id>",
		Short: "Delete an image's rootfs (layers stay for other images; clean reclaims them)",
		Long: `Delete removes <id>'s upper and work dirs, its disk limit and its record.
Deleting an id that does not exist succeeds with a warning, so daemons can
retry a delete safely.`,
		Example: `  taproot delete web-1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := store.ValidateID(id); err != nil {
				return err
			}
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil {
				return err
			}
			if !ok {
				g.log.Warn("nothing to delete: image not found", "id", id, "store", g.storePath)
				return nil
			}
			// Undo --with-mount; EINVAL means it was not mounted.
			rootfs := filepath.Join(st.Root(), "images", id, "rootfs")
			if os.Geteuid() == 0 {
				if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					return &os.PathError{Op: "unmount", Path: rootfs, Err: err}
				}
			}
			err = st.Delete(cmd.Context(), id)
			if errors.Is(err, store.ErrImageNotFound) {
				g.log.Warn("nothing to delete: image not found", "id", id)
				return nil
			}
			if err != nil {
				return err
			}
			g.startReclaim(st.Root())
			return nil
		},
	}
}
