// Package chaos is a soak test of the whole topology under faults: real
// nginx, gateways, fetchers, auth, Redis, PostgreSQL and the CoinGecko
// simulator on loopback (through devstack), steady price traffic from
// several clients, and, on a seeded schedule, SIGKILLed and restarted
// fetchers and gateways, rolling SIGTERM restarts, Redis restarted (empty,
// or from its append-only file), PostgreSQL stopped and started, and the
// simulator answering 500s, hanging or answering 429 with Retry-After.
//
// Every client request is recorded; afterwards Run checks what a user and an
// operator would: bounded waits, only documented statuses, failures only
// inside a fault's window, every 200 price in price_records exactly once,
// Redis and the gateways drained, and no service growing its goroutines or
// memory. It backs `make chaos` (cmd/chaos) and the short soak in e2e.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"cryptopulse/tools/devstack"
)

// Config describes a soak. Zero values take the defaults noted.
type Config struct {
	// Duration of the load (default 5m); faults fill it but the last
	// seconds, and the drain comes after.
	Duration time.Duration
	// Seed draws the fault schedule and the clients' coin choices.
	Seed uint64
	// AppendOnly runs Redis with appendonly yes, as the compose files do:
	// a Redis restart then keeps its data, and no price may be lost.
	AppendOnly bool
	// Clients (default 12) ask for prices in a loop; Coins (default 12)
	// is how many of the simulator's coins they spread over.
	Clients, Coins int
	// Gateways and Fetchers default to 2 each.
	Gateways, Fetchers int
	// Dir receives the stack (logs under Dir/stack/logs); required.
	Dir string
	// Root is the repository root, BinDir the built binaries (see
	// devstack.Build); empty BinDir builds them into Dir/bin.
	Root, BinDir string
	// Env overrides the services' settings (see DefaultEnv).
	Env map[string]string
	// Log receives the services' output; nil keeps it in the log files only.
	Log io.Writer
	// Progress, if set, gets a line per fault as the soak runs.
	Progress io.Writer
}

// DefaultEnv is what the services run with in a soak: the user throttle and
// the upstream budget out of the way (each has its own tests), a short
// batch window so many batches happen, the documented result timeout.
func DefaultEnv() map[string]string {
	return map[string]string{
		"THROTTLE_GLOBAL_LIMIT":   "1000000",
		"THROTTLE_LOGIN_LIMIT":    "1000",
		"COINGECKO_RATE_LIMIT":    "0",
		"BATCH_WINDOW_MS":         "1000",
		"BATCH_THRESHOLD":         "3",
		"BATCH_RESULT_TIMEOUT_MS": "8000",
		"BATCH_LEASE_MS":          "1000",
		"COINGECKO_TIMEOUT_MS":    "3000",
	}
}

// coinIDs are simulator coins the clients ask for.
var coinIDs = []string{"bitcoin", "ethereum", "tether", "binancecoin", "solana", "usd-coin", "ripple",
	"dogecoin", "the-open-network", "cardano", "shiba-inu", "avalanche-2", "tron", "polkadot", "chainlink"}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("chaos: Config.Dir is required")
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Minute
	}
	if c.Duration < 20*time.Second {
		return c, fmt.Errorf("chaos: duration %s is too short for the fault schedule (at least 20s)", c.Duration)
	}
	for _, d := range []struct {
		n   *int
		def int
	}{{&c.Clients, 12}, {&c.Coins, 12}, {&c.Gateways, 2}, {&c.Fetchers, 2}} {
		if *d.n <= 0 {
			*d.n = d.def
		}
	}
	c.Coins = min(c.Coins, len(coinIDs))
	env := DefaultEnv()
	for k, v := range c.Env {
		env[k] = v
	}
	c.Env = env
	for _, k := range []string{"BATCH_RESULT_TIMEOUT_MS", "BATCH_LEASE_MS"} {
		if ms, err := strconv.Atoi(env[k]); err != nil || ms <= 0 {
			return c, fmt.Errorf("chaos: %s=%q is not a positive number of milliseconds", k, env[k])
		}
	}
	return c, nil
}

func envMillis(env map[string]string, k string) time.Duration {
	ms, _ := strconv.Atoi(env[k])
	return time.Duration(ms) * time.Millisecond
}

