// Command benchload runs the load benchmark (`make bench-load`): every
// scenario on its own stack with real nginx, one table printed and written
// to -out.
//
//	benchload                         full run, current tree (about 5 minutes)
//	benchload -quick                  seconds per scenario, 2,000 waiting clients (env BENCH_QUICK=1)
//	benchload -base main              also build and measure main, before → after in each cell (env BASE)
//	benchload -scenarios machinery,openloop
//	benchload -scenarios hot,stream,failover -out bench/load-live.txt   (the live-price targets)
//
// It exits 0 whether targets pass or fail (they are information, and the
// machine is noisy); 1 only when the run itself broke: a build, a stack, a
// load tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cryptopulse/tools/benchload"
	"cryptopulse/tools/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts benchload.Options
	fs.BoolVar(&opts.Quick, "quick", getenv("BENCH_QUICK") == "1", "short runs (env BENCH_QUICK=1)")
	fs.StringVar(&opts.Base, "base", getenv("BASE"), "git revision to measure too, before → after (env BASE)")
	out := fs.String("out", "", "file the table is written to (default bench/load-latest.txt, bench/load-quick.txt in quick mode)")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(benchload.ScenarioNames(), ","))
	fs.DurationVar(&opts.Duration, "duration", 0, "override every timed scenario's length")
	fs.IntVar(&opts.WaitingClients, "clients", 0, "override the waiting-clients count (10,000; 2,000 quick)")
	fs.IntVar(&opts.StreamClients, "stream-clients", 0, "override the stream-clients count (10,000; 1,000 quick)")
	fs.StringVar(&opts.Dir, "dir", "", "keep binaries, stacks and logs here (default: a temporary directory, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *only != "" {
		opts.Scenarios = strings.Split(*only, ",")
	}
	root, err := os.Getwd()
	if err == nil {
		opts.Root, err = devstack.FindRoot(root)
	}
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(opts.Root, "bench", "load-latest.txt")
		if opts.Quick {
			*out = filepath.Join(opts.Root, "bench", "load-quick.txt")
		}
	}
	opts.Log = stderr

	rep, runErr := benchload.Run(ctx, opts)
	if rep == nil {
		return runErr
	}
	table := rep.Table()
	fmt.Fprint(stdout, "\n"+table)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return errors.Join(runErr, err)
	}
	if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(stderr, "bench-load: table written to %s (%s)\n", *out, time.Since(rep.Started).Round(time.Second))
	return runErr
}
