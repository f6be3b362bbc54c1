package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// errDamaged makes check exit non-zero after printing its report.
var errDamaged = fmt.Errorf("%w; run taproot check --repair", errStoreDamaged)

// NewCmdCheck returns `taproot check`.
func NewCmdCheck(g *globals) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "check [--repair]",
		Short: "Verify every layer against its recorded tar metadata; --repair fixes the store",
		Long: `Check rebuilds each layer's tar from its tar-split metadata and the files on
disk and compares its digest with the layer's diffID, so modified and missing
files are found; it also finds files that no layer entry names, records
without dirs, dirs without records, dangling and missing short links, and
debris of killed processes. It prints a JSON report on stdout and exits
non-zero when the store is damaged and was not repaired.

--repair removes damaged layers (the next create fetches them again),
recreates links and removes debris.`,
		Example: "  taproot check\n  taproot check --repair",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w at %s", errNoStore, g.storePath)
			}
			rep, err := st.Check(cmd.Context(), repair)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.streams.Out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
			if !rep.Healthy && !rep.Repaired {
				return errDamaged
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove damaged layers and debris, fix links")
	return cmd
}
