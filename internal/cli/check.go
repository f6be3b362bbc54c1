package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdCheck returns `taproot check`.
func NewCmdCheck(g *globals) *cobra.Command {
	var req builder.CheckRequest
	cmd := &cobra.Command{
		Use:   "check [--quick] [--repair]",
		Short: "Verify every layer against its recorded tar metadata; --repair fixes the store",
		Long: `Check rebuilds each layer's tar from its tar-split metadata and the files on
disk and compares its digest with the layer's diffID, so modified and missing
files are found; it also finds files that no layer entry names, records
without dirs, dirs without records, dangling and missing short links, and
debris of killed processes. It prints a JSON report on stdout and exits
non-zero when the store is damaged and was not repaired.

--quick compares each file's size with its tar metadata instead of reading
every byte: it finds what a power cut leaves (files shorter than written,
empty or undecodable records, image dirs gone) in a stat per file, for a run
at every boot (packaging/systemd/taproot-check.service).

--repair removes damaged layers (the next create fetches them again) and the
images that use them or whose record or dirs are damaged (the platform
creates them again), recreates links and removes debris.`,
		Example: "  taproot check\n  taproot check --repair\n  taproot check --quick --repair   # at boot",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := g.b.Check(cmd.Context(), req)
			if rep != nil {
				enc := json.NewEncoder(g.streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&req.Repair, "repair", false, "remove damaged layers and images and debris, fix links")
	cmd.Flags().BoolVar(&req.Quick, "quick", false, "compare file sizes with the tar metadata instead of reading every file")
	return cmd
}
