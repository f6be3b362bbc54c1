package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/spec"
	"github.com/taproot-dev/taproot/store"
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
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("image %q: %w", args[0], store.ErrImageNotFound)
			}
			u, err := st.Stats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return json.NewEncoder(g.streams.Out).Encode(spec.Stats{DiskUsage: spec.DiskUsage(u)})
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
			entries := []spec.ListEntry{}
			st, ok, err := g.openExistingStore(cmd.Context())
			if err != nil {
				return err
			}
			if ok {
				recs, err := st.Images(cmd.Context())
				if err != nil {
					return err
				}
				for _, r := range recs {
					entries = append(entries, spec.ListEntry{ID: r.ID, ImageRef: r.Ref, Created: r.Created, BaseSize: r.BaseSize})
				}
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
