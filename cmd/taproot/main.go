// Command taproot is the rootless image plugin; see internal/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/taproot-dev/taproot/internal/cli"
	"github.com/taproot-dev/taproot/internal/userns"
)

func main() {
	// A rootless worker child waits here for its ID maps, then re-execs.
	if err := userns.MaybeReexec(); err != nil {
		fmt.Fprintf(os.Stderr, "taproot: %s\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
