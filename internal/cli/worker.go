package cli

import (
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
	"github.com/taproot-dev/taproot/store"
)

const workerCommand = builder.WorkerCommand

// NewCmdWorker is the hidden command taproot runs itself as inside a user
// namespace, to write files owned by container IDs.
func NewCmdWorker(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    workerCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		// The worker must not read the caller's config or touch the store
		// meta: it gets everything in its request.
		PersistentPreRunE: func(*cobra.Command, []string) error { g.ran = true; return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			return store.RunWorker(cmd.Context(), g.streams.In, g.streams.Out)
		},
	}
}
