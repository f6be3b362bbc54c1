package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdStats returns `taproot stats`.
func NewCmdStats(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats <id>",
		Short: "Print an image's disk usage as JSON",
		Long: `Stats prints {"disk_usage":{"total_bytes_used":N,"exclusive_bytes_used":N,
"total_inodes_used":N,"exclusive_inodes_used":N}}: exclusive bytes and inodes
are what the container wrote (read from its XFS project quota, without
walking files); total adds the image's own size and inodes.`,
		Example: `  taproot stats web-1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.printJSON(g.b.Stats(cmd.Context(), builder.StatsRequest{ID: args[0]}))
		},
	}
}

// NewCmdList returns `taproot list`.
func NewCmdList(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List images as JSON (or a table with --format table)",
		Example: "  taproot list\n  taproot list --format table",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "table" {
				return fmt.Errorf("--format %q: want json or table", format)
			}
			entries, err := g.b.List(cmd.Context(), builder.ListRequest{})
			if err != nil {
				return err
			}
			if format == "table" {
				w := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tIMAGE\tCREATED\tBASE SIZE")
				for _, e := range entries {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", e.ID, e.ImageRef, e.Created.Format("2006-01-02T15:04:05Z"), e.BaseSize)
				}
				return w.Flush()
			}
			return json.NewEncoder(g.streams.Out).Encode(entries)
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "json or table")
	return cmd
}