// Run starts a stack, soaks it and returns the report; an error means the
// soak could not run at all (a violation is in the report, not an error).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if cfg.Root, err = devstack.FindRoot(wd); err != nil {
			return nil, err
		}
	}
	if cfg.BinDir == "" {
		cfg.BinDir = filepath.Join(cfg.Dir, "bin")
		if err := devstack.Build(ctx, cfg.Root, cfg.BinDir); err != nil {
			return nil, err
		}
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}

	rds, err := startRedis(filepath.Join(cfg.Dir, "redis"), cfg.AppendOnly)
	if err != nil {
		return nil, err
	}
	defer rds.kill()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	stack, err := devstack.Start(startCtx, devstack.Config{
		Root: cfg.Root, Dir: filepath.Join(cfg.Dir, "stack"), BinDir: cfg.BinDir,
		Gateways: cfg.Gateways, Fetchers: cfg.Fetchers, Nginx: true, Simulator: true,
		RedisURL: rds.URL(), Env: cfg.Env, Log: cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			_ = stack.Close()
		}
	}()

	timeout := envMillis(cfg.Env, "BATCH_RESULT_TIMEOUT_MS")
	lease := envMillis(cfg.Env, "BATCH_LEASE_MS")
	rep := &Report{Config: cfg, Timeout: timeout, Bound: timeout + time.Second,
		Allow: lease + 2*time.Second, LogDir: filepath.Join(cfg.Dir, "stack", "logs")}

	var tokens []string
	for range min(cfg.Clients, 4) {
		tok, err := login(startCtx, stack.URL, stack.AdminUser, stack.AdminPass)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, tok)
	}
	load := &loadGen{url: stack.URL, tokens: tokens, coins: coinIDs[:cfg.Coins], seed: cfg.Seed,
		timeout: timeout + 20*time.Second}
	if err := warmUp(startCtx, load); err != nil {
		return nil, err
	}

	procs := append(append(append([]*devstack.Proc(nil), stack.Auths...), stack.Gateways...), stack.Fetchers...)
	mctx, mstop := context.WithCancel(ctx)
	smp := &sampler{procs: procs, http: &http.Client{}}
	var mwg sync.WaitGroup
	mwg.Add(1)
	go func() { defer mwg.Done(); smp.run(mctx) }()

	plan := Plan(cfg.Seed, cfg.Duration)
	in := &injector{stack: stack, redis: rds, allow: rep.Allow, http: &http.Client{Timeout: 5 * time.Second}}
	lctx, lstop := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	lwg.Add(1)
	rep.LoadStart = time.Now()
	go func() { defer lwg.Done(); load.run(lctx, cfg.Clients) }()

	deadline := rep.LoadStart.Add(cfg.Duration)
	for _, st := range plan {
		// A fault must end, and be seen recovering, before the load does.
		if time.Now().Add(st.Gap+st.Hold+3*time.Second).After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(st.Gap)
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		w := in.run(rctx, st)
		rcancel()
		w.N = len(rep.Windows) + 1
		rep.Windows = append(rep.Windows, w)
		fmt.Fprintf(progress, "chaos: +%5.1fs fault %d %s on %s for %s (took %s)%s\n",
			w.Start.Sub(rep.LoadStart).Seconds(), w.N, w.Kind, w.Target, w.Hold, w.End.Sub(w.Start).Round(time.Millisecond), errSuffix(w.Err))
	}
	// The quiet tail: at least 3 s after the last repair.
	quiet := deadline
	if n := len(rep.Windows); n > 0 {
		quiet = maxTime(quiet, rep.Windows[n-1].End.Add(3*time.Second))
	}
	time.Sleep(time.Until(quiet))
	lstop()
	lwg.Wait()
	rep.LoadEnd = time.Now()
	rep.Records = load.records
	slices.SortFunc(rep.Records, func(a, b Record) int { return a.Start.Compare(b.Start) })

	rep.Drain = drain(ctx, rds, smp)
	mstop()
	mwg.Wait()
	rep.Samples = smp.all()
	rep.Rows, rep.DBErr = readRows(ctx, stack.DatabaseURL, rep.answeredBatches())

	closed = true
	if err := stack.Close(); err != nil {
		rep.CloseErr = err
	}
	rep.check()
	return rep, nil
}

// warmUp asks for every coin at once until each has answered 200, so the
// soak starts from a working system (groups created, prices there).
func warmUp(ctx context.Context, l *loadGen) error {
	hc := &http.Client{Timeout: l.timeout}
	errs := make([]error, len(l.coins))
	var wg sync.WaitGroup
	for i, coin := range l.coins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r := l.ask(hc, l.tokens[0], -1, coin)
				if r.Status == http.StatusOK {
					return
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("chaos: warm-up: %s never answered 200 (last %d %s %s)", coin, r.Status, r.Err, r.Message)
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": FAILED: " + err.Error()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
