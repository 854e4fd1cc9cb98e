// Command devstack runs the CryptoPulse topology from local binaries on
// loopback ports, without Docker: PostgreSQL, Redis, auth, gateways,
// fetchers and nginx on one public port.
//
//	devstack run    against the real CoinGecko (COINGECKO_BASE_URL, default https://api.coingecko.com)
//	devstack demo   against the bundled simulator, fully offline, with a curl walkthrough
//
// Counts and the port come from flags or the environment (GATEWAYS,
// FETCHERS, AUTHS, PORT); service settings from the environment and the
// repository's .env. Data and logs go under .data/. Ctrl-C stops everything.
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
	"strconv"
	"strings"
	"syscall"

	"cryptopulse/libs/config"
	"cryptopulse/tools/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// serviceVars are the settings passed from the environment to the services
// (besides every key .env.example names). The topology's own variables
// (PORT, HOST, INSTANCE_ID, REDIS_URL, DATABASE_URL, TRUSTED_PROXIES) are
// devstack's to set and are never passed on.
func serviceVars() []string {
	return []string{
		"LOG_LEVEL", "ADMIN_USER", "ADMIN_PASS", "JWT_SECRET", "JWT_EXPIRES_IN",
		"COINGECKO_BASE_URL", "COINGECKO_API_KEY",
		"BATCH_WINDOW_MS", "BATCH_THRESHOLD", "BATCH_RESULT_TIMEOUT_MS",
		"THROTTLE_TTL_MS", "THROTTLE_GLOBAL_LIMIT", "THROTTLE_LOGIN_LIMIT", "THROTTLE_LEASE_MS",
		"DB_POOL_SIZE", "SHUTDOWN_GRACE_MS", "PPROF_ADDR", "GOMEMLIMIT", "GOGC",
	}
}

// topologyVars are set by devstack for each instance.
func topologyVars() map[string]bool {
	return map[string]bool{
		"PORT": true, "HOST": true, "INSTANCE_ID": true, "REDIS_URL": true,
		"DATABASE_URL": true, "TRUSTED_PROXIES": true, "ENV_FILE": true,
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "run" && args[0] != "demo") {
		fmt.Fprintln(stderr, "usage: devstack run|demo [-gateways N] [-fetchers N] [-auths N] [-port P] [-dir .data]")
		return errors.New("expected run or demo")
	}
	mode := args[0]
	fs := flag.NewFlagSet("devstack "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	gateways := fs.Int("gateways", envInt(getenv, "GATEWAYS", 2), "gateway instances (env GATEWAYS)")
	fetchers := fs.Int("fetchers", envInt(getenv, "FETCHERS", 2), "fetcher instances (env FETCHERS)")
	auths := fs.Int("auths", envInt(getenv, "AUTHS", 1), "auth instances (env AUTHS)")
	port := fs.Int("port", envInt(getenv, "PORT", 3000), "nginx port, the API's public port (env PORT)")
	dataDir := fs.String("dir", ".data", "data and logs, relative to the repository root")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	for name, n := range map[string]int{"gateways": *gateways, "fetchers": *fetchers, "auths": *auths} {
		if n < 1 {
			return fmt.Errorf("-%s must be at least 1, got %d", name, n)
		}
	}

	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := devstack.FindRoot(wd)
	if err != nil {
		return err
	}
	dir := *dataDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	env, err := serviceEnv(root, getenv)
	if err != nil {
		return err
	}
	if mode == "demo" {
		// The simulator stands in for CoinGecko; a real key would only
		// trip its key checks.
		delete(env, "COINGECKO_BASE_URL")
		delete(env, "COINGECKO_API_KEY")
	}

	binDir := filepath.Join(dir, "bin")
	fmt.Fprintf(stdout, "devstack: building services into %s\n", binDir)
	if err := devstack.Build(ctx, root, binDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "devstack: starting PostgreSQL, Redis, %d auth, %d gateways, %d fetchers, nginx on :%d\n",
		*auths, *gateways, *fetchers, *port)
	s, err := devstack.Start(ctx, devstack.Config{
		Root:      root,
		Dir:       dir,
		BinDir:    binDir,
		Gateways:  *gateways,
		Fetchers:  *fetchers,
		Auths:     *auths,
		Nginx:     true,
		NginxPort: *port,
		Simulator: mode == "demo",
		Env:       env,
		Log:       stdout,
	})
	if err != nil {
		return err
	}
	for _, p := range s.Procs() {
		go func() {
			code, err := p.Wait()
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "devstack: %s exited on its own (code %d, %v); the others keep running; its log: %s\n",
					p.Name, code, err, filepath.Join(dir, "logs", p.Name+".log"))
			}
		}()
	}
	printBanner(stdout, s, mode, dir)

	<-ctx.Done()
	fmt.Fprintln(stdout, "devstack: stopping (nginx, auth and gateways, fetchers, then Redis and PostgreSQL)")
	if err := s.Close(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Fprintln(stdout, "devstack: stopped")
	return nil
}

