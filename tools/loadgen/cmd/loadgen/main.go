// Command loadgen sends GET requests at a fixed rate (open loop) and prints
// what it measured as one JSON object (see loadgen.Result):
//
//	loadgen -url 'http://127.0.0.1:3000/v1/price/{id}' -ids bitcoin,ethereum,solana \
//	    -rate 500 -duration 60s -H "Authorization: Bearer $TOKEN"
//
// With -ids, "{id}" in -url is replaced by each id, the first being the
// hottest under the Zipf distribution (-zipf, > 1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"cryptopulse/tools/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags http.Header

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// parseFlags turns the command line into a loadgen.Config.
func parseFlags(args []string, stderr io.Writer) (loadgen.Config, error) {
	var cfg loadgen.Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "target URL; {id} is replaced by each of -ids")
	ids := fs.String("ids", "", "comma-separated ids for {id}, hottest first")
	fs.Float64Var(&cfg.Rate, "rate", 100, "requests per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long requests keep arriving")
	fs.IntVar(&cfg.MaxRequests, "n", 0, "at most this many requests (0: rate x duration)")
	fs.Float64Var(&cfg.ZipfS, "zipf", 1.1, "Zipf exponent over -ids, > 1")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 10_000, "requests outstanding at most; more are dropped and counted")
	seed := fs.Uint64("seed", 1, "seed of the target sequence")
	header := headerFlags{}
	fs.Var(header, "H", `header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *url == "" {
		return cfg, errors.New("-url is required")
	}
	cfg.URLs = []string{*url}
	if *ids != "" {
		if !strings.Contains(*url, "{id}") {
			return cfg, errors.New("-ids needs {id} in -url")
		}
		cfg.URLs = nil
		for _, id := range strings.Split(*ids, ",") {
			if id = strings.TrimSpace(id); id != "" {
				cfg.URLs = append(cfg.URLs, strings.ReplaceAll(*url, "{id}", id))
			}
		}
	}
	cfg.Seed = *seed
	cfg.Header = http.Header(header)
	return cfg, nil
}
