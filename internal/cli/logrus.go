package cli

import (
	"context"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// containers/image logs through the global logrus logger, straight to
// stderr in its own format (e.g. "Reading blob body … failed, reconnecting"
// at info level). That broke the rule that a failed command prints one
// line on stderr, and ignored --log-level/--log-format. Route its entries
// into taproot's logger instead, at the same level.
func routeLogrus(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.DebugLevel) // the hook filters by slog's level
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{log})
}

type logrusHook struct{ log *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	var lv slog.Level
	switch {
	case e.Level <= logrus.ErrorLevel:
		lv = slog.LevelError
	case e.Level == logrus.WarnLevel:
		lv = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		lv = slog.LevelInfo
	default:
		lv = slog.LevelDebug
	}
	if !h.log.Enabled(context.Background(), lv) {
		return nil
	}
	attrs := make([]any, 0, 2*len(e.Data)+2)
	attrs = append(attrs, "source", "containers/image")
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.log.Log(context.Background(), lv, e.Message, attrs...)
	return nil
}
