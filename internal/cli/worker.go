package cli

import (
	"github.com/spf13/cobra"
)

// The user-namespace worker is no command: cmd/taproot's main runs it
// (worker.Main) before the command line is parsed.

const reclaimCommand = "__reclaim"

// NewCmdReclaim is the hidden command delete starts in the background to
// remove the files of deleted images.
func NewCmdReclaim(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    reclaimCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil || !ok {
				return err
			}
			return st.Reclaim(cmd.Context())
		},
	}
}
