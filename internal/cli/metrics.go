package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
)

// NewCmdMetrics returns `taproot metrics`.
func NewCmdMetrics(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "metrics",
		Short: "Print store metrics in Prometheus text format (for node_exporter's textfile collector)",
		Long: `Metrics prints the store's image and layer counts and sizes in the
Prometheus text exposition format. Write it atomically into node_exporter's
textfile directory from cron or a timer.`,
		Example: "  taproot metrics > /var/lib/node_exporter/taproot.prom.$$ && mv /var/lib/node_exporter/taproot.prom.$$ /var/lib/node_exporter/taproot.prom",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.b.Metrics(cmd.Context(), builder.MetricsRequest{})
			if err != nil {
				return err
			}
			w := g.streams.Out
			metric(w, "taproot_images", "gauge", "Images (rootfs) in the store.", float64(m.Images))
			metric(w, "taproot_layers", "gauge", "Layers (including squashed layers) in the store.", float64(m.Layers))
			metric(w, "taproot_layers_unreferenced", "gauge", "Layers no image references (clean removes them).", float64(m.LayersUnreferenced))
			metric(w, "taproot_layer_bytes", "gauge", "Bytes of file content in the store's layers.", float64(m.LayerBytes))
			metric(w, "taproot_image_base_bytes", "gauge", "Sum of the images' base sizes.", float64(m.ImageBaseBytes))
			metric(w, "taproot_image_disk_limit_bytes", "gauge", "Sum of the images' disk limits.", float64(m.ImageDiskLimitBytes))
			return nil
		},
	}
}

func metric(w io.Writer, name, typ, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", name, help, name, typ, name, v)
}
