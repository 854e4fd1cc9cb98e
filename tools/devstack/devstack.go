// Package devstack runs the whole CryptoPulse topology from local binaries
// on loopback ports: PostgreSQL and Redis (through testkit), the CoinGecko
// simulator, auth, gateways and fetchers, and nginx in front of them with
// the repository's own deploy/nginx/nginx.conf rewritten for local ports.
//
// It backs `make run` and `make demo` (see cmd/devstack) and the end-to-end
// tests, which use the returned Stack to stop, kill, restart and add
// instances the way an operator would.
package devstack

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lib/pq"

	"cryptopulse/testkit"
)

// buildTarget is a binary Build produces and the package it comes from;
// go build names the binary after the package's last path element.
type buildTarget struct{ bin, pkg string }

// buildTargets lists what Build compiles.
func buildTargets() []buildTarget {
	return []buildTarget{
		{"auth", "./services/auth"},
		{"gateway", "./services/gateway"},
		{"fetcher", "./services/fetcher"},
		{"cgsim", "./tools/cgsim/cmd/cgsim"},
	}
}

// databaseName is the database a stack creates in its own PostgreSQL.
const databaseName = "cryptopulse"

// Config describes a stack to start. The zero value of every field but Root
// and Dir has a useful default.
type Config struct {
	// Root is the repository root; it holds deploy/nginx/nginx.conf. Empty
	// means the nearest directory at or above the working directory that
	// holds go.work.
	Root string
	// Dir receives everything the stack writes: the PostgreSQL cluster (kept
	// across runs), Redis's working directory, one log file per instance
	// under logs/, nginx's generated config and temp files.
	Dir string
	// BinDir holds the binaries Build produced; empty means Dir/bin.
	BinDir string
	// Gateways, Fetchers and Auths are instance counts; zero means the
	// defaults 2, 2 and 1, a negative count means none (a stack without
	// fetchers, to see requests time out).
	Gateways, Fetchers, Auths int
	// Nginx starts nginx in front of the gateways and auth, on NginxPort
	// (0 picks a free port).
	Nginx     bool
	NginxPort int
	// Simulator starts the CoinGecko simulator from BinDir and points
	// COINGECKO_BASE_URL at it; SimArgs are extra flags for it (say
	// "-rate-limit", "1000").
	Simulator bool
	SimArgs   []string
	// RedisURL, when set, is used instead of starting a Redis: one the
	// caller runs and restarts itself (with persistence, say, or listening
	// on a namespace link too), or the REDIS_URL that goes with
	// REDIS_SENTINELS in Env. Stack.Redis is then nil.
	RedisURL string
	// SimHost is the address the simulator listens on, 127.0.0.1 when empty;
	// a namespace link's host address lets a fetcher inside reach it.
	SimHost string
	// DatabaseURL, when set, is used instead of starting PostgreSQL, so
	// tests can share one cluster (testkit's NewDatabase) across stacks.
	DatabaseURL string
	// Env adds to or overrides the environment of every service
	// (BATCH_WINDOW_MS, JWT_SECRET, COINGECKO_BASE_URL, ...). PORT and
	// INSTANCE_ID are the stack's own and cannot be overridden.
	Env map[string]string
	// Log receives every child's output, each line prefixed with the
	// instance name ("[gateway-1] ..."); nil discards it (the per-instance
	// files under Dir/logs still have it).
	Log io.Writer
}

