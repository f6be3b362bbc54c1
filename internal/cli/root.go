package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/taproot-dev/taproot/builder"
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
	storePath  string // the --store flag
	logLevel   string
	logFormat  string

	cfg config.Config
	log *slog.Logger
	// b runs the use cases, with the config and the store path resolved.
	b *builder.Builder
	// progress and progressFD: how create and pull report progress. Global
	// flags, so that Garden's extra arguments (put before the command) can
	// carry them.
	progress   string
	progressFD int
	// ran is set once the command line parsed and the command started:
	// an error before that is a usage error (cobra's own, unclassified).
	ran bool
}

// printJSON prints a use case's result v as one JSON line on stdout; a
// failure err is returned instead, and nothing printed.
func (g *globals) printJSON(v any, err error) error {
	if err != nil {
		return err
	}
	return json.NewEncoder(g.streams.Out).Encode(v)
}

// NewCmdRoot returns the taproot command tree.
func NewCmdRoot(streams Streams) *cobra.Command {
	cmd, _ := newCmdRoot(streams)
	return cmd
}

func newCmdRoot(streams Streams) (*cobra.Command, *globals) {
	g := &globals{streams: streams}
	cmd := &cobra.Command{
		Use:   "taproot",
		Short: "Rootless image plugin: turns container images into rootfs a runtime mounts in a user namespace",
		Long: `taproot pulls Docker/OCI images into a deduplicated layer store, unpacks
them with owners shifted into the caller's sub-UID range, and prints an OCI
runtime-spec fragment whose overlay mount a runtime (runc, crun) performs
inside the container's user namespace. No step needs root except the
one-time init-store (for XFS disk limits).

Results (JSON) go to stdout; logs and errors go to stderr (with
--log-format json every stderr line is one JSON object, the error included).
The exit status is 0, or the failure's class: 1 internal, 2 bad input,
3 not found, 4 unauthorized, 5 transient (retry may help), 6 disk limit,
7 store damaged.`,
		Example: `  # as an unprivileged user with a range in /etc/subuid:
  taproot create docker://registry.example.com/app:1.2 web-1 > fragment.json
  taproot stats web-1
  taproot delete web-1`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			g.ran = true
			return badInput(g.setup(cmd))
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
	f.StringVar(&g.progress, "progress", "auto", "create/pull progress: auto (bars on a terminal), none, or json (one event per line on stderr; schema in docs/garden.md)")
	f.IntVar(&g.progressFD, "progress-fd", 0, "create/pull: write the JSON progress events to this open file descriptor instead (e.g. 3)")

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
		NewCmdReclaim(g),
		NewCmdMan(g),
	)
	setCompletionHelp(cmd)
	return cmd, g
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
	g.b = builder.New(builder.Options{Config: cfg, Store: g.storePath, Logger: g.log})
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

// Main runs taproot with args and returns the exit code: 0, or the class
// of the failure (see ExitCode). The failure is one line on stderr:
// "taproot: MESSAGE", or with --log-format json one JSON object like every
// other line there:
// {"time":…,"level":"ERROR","msg":"create failed","error":MESSAGE,"code":3,"class":"not_found"}.
func Main(ctx context.Context, args []string, streams Streams) int {
	cmd, g := newCmdRoot(streams)
	cmd.SetArgs(args)
	ran, err := cmd.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	code := exitCodeOf(err)
	if !g.ran && code == ExitInternal {
		code = ExitBadInput // cobra: unknown command or flag, wrong number of arguments
	}
	msg := oneLine(err.Error())
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		msg = "interrupted by a signal (" + err.Error() + ")"
	}
	if g.jsonErrors(args) {
		what := "taproot failed"
		if ran != nil && ran != cmd {
			what = ran.Name() + " failed"
		}
		log := g.log
		if log == nil {
			log = slog.New(slog.NewJSONHandler(streams.Err, nil))
		}
		log.Error(what, "error", msg, "code", int(code), "class", code.Class())
	} else {
		fmt.Fprintf(streams.Err, "taproot: %s\n", msg)
	}
	return int(code)
}

// jsonErrors reports whether the final error is to be JSON: the log format
// in effect, or, when the failure came before the logger was set up (a bad
// flag, config or log level), the --log-format flag as written in args.
func (g *globals) jsonErrors(args []string) bool {
	if g.log != nil {
		_, ok := g.log.Handler().(*slog.JSONHandler)
		return ok
	}
	format := firstNonEmpty(g.logFormat, g.cfg.LogFormat)
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--log-format="); ok {
			format = v
		} else if a == "--log-format" && i+1 < len(args) {
			format = args[i+1]
		}
	}
	return strings.EqualFold(format, "json")
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
