// Command taproot is the rootless image plugin. main does two things, in
// this order: worker.Main, which serves the store's user-namespace worker
// request and exits when this process was started as the worker (the
// store re-runs this binary for that; see package worker), and otherwise
// returns at once; then cli.Main, the cobra command tree (package
// internal/cli), whose commands call the use cases of package builder.
// It imports nothing else (internal/depcheck pins that, and that the
// setuid helper's package quotahelper is not linked in).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/taproot-dev/taproot/internal/cli"
	"github.com/taproot-dev/taproot/worker"
)

func main() {
	// The store re-runs this binary as its user-namespace worker: then
	// this serves the worker's request and exits, before any flag or
	// config is read (the worker reads neither).
	worker.Main()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
