package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/gc"
	"github.com/taproot-dev/taproot/spec"
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
			out := spec.CleanResult{}
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil {
				return err
			}
			if ok {
				if !cmd.Flags().Changed("threshold-bytes") {
					threshold = g.cfg.Clean.ThresholdBytes
				}
				res, err := gc.Collect(cmd.Context(), st, gc.Options{ThresholdBytes: threshold})
				if err != nil {
					return err
				}
				if res.Skipped {
					g.log.Info("store is under the threshold; nothing removed", "threshold_bytes", threshold)
				}
				out = spec.CleanResult{ReclaimedBytes: res.ReclaimedBytes, LayersRemoved: res.LayersRemoved}
			}
			return json.NewEncoder(g.streams.Out).Encode(out)
		},
	}
	cmd.Flags().Int64Var(&threshold, "threshold-bytes", 0, "only clean when the store's layers take more than this (0 = always)")
	return cmd
}
