// Command ssefloor is the bare stream server that `make bench-load` puts
// behind nginx in place of the gateways to measure the machine's floor for
// stream delivery (see benchload.FloorServer).
//
//	ssefloor -addr 127.0.0.1:9901 [-period 1s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cryptopulse/tools/benchload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9901", "loopback address to listen on")
	period := flag.Duration("period", time.Second, "how often every stream gets an event")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := benchload.FloorServer(ctx, *addr, *period); err != nil {
		fmt.Fprintln(os.Stderr, "ssefloor:", err)
		os.Exit(1)
	}
}