// Build compiles the services and the simulator with `go build` from root
// into binDir as auth, gateway, fetcher and cgsim.
func Build(ctx context.Context, root, binDir string) error {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return fmt.Errorf("devstack: build: %w", err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("devstack: build: %w", err)
	}
	// One go build for all: it compiles the packages in parallel and, with
	// -o naming a directory, names each binary after its package.
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, t := range buildTargets() {
		args = append(args, t.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("devstack: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// FindRoot returns the nearest directory at or above dir that holds go.work:
// the repository root.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("devstack: no go.work at or above %s", dir)
		}
	}
}

// Stack is a running topology. The instance slices grow with AddGateway and
// AddFetcher; read them from the goroutine that adds, or after it is done.
type Stack struct {
	// URL is where clients go: nginx when it runs, else gateway-1.
	URL string
	// AuthURL serves POST /auth/login: nginx when it runs, else auth-1.
	AuthURL string
	// RedisURL and DatabaseURL are what the services were given.
	RedisURL, DatabaseURL string
	// SimURL is the simulator's base URL (no /api/v3), empty without it.
	SimURL string
	// AdminUser, AdminPass and JWTSecret are the credentials the services
	// run with, generated for a dev stack unless Config.Env set them.
	AdminUser, AdminPass, JWTSecret string

	// Redis and Postgres are the stack's own servers, for outage tests
	// (Redis.Stop, Postgres.Start, ...). Redis is nil when Config.RedisURL
	// was given, Postgres when Config.DatabaseURL was.
	Redis    *testkit.Redis
	Postgres *testkit.Postgres

	Gateways, Fetchers, Auths []*Proc
	// Nginx and Sim are nil when not started.
	Nginx *Proc
	Sim   *Proc

	cfg      Config
	env      map[string]string // common environment of every service
	sink     *sink
	bin      map[string]string // binary paths by kind
	nginxBin string

	mu     sync.Mutex // serialises AddGateway, AddFetcher and Close
	next   map[string]int
	closed bool
}

// Start starts the stack described by cfg and returns once every instance
// answers its health check (and nginx routes to the gateways). On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg, err = withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	s := &Stack{
		cfg:  cfg,
		sink: &sink{w: cfg.Log},
		next: map[string]int{},
		bin:  map[string]string{},
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	for _, d := range []string{cfg.Dir, s.logDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
	}
	if err := s.findBinaries(); err != nil {
		return nil, err
	}

	s.RedisURL = cfg.RedisURL
	if s.RedisURL == "" {
		if s.Redis, err = testkit.LaunchRedis(filepath.Join(cfg.Dir, "redis"), 0); err != nil {
			return nil, err
		}
		s.RedisURL = s.Redis.URL()
	}
	s.DatabaseURL = cfg.DatabaseURL
	if s.DatabaseURL == "" {
		if s.Postgres, err = testkit.LaunchPostgres(filepath.Join(cfg.Dir, "postgres"), 0); err != nil {
			return nil, err
		}
		if s.DatabaseURL, err = ensureDatabase(ctx, s.Postgres, databaseName); err != nil {
			return nil, err
		}
	}
	if err := s.buildEnv(); err != nil {
		return nil, err
	}

	if cfg.Simulator {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		if cfg.SimHost != "" {
			_, port, _ := net.SplitHostPort(addr)
			addr = net.JoinHostPort(cfg.SimHost, port)
		}
		s.Sim = s.newProc("cgsim", addr, s.bin["cgsim"],
			append([]string{"-addr", addr}, cfg.SimArgs...), os.Environ(), "/_sim/calls")
		sim := s.Sim
		sim.movable(func(string) { sim.args = append([]string{"-addr", sim.Addr}, cfg.SimArgs...) })
		if err := sim.firstStart(ctx); err != nil {
			return nil, err
		}
		s.SimURL = s.Sim.URL()
		if _, set := cfg.Env["COINGECKO_BASE_URL"]; !set {
			s.env["COINGECKO_BASE_URL"] = s.SimURL
		}
	}

	// Every service at once: migrations are safe to run concurrently, and
	// waiting for each in turn would only add up their start times.
	var procs []*Proc
	for _, k := range []struct {
		kind string
		n    int
		list *[]*Proc
	}{{"auth", cfg.Auths, &s.Auths}, {"gateway", cfg.Gateways, &s.Gateways}, {"fetcher", cfg.Fetchers, &s.Fetchers}} {
		for range max(k.n, 0) {
			p, err := s.newService(k.kind, nil)
			if err != nil {
				return nil, err
			}
			*k.list = append(*k.list, p)
			procs = append(procs, p)
		}
	}
	if err := startAll(ctx, procs); err != nil {
		return nil, err
	}

	s.URL, s.AuthURL = "", ""
	if len(s.Gateways) > 0 {
		s.URL = s.Gateways[0].URL()
	}
	if len(s.Auths) > 0 {
		s.AuthURL = s.Auths[0].URL()
	}
	if cfg.Nginx {
		if err := s.startNginx(ctx); err != nil {
			return nil, err
		}
		s.URL = s.Nginx.URL()
		s.AuthURL = s.Nginx.URL()
	}
	return s, nil
}

