// Command cgsim serves the CoinGecko simulator as a separate process, for
// end-to-end runs and local development. Point the fetcher's CoinGecko base
// URL at http://ADDR/api/v3 and drive faults through the /_sim/ routes.
//
// Every flag can also come from the environment (flags win): CGSIM_ADDR,
// CGSIM_PLAN, CGSIM_RATE_LIMIT, CGSIM_RATE_LIMIT_STYLE, CGSIM_LATENCY,
// CGSIM_CACHE_WINDOW, CGSIM_KEY.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"cryptopulse/tools/cgsim"
)

// shutdownGrace bounds how long in-flight calls get to finish on SIGTERM.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cgsim:", err)
		os.Exit(1)
	}
}

// run serves until ctx is cancelled. ready, if not nil, receives the bound
// address, which lets tests listen on port 0.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	cfg, addr, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	sim := cgsim.New(cfg)
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	plan := cfg.Plan
	if plan == "" {
		plan = "demo"
	}
	fmt.Fprintf(stderr, "cgsim: serving %s plan on http://%s/api/v3 (rate limit %d/min, latency %s, cache window %s)\n",
		plan, ln.Addr(), cfg.RateLimit, cfg.Latency, cfg.CacheWindow)
	if ready != nil {
		ready(ln.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	// Hung handlers would hold Shutdown for the whole grace period.
	sim.Close()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(stderr, "cgsim: stopped")
	return nil
}

// parseConfig reads flags over environment defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (cgsim.Config, string, error) {
	var cfg cgsim.Config
	envOr := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	envInt := func(k string, def int) (int, error) {
		v := getenv(k)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		return n, nil
	}
	envDur := func(k string, def time.Duration) (time.Duration, error) {
		v := getenv(k)
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		return d, nil
	}

	rate, err := envInt("CGSIM_RATE_LIMIT", 0)
	if err != nil {
		return cfg, "", err
	}
	latency, err := envDur("CGSIM_LATENCY", 0)
	if err != nil {
		return cfg, "", err
	}
	window, err := envDur("CGSIM_CACHE_WINDOW", 60*time.Second)
	if err != nil {
		return cfg, "", err
	}

	fs := flag.NewFlagSet("cgsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("CGSIM_ADDR", "127.0.0.1:8090"), "listen address")
	fs.StringVar(&cfg.Plan, "plan", envOr("CGSIM_PLAN", "demo"), "key rules to apply: demo or pro")
	fs.IntVar(&cfg.RateLimit, "rate-limit", rate, "calls per minute, 0 = unlimited")
	style := fs.String("rate-limit-style", envOr("CGSIM_RATE_LIMIT_STYLE", "retry_after_json"), "429 style: retry_after_json, headers_only_json or cloudflare_html")
	fs.DurationVar(&cfg.Latency, "latency", latency, "latency added to every API response")
	fs.DurationVar(&cfg.CacheWindow, "cache-window", window, "how long prices hold still")
	fs.StringVar(&cfg.APIKey, "key", envOr("CGSIM_KEY", ""), "the only API key accepted (empty: any key, keyless allowed on demo)")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.Plan != "demo" && cfg.Plan != "pro" {
		return cfg, "", fmt.Errorf("-plan must be demo or pro, not %q", cfg.Plan)
	}
	if cfg.RateLimit < 0 {
		return cfg, "", fmt.Errorf("-rate-limit must not be negative")
	}
	if cfg.CacheWindow <= 0 {
		return cfg, "", fmt.Errorf("-cache-window must be positive")
	}
	if cfg.RateLimitStyle, err = cgsim.ParseRateLimitStyle(*style); err != nil {
		return cfg, "", err
	}
	return cfg, *addr, nil
}
