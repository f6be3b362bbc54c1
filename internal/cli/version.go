package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// NewCmdVersion returns `taproot version`.
func NewCmdVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "version",
		Short:             "Print taproot's version, commit and Go version",
		Example:           "  taproot version",
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { g.ran = true; return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			version, commit, dirty, goVersion := "devel", "unknown", false, "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v := bi.Main.Version; v != "" && v != "(devel)" {
					version = v
				}
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						commit = s.Value
					case "vcs.modified":
						dirty = s.Value == "true"
					}
				}
			}
			if dirty {
				commit += "-dirty"
			}
			_, err := fmt.Fprintf(g.streams.Out, "taproot %s\ncommit: %s\ngo: %s\n", version, commit, goVersion)
			return err
		},
	}
}