// withDefaults fills in cfg's defaults and makes its paths absolute.
func withDefaults(cfg Config) (Config, error) {
	if cfg.Dir == "" {
		return cfg, errors.New("devstack: Config.Dir is required")
	}
	var err error
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return cfg, fmt.Errorf("devstack: %w", err)
	}
	if cfg.Root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return cfg, fmt.Errorf("devstack: %w", err)
		}
		if cfg.Root, err = FindRoot(wd); err != nil {
			return cfg, err
		}
	}
	if cfg.BinDir == "" {
		cfg.BinDir = filepath.Join(cfg.Dir, "bin")
	}
	if cfg.BinDir, err = filepath.Abs(cfg.BinDir); err != nil {
		return cfg, fmt.Errorf("devstack: %w", err)
	}
	for _, c := range []struct {
		n   *int
		def int
	}{{&cfg.Gateways, 2}, {&cfg.Fetchers, 2}, {&cfg.Auths, 1}} {
		if *c.n == 0 {
			*c.n = c.def
		}
	}
	if cfg.Nginx && cfg.Gateways < 1 {
		return cfg, errors.New("devstack: nginx needs at least one gateway")
	}
	if cfg.Nginx && cfg.Auths < 1 {
		return cfg, errors.New("devstack: nginx needs at least one auth instance")
	}
	return cfg, nil
}

// findBinaries checks that every binary the stack needs exists before
// anything starts, so a missing build fails fast with a useful message.
func (s *Stack) findBinaries() error {
	for _, t := range buildTargets() {
		p := filepath.Join(s.cfg.BinDir, t.bin)
		if t.bin == "cgsim" && !s.cfg.Simulator {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("devstack: %s: %w (run devstack.Build first)", p, err)
		}
		s.bin[t.bin] = p
	}
	if s.cfg.Nginx {
		for _, c := range []string{"nginx", "/usr/sbin/nginx"} {
			if p, err := exec.LookPath(c); err == nil {
				s.nginxBin = p
				return nil
			}
		}
		return errors.New("devstack: nginx not found in PATH or /usr/sbin: run scripts/install-deps.sh")
	}
	return nil
}

// buildEnv prepares the environment every service shares.
func (s *Stack) buildEnv() error {
	secret, err := randomHex(32)
	if err != nil {
		return err
	}
	env := map[string]string{
		// Hermetic: a .env in some working directory must not change the
		// stack; callers pass what they want through Config.Env.
		"ENV_FILE":           os.DevNull,
		"HOST":               "127.0.0.1",
		"LOG_LEVEL":          "info",
		"REDIS_URL":          s.RedisURL,
		"DATABASE_URL":       s.DatabaseURL,
		"JWT_SECRET":         secret,
		"ADMIN_USER":         "admin",
		"ADMIN_PASS":         "admin",
		"COINGECKO_BASE_URL": "https://api.coingecko.com",
		// nginx reaches the services over loopback.
		"TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
	}
	// What a process needs to run at all, or what a developer sets to
	// inspect it (coverage, race reports, tracebacks).
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "GOCOVERDIR", "GORACE", "GOTRACEBACK", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range s.cfg.Env {
		env[k] = v
	}
	s.env = env
	s.AdminUser, s.AdminPass, s.JWTSecret = env["ADMIN_USER"], env["ADMIN_PASS"], env["JWT_SECRET"]
	return nil
}

func (s *Stack) logDir() string { return filepath.Join(s.cfg.Dir, "logs") }

// LogDir holds one log file per instance, <name>.log, for tests that look
// for what the services logged across restarts.
func (s *Stack) LogDir() string { return s.logDir() }

// newProc makes a Proc that logs through the stack.
func (s *Stack) newProc(name, addr, bin string, args, env []string, health string) *Proc {
	return &Proc{
		Name:    name,
		Addr:    addr,
		bin:     bin,
		args:    args,
		env:     env,
		dir:     s.cfg.Dir,
		logDir:  s.logDir(),
		health:  health,
		stopSig: syscall.SIGTERM,
		sink:    s.sink,
	}
}

// Netns places an instance in a network namespace the caller made (see
// testkit.Netns): it runs under `ip netns exec Name` and listens on Host.
type Netns struct {
	// Name is the namespace's name for `ip netns`.
	Name string
	// Host is the namespace's address the instance listens on; the host
	// (nginx, health checks) must reach it.
	Host string
	// Env overrides the stack's environment for this instance, for the
	// addresses that differ inside (DATABASE_URL, REDIS_URL).
	Env map[string]string
}

