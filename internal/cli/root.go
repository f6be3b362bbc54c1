package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/internal/config"
)

// Streams are the command's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// globals are the flags every command shares, and what they resolve to.
type globals struct {
	streams    Streams
	configPath string
	storePath  string
	// storePathErr says why there is no default store path.
	storePathErr error
	logLevel     string
	logFormat    string

	cfg config.Config
	log *slog.Logger
}

// NewCmdRoot returns the taproot command tree.
func NewCmdRoot(streams Streams) *cobra.Command {
	g := &globals{streams: streams}
	cmd := &cobra.Command{
		Use:   "taproot",
		Short: "Rootless image plugin: turns container images into rootfs a runtime mounts in a user namespace",
		Long: `taproot pulls Docker/OCI images into a deduplicated layer store, unpacks
them with owners shifted into the caller's sub-UID range, and prints an OCI
runtime-spec fragment whose overlay mount a runtime (runc, crun) performs
inside the container's user namespace. No step needs root except the
one-time init-store (for XFS disk limits).

Results (JSON) go to stdout; logs and errors go to stderr.`,
		Example: `  # as an unprivileged user with a range in /etc/subuid:
  taproot create docker://registry.example.com/app:1.2 web-1 > fragment.json
  taproot stats web-1
  taproot delete web-1`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setup(cmd)
		},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.Err)
	f := cmd.PersistentFlags()
	f.StringVar(&g.configPath, "config", "", "TOML config file (default "+config.DefaultPath()+" if present)")
	f.StringVar(&g.storePath, "store", "", "store directory (default "+config.DefaultStoreHelp+")")
	f.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error (default warn)")
	f.StringVar(&g.logFormat, "log-format", "", "text or json (default text)")

	cmd.AddCommand(
		NewCmdCreate(g),
		NewCmdDelete(g),
		NewCmdStats(g),
		NewCmdList(g),
		NewCmdClean(g),
		NewCmdPull(g),
		NewCmdVersion(g),
		NewCmdInitStore(g),
		NewCmdDeleteStore(g),
		NewCmdCapacity(g),
		NewCmdMetrics(g),
		NewCmdCheck(g),
		NewCmdWorker(g),
		NewCmdReclaim(g),
		NewCmdMan(g),
	)
	setCompletionHelp(cmd)
	return cmd
}

func (g *globals) setup(cmd *cobra.Command) error {
	path, required := g.configPath, true
	if path == "" {
		path, required = config.DefaultPath(), false
	}
	cfg, err := config.Load(path, required)
	if err != nil {
		return err
	}
	g.cfg = cfg
	if g.storePath == "" {
		g.storePath = cfg.Store
	}
	if g.storePath == "" {
		// Only commands that use a store fail without one.
		g.storePath, g.storePathErr = config.DefaultStore()
	}
	level := firstNonEmpty(g.logLevel, cfg.LogLevel, "warn")
	format := firstNonEmpty(g.logFormat, cfg.LogFormat, "text")
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		g.log = slog.New(slog.NewTextHandler(g.streams.Err, hopts))
	case "json":
		g.log = slog.New(slog.NewJSONHandler(g.streams.Err, hopts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	routeLogrus(g.log)
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// Main runs taproot with args and returns the exit code.
func Main(ctx context.Context, args []string, streams Streams) int {
	cmd := NewCmdRoot(streams)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		msg := oneLine(err.Error())
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			msg = "interrupted by a signal (" + err.Error() + ")"
		}
		fmt.Fprintf(streams.Err, "taproot: %s\n", msg)
		return 1
	}
	return 0
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
