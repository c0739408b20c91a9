// Command tidings runs Tidings: each gRPC service or the worker as its own
// process (`tidings serve ROLE`), everything in one process on embedded
// dependencies (`tidings dev`), and client commands for people.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tidingshq/tidings/services/tidings/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