// serviceEnv collects the service settings: every key of the repository's
// .env, then the variables the environment sets among serviceVars and the
// keys of .env.example (the environment wins, as the services themselves
// do), minus the topology's own.
func serviceEnv(root string, getenv func(string) string) (map[string]string, error) {
	env, err := config.ReadDotEnv(filepath.Join(root, ".env"))
	if err != nil {
		return nil, err
	}
	example, err := config.ReadDotEnv(filepath.Join(root, ".env.example"))
	if err != nil {
		return nil, err
	}
	keys := serviceVars()
	for k := range example {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if v := getenv(k); v != "" {
			env[k] = v
		}
	}
	for k := range topologyVars() {
		delete(env, k)
	}
	return env, nil
}

// envInt reads an integer setting, falling back to def when unset or bad
// (the flag's own parsing reports a bad explicit value).
func envInt(getenv func(string) string, key string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(getenv(key))); err == nil {
		return n
	}
	return def
}

func printBanner(w io.Writer, s *devstack.Stack, mode, dir string) {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("")
	line("CryptoPulse is up (%s).", mode)
	line("  API (nginx)     %s   Swagger UI: %s/docs", s.URL, s.URL)
	for _, group := range [][]*devstack.Proc{s.Auths, s.Gateways, s.Fetchers} {
		for _, p := range group {
			line("  %-15s %s", p.Name, p.URL())
		}
	}
	line("  Redis           %s   (redis-cli -u %s)", s.RedisURL, s.RedisURL)
	line("  PostgreSQL      %s", s.DatabaseURL)
	if s.SimURL != "" {
		line("  CoinGecko sim   %s   (upstream calls so far: curl %s/_sim/calls)", s.SimURL, s.SimURL)
	}
	line("  Logs            %s   (one file per instance, nginx access log included)", filepath.Join(dir, "logs"))
	if mode == "demo" {
		line("  Login           %s / %s", s.AdminUser, s.AdminPass)
	} else {
		line("  Login           %s (password: ADMIN_PASS from the environment or .env)", s.AdminUser)
	}
	if mode == "demo" {
		line("")
		line("Try it (another terminal):")
		line("  TOKEN=$(curl -s -X POST %s/auth/login -H 'Content-Type: application/json' \\", s.URL)
		line("    -d '{\"username\":\"%s\",\"password\":\"%s\"}' | sed -E 's/.*\"accessToken\":\"([^\"]+)\".*/\\1/')", s.AdminUser, s.AdminPass)
		line("  curl -s -H \"Authorization: Bearer $TOKEN\" %s/v1/price/bitcoin; echo", s.URL)
		line("  # three requests for one coin make one batch, one upstream call:")
		line("  for i in 1 2 3; do curl -s -H \"Authorization: Bearer $TOKEN\" %s/v1/price/ethereum & done; wait; echo", s.URL)
		line("  curl -s %s/_sim/calls; echo", s.SimURL)
		line("  curl -s -H \"Authorization: Bearer $TOKEN\" '%s/v1/price/bitcoin/history?limit=5'; echo", s.URL)
		line("  # which gateway answered:")
		line("  for i in 1 2 3 4; do curl -s -o /dev/null -D - %s/health | grep -i x-instance-id; done", s.URL)
	}
	line("")
	line("Ctrl-C stops everything.")
	fmt.Fprint(w, b.String())
}
