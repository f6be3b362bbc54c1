package cli

import (
	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdClean returns `taproot clean`.
func NewCmdClean(g *globals) *cobra.Command {
	var threshold int64
	cmd := &cobra.Command{
		Use:   "clean",
		Short: "Remove layers no image uses, and what killed processes left behind",
		Long: `Clean removes layers (and squashed layers, short links, scratch dirs,
unfinished images and lock files of killed or failed creates) that no image
references. It never removes a layer that
a create running at the same time is about to use. With --threshold-bytes
it does nothing unless the layers take more than that many bytes. Prints
{"reclaimed_bytes":N,"layers_removed":M}. Safe to run from cron at any time.`,
		Example: "  taproot clean\n  taproot clean --threshold-bytes 10737418240",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var req builder.CleanRequest
			if cmd.Flags().Changed("threshold-bytes") {
				req.ThresholdBytes = &threshold
			}
			return g.printJSON(g.b.Clean(cmd.Context(), req))
		},
	}
	cmd.Flags().Int64Var(&threshold, "threshold-bytes", 0, "only clean when the store's layers take more than this (0 = always; default [clean] threshold_bytes)")
	return cmd
}