// newService makes the next instance of kind (auth, gateway, fetcher) on a
// free port, named kind-N, without starting it; in ns when ns is not nil.
func (s *Stack) newService(kind string, ns *Netns) (*Proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	if ns != nil {
		addr = net.JoinHostPort(ns.Host, port)
	}
	s.next[kind]++
	name := kind + "-" + strconv.Itoa(s.next[kind])
	env := make(map[string]string, len(s.env)+2)
	for k, v := range s.env {
		env[k] = v
	}
	env["PORT"] = port
	env["INSTANCE_ID"] = name
	var p *Proc
	if ns == nil {
		p = s.newProc(name, addr, s.bin[kind], nil, envList(env), "/health")
	} else {
		for k, v := range ns.Env {
			env[k] = v
		}
		env["HOST"] = ns.Host
		// ip execs the service after entering the namespace, so signals
		// reach the service itself.
		p = s.newProc(name, addr, "ip", []string{"netns", "exec", ns.Name, s.bin[kind]}, envList(env), "/health")
	}
	p.instance = name
	p.movable(func(port string) {
		env["PORT"] = port
		p.env = envList(env)
	})
	return p, nil
}

// movable lets a first start move p to another free port on the same host;
// tell then updates what tells the process its port (p.Addr already has it).
func (p *Proc) movable(tell func(port string)) {
	p.movePort = func() error {
		moved, err := freeAddr()
		if err != nil {
			return err
		}
		_, port, _ := net.SplitHostPort(moved)
		host, _, _ := net.SplitHostPort(p.Addr)
		p.Addr = net.JoinHostPort(host, port)
		tell(port)
		return nil
	}
}

// startAll starts procs for the first time, concurrently, and waits until
// all are healthy.
func startAll(ctx context.Context, procs []*Proc) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.firstStart(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startNginx writes the nginx config and starts nginx.
func (s *Stack) startNginx(ctx context.Context) error {
	port := s.cfg.NginxPort
	if port == 0 {
		var err error
		if port, err = testkit.FreePort(); err != nil {
			return err
		}
	}
	dir := filepath.Join(s.cfg.Dir, "nginx")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "temp", t), 0o755); err != nil {
			return fmt.Errorf("devstack: nginx: %w", err)
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Nginx = s.newProc("nginx", addr, s.nginxBin,
		[]string{"-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"},
		os.Environ(), "/nginx-health")
	s.Nginx.stopSig = syscall.SIGQUIT
	if err := s.writeNginxConfig(); err != nil {
		return err
	}
	if err := s.Nginx.Start(ctx); err != nil {
		return err
	}
	// /nginx-health is nginx's own; make sure it reaches a gateway too.
	return s.WaitRouted(ctx, s.Gateways[0].Name)
}

// writeNginxConfig renders deploy/nginx/nginx.conf for the current gateways.
func (s *Stack) writeNginxConfig() error {
	src, err := os.ReadFile(filepath.Join(s.cfg.Root, NginxConfigPath))
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	dir := filepath.Join(s.cfg.Dir, "nginx")
	o := NginxLocal{
		Listen:    s.Nginx.Addr,
		Dir:       dir,
		AccessLog: filepath.Join(s.logDir(), "nginx-access.log"),
	}
	for _, g := range s.Gateways {
		o.Gateways = append(o.Gateways, g.Addr)
	}
	for _, a := range s.Auths {
		o.Auths = append(o.Auths, a.Addr)
	}
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody and could not use the temp
		// paths inside a private (0700) test directory.
		o.User = "root"
	}
	// Even root cannot go past the hard limit without CAP_SYS_RESOURCE,
	// which containers (CI) usually lack.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < 1<<31 {
		o.MaxFiles = int(lim.Max)
	}
	conf, err := LocalNginxConfig(src, o)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "nginx.conf"), conf, 0o644)
}

