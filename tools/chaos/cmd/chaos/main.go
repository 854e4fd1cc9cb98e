// Command chaos runs the chaos soak (package chaos) against a local
// topology built from this repository and prints its report; it exits 1 on
// any violation. `make chaos` runs it:
//
//	go run ./tools/chaos/cmd/chaos -duration 5m -seed 7 -out bench/chaos-5m.txt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cryptopulse/tools/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "chaos:", err)
		}
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// run parses the flags, soaks and writes the report to stdout (and -out).
// failed reports violations; err means the soak could not run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (failed bool, err error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg chaos.Config
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Minute, "how long the load and the faults run")
	seed := fs.Uint64("seed", 0, "seed of the fault schedule (0: pick one from the clock and print it)")
	fs.BoolVar(&cfg.AppendOnly, "appendonly", false, "run Redis with appendonly yes, as the compose files do")
	fs.IntVar(&cfg.Clients, "clients", 12, "clients asking for prices in a loop")
	fs.IntVar(&cfg.Coins, "coins", 12, "coins the clients spread over (at most 15)")
	dir := fs.String("dir", "", "where the stack lives and logs (default: a new temp dir, removed if the soak passes)")
	out := fs.String("out", "", "also write the report to this file")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg.Seed = *seed
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	cfg.Dir = *dir
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "cp-chaos-"); err != nil {
			return false, err
		}
	}
	cfg.Progress = stderr
	fmt.Fprintf(stderr, "chaos: seed %d, %s, stack in %s\n", cfg.Seed, cfg.Duration, cfg.Dir)
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		return false, err
	}
	rep.Write(stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return rep.Failed(), err
		}
		rep.Write(f)
		if err := f.Close(); err != nil {
			return rep.Failed(), err
		}
	}
	if !rep.Failed() && *dir == "" {
		_ = os.RemoveAll(cfg.Dir)
	}
	return rep.Failed(), nil
}
