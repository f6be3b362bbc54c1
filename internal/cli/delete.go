package cli

import (
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
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
			_, err := g.b.Delete(cmd.Context(), builder.DeleteRequest{ID: args[0]})
			return err
		},
	}
}

// NewCmdReclaim is the hidden command delete starts in the background to
// remove the files of deleted images.
func NewCmdReclaim(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    builder.ReclaimCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.b.Reclaim(cmd.Context())
		},
	}
}