// WaitRouted polls GET /health through nginx until the gateway named
// answers it, or ctx is done (at most 20 s). After a reload nginx takes a
// moment to route to a new gateway; after a gateway failed (stopped, killed)
// nginx keeps it out of rotation for fail_timeout (10 s) even once it is
// back, so a rolling restart must wait for this before stopping the next
// gateway, or both may be out at once. Without nginx it returns at once.
func (s *Stack) WaitRouted(ctx context.Context, name string) error {
	if s.Nginx == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// A fresh connection per probe: a kept-alive one could belong to a
	// worker still running the old configuration.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Nginx.URL()+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			last = resp.Status + " from " + resp.Header.Get("X-Instance-Id")
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Instance-Id") == name {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: nginx does not route to %s: %w (last: %s); nginx output:\n%s",
				name, ctx.Err(), last, s.Nginx.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// AddGateway starts one more gateway, adds it to nginx's upstream (a
// reload, as an operator would do) and returns once nginx routes to it.
func (s *Stack) AddGateway(ctx context.Context) (*Proc, error) { return s.AddGatewayIn(ctx, nil) }

// AddGatewayIn is AddGateway for a gateway inside a network namespace (nil:
// none), for partition tests.
func (s *Stack) AddGatewayIn(ctx context.Context, ns *Netns) (*Proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("devstack: stack is closed")
	}
	p, err := s.newService("gateway", ns)
	if err != nil {
		return nil, err
	}
	if err := p.firstStart(ctx); err != nil {
		return nil, err
	}
	s.Gateways = append(s.Gateways, p)
	if s.Nginx == nil {
		return p, nil
	}
	if err := s.writeNginxConfig(); err != nil {
		return p, err
	}
	if err := s.Nginx.Signal(syscall.SIGHUP); err != nil {
		return p, err
	}
	return p, s.WaitRouted(ctx, p.Name)
}

// AddFetcher starts one more fetcher, as `--scale fetcher=N` does: it joins
// the consumer group by itself.
func (s *Stack) AddFetcher(ctx context.Context) (*Proc, error) { return s.AddFetcherIn(ctx, nil) }

// AddFetcherIn is AddFetcher for a fetcher inside a network namespace (nil:
// none), for partition tests.
func (s *Stack) AddFetcherIn(ctx context.Context, ns *Netns) (*Proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("devstack: stack is closed")
	}
	p, err := s.newService("fetcher", ns)
	if err != nil {
		return nil, err
	}
	if err := p.firstStart(ctx); err != nil {
		return nil, err
	}
	s.Fetchers = append(s.Fetchers, p)
	return p, nil
}

// Procs returns every process of the stack: nginx, auth, gateways, fetchers
// and the simulator, in that order, skipping those not started.
func (s *Stack) Procs() []*Proc {
	var all []*Proc
	if s.Nginx != nil {
		all = append(all, s.Nginx)
	}
	all = append(all, s.Auths...)
	all = append(all, s.Gateways...)
	all = append(all, s.Fetchers...)
	if s.Sim != nil {
		all = append(all, s.Sim)
	}
	return all
}

// Close stops everything, front to back so no request is cut off on its
// way: nginx (gracefully), then auth and gateways, then fetchers (they finish
// the batches they hold), then the simulator, Redis and PostgreSQL. Each
// process gets SIGTERM and is killed if it has not exited in time. The error
// names every process that did not exit cleanly with code 0. Calling Close
// again does nothing.
func (s *Stack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	stop := func(procs ...*Proc) {
		var wg sync.WaitGroup
		perr := make([]error, len(procs))
		for i, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				perr[i] = p.Stop(context.Background())
			}()
		}
		wg.Wait()
		errs = append(errs, perr...)
	}
	if s.Nginx != nil {
		stop(s.Nginx)
	}
	stop(append(append([]*Proc(nil), s.Auths...), s.Gateways...)...)
	stop(s.Fetchers...)
	if s.Sim != nil {
		stop(s.Sim)
	}
	if s.Redis != nil {
		errs = append(errs, s.Redis.Close())
	}
	if s.Postgres != nil {
		errs = append(errs, s.Postgres.Close())
	}
	return errors.Join(errs...)
}

// ensureDatabase creates the named database unless it exists (a dev stack
// reuses its cluster across runs) and returns its URL.
func ensureDatabase(ctx context.Context, pg *testkit.Postgres, name string) (string, error) {
	db, err := sql.Open("postgres", pg.AdminURL())
	if err != nil {
		return "", fmt.Errorf("devstack: postgres: %w", err)
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("devstack: postgres: %w", err)
	}
	if !exists {
		if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
			return "", fmt.Errorf("devstack: create database %s: %w", name, err)
		}
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", pg.Addr, name), nil
}

// freeAddr returns a free loopback "127.0.0.1:port".
func freeAddr() (string, error) {
	port, err := testkit.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// randomHex returns n random bytes in hex, for generated dev secrets.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devstack: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
