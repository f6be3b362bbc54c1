package cli

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/overlayxfs"
	"github.com/taproot-dev/taproot/store"
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
			if os.Geteuid() == 0 {
				if err := unmountImage(st, id); err != nil {
					return err
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

// unmountImage undoes --with-mount: it unmounts the image's persisted
// mounts, which Image has checked. A record that does not check out names
// no path to unmount: then only the id's own rootfs dir in this store is
// (the one target a valid record has), so delete still removes it whole.
func unmountImage(st *store.Store, id string) error {
	rec, err := st.Image(id)
	if err != nil {
		return overlayxfs.Mount{Target: filepath.Join(st.Root(), "images", id, "rootfs")}.Unmount()
	}
	for _, m := range rec.Mounts {
		if err := m.Unmount(); err != nil {
			return err
		}
	}
	return nil
}
