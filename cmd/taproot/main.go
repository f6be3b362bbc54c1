// Command taproot is the rootless image plugin; see internal/cli.
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
