// Package benchload is the load benchmark behind `make bench-load`: it starts
// the whole topology with real nginx (tools/devstack) once per scenario, so
// each gets its own fetcher settings and a fresh Redis and simulator, drives
// it with wrk (closed loop) or tools/loadgen (open loop, fixed rate), and
// renders one table: requests per second, p50, p99, non-2xx answers by
// status, upstream calls, gateway and fetcher peak RSS, ratio to the same
// run's ceiling (GET /health through nginx) and a PASS/FAIL against each
// scenario's target.
//
// With Options.Base it also builds another git revision and runs every
// scenario on both builds, so before and after stand side by side in one
// table, measured in the same run against the same ceiling.
package benchload

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the shared PostgreSQL's driver

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// Options configure a run. The zero value runs every scenario in full mode
// on the current tree.
type Options struct {
	// Root is the repository root; empty finds it from the working
	// directory (the nearest go.work).
	Root string
	// Dir receives binaries, stacks and logs; empty means a temporary
	// directory, removed afterwards.
	Dir string
	// Base, when set, is a git revision built and measured too.
	Base string
	// Quick shortens every scenario (seconds each, 2,000 waiting clients).
	Quick bool
	// Scenarios names the scenarios to run (see ScenarioNames); empty means
	// all. The ceiling always runs: every ratio needs it.
	Scenarios []string
	// Duration, when positive, overrides how long each timed scenario runs.
	Duration time.Duration
	// WaitingClients, when positive, overrides the waiting-clients count.
	WaitingClients int
	// StreamClients, when positive, overrides the stream clients count
	// (10,000; 1,000 quick).
	StreamClients int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Build is one set of binaries the scenarios run on.
type Build struct {
	// Label names it in the table: "current" or "base <rev>".
	Label string
	// Rev is what git says it is (a short hash, "+dirty" for local edits).
	Rev    string
	binDir string
}

// Row is one scenario's results, one per build, in Report.Builds order.
type Row struct {
	Scenario Scenario
	Results  []Measurement
}

// Report is what a run measured.
type Report struct {
	Started  time.Time
	Finished time.Time
	Quick    bool
	Builds   []Build
	// Ceiling is GET /health through nginx on the current build.
	Ceiling Measurement
	Rows    []Row
	// Notes are facts about the run people need to read the numbers: file
	// descriptor limits, nginx's limits, how coins were chosen.
	Notes []string
}

// Common settings of every stack.
const (
	gateways = 2
	fetchers = 2
	// resultTimeout is the gateways' default BATCH_RESULT_TIMEOUT_MS, which
	// the open-loop p99 must stay below.
	resultTimeout = 8 * time.Second
	// batchWindow is the default BATCH_WINDOW_MS a lone request waits out.
	batchWindow = 5 * time.Second
	// budget is the default COINGECKO_RATE_LIMIT, calls per 60 s.
	budget = 30
)

// harness is one run's shared state.
type harness struct {
	opts     Options
	root     string
	dir      string
	wrk      string
	pg       *testkit.Postgres
	dbs      int
	log      io.Writer
	adminPwd string
	secret   string
	ceiling  float64 // requests per second of the ceiling
	nofile   syscall.Rlimit
}

// Run builds, starts and measures every selected scenario and returns the
// report. An error means the run itself broke (a build or a stack failed);
// targets missed are not errors, only FAIL cells.
func Run(ctx context.Context, opts Options) (_ *Report, err error) {
	h := &harness{opts: opts, log: opts.Log}
	if h.log == nil {
		h.log = io.Discard
	}
	scenarios, err := selectScenarios(opts.Scenarios)
	if err != nil {
		return nil, err
	}
	if h.root = opts.Root; h.root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if h.root, err = devstack.FindRoot(wd); err != nil {
			return nil, err
		}
	}
	if h.wrk, err = findWrk(); err != nil {
		return nil, err
	}
	if h.dir = opts.Dir; h.dir == "" {
		if h.dir, err = os.MkdirTemp("", "benchload-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(h.dir)
	}
	if h.dir, err = filepath.Abs(h.dir); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Quick: opts.Quick}
	rep.Notes = append(rep.Notes, h.raiseNofile())
	if h.adminPwd, err = randomHex(16); err != nil {
		return nil, err
	}
	if h.secret, err = randomHex(32); err != nil {
		return nil, err
	}

	if rep.Builds, err = h.build(ctx); err != nil {
		return nil, err
	}
	current := rep.Builds[len(rep.Builds)-1]

	h.logf("starting PostgreSQL (shared by every stack, a fresh database each)")
	if h.pg, err = testkit.LaunchPostgres(filepath.Join(h.dir, "postgres"), 0); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, h.pg.Close()) }()

	h.logf("ceiling: GET /health through nginx")
	rep.Ceiling = h.runScenario(ctx, ceilingScenario(), current)
	if rep.Ceiling.Err != nil {
		return rep, fmt.Errorf("benchload: ceiling: %w", rep.Ceiling.Err)
	}
	h.ceiling = rep.Ceiling.RPS
	h.logf("ceiling: %.0f req/s", h.ceiling)

	var errs []error
	for _, sc := range scenarios {
		switch sc.Name {
		case "waiting":
			sc.Title = fmt.Sprintf("%d clients waiting out one 5 s window, 10 coins", h.waitingClients())
		case "stream":
			sc.Title = fmt.Sprintf("%d stream clients over 2 gateways, 1 of 10 coins each (p50/p99: fetch → client)", h.streamClients())
		case "failover":
			sc.Title = fmt.Sprintf("gateway SIGKILLed under %d stream clients, reconnect via nginx", h.failoverClients())
		}
		row := Row{Scenario: sc}
		for _, b := range rep.Builds {
			h.logf("%s on %s", sc.Name, b.Label)
			m := h.runScenario(ctx, sc, b)
			if m.Err != nil {
				errs = append(errs, fmt.Errorf("benchload: %s on %s: %w", sc.Name, b.Label, m.Err))
				h.logf("%s on %s: %v", sc.Name, b.Label, m.Err)
			} else {
				m.Pass, m.Why = sc.check(h, m)
				h.logf("%s on %s: %s", sc.Name, b.Label, summary(m, h.ceiling))
			}
			row.Results = append(row.Results, m)
			if ctx.Err() != nil {
				break
			}
		}
		rep.Rows = append(rep.Rows, row)
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
	}
	rep.Notes = append(rep.Notes, h.nginxNote(scenarios))
	rep.Finished = time.Now().UTC()
	return rep, errors.Join(errs...)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "bench-load: "+format+"\n", args...)
}

// raiseNofile lifts the soft open-files limit to the hard one, for the
// waiting clients (one descriptor each here, two in nginx, one in a
// gateway); the stack's processes inherit it. Setting it explicitly also
// stops Go from restoring the old soft limit in the children it starts.
func (h *harness) raiseNofile() string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "open files: cannot read RLIMIT_NOFILE: " + err.Error()
	}
	before := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("open files: soft limit %d, hard %d; raising it failed: %v", before, lim.Max, err)
	}
	h.nofile = lim
	return fmt.Sprintf("open files: soft limit %d raised to the hard limit %d for the harness and every process of the stack", before, lim.Max)
}

// nginxNote says what nginx may hold for the waiting clients, and what the
// hard limit leaves of that.
func (h *harness) nginxNote(scenarios []Scenario) string {
	clients := 0
	for _, s := range scenarios {
		if s.Name == "waiting" {
			clients = h.waitingClients()
		}
	}
	conf, _ := os.ReadFile(filepath.Join(h.lastStackDir(), "nginx", "nginx.conf"))
	wc, rl := directive(conf, "worker_connections"), directive(conf, "worker_rlimit_nofile")
	note := fmt.Sprintf("nginx (generated config): worker_connections %s, worker_rlimit_nofile %s, %d worker(s)", wc, rl, runtime.NumCPU())
	if clients == 0 {
		return note
	}
	need := 2*clients + 16
	note += fmt.Sprintf("; %d waiting clients need about %d descriptors in nginx (client and upstream connection each)", clients, need)
	if h.nofile.Max > 0 && uint64(need) > h.nofile.Max {
		note += fmt.Sprintf(", more than the hard limit %d allows one worker: if the kernel hands one worker more than %d of the clients, the rest fail there (the limit cannot be raised without CAP_SYS_RESOURCE)", h.nofile.Max, (h.nofile.Max-16)/2)
	} else {
		note += ", within the limits"
	}
	return note
}

// directive returns the value of a "name value;" line of an nginx config.
func directive(conf []byte, name string) string {
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ";"))
		if len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return "?"
}

// build compiles the current tree and, with Options.Base, that revision
// (in a temporary git worktree, removed afterwards). The current build
// comes last.
func (h *harness) build(ctx context.Context) ([]Build, error) {
	var builds []Build
	if h.opts.Base != "" {
		b, err := h.buildBase(ctx, h.opts.Base)
		if err != nil {
			return nil, err
		}
		builds = append(builds, b)
	}
	cur := Build{Label: "current", Rev: gitRev(h.root), binDir: filepath.Join(h.dir, "bin", "current")}
	h.logf("building the current tree (%s)", cur.Rev)
	if err := devstack.Build(ctx, h.root, cur.binDir); err != nil {
		return nil, err
	}
	return append(builds, cur), nil
}

func (h *harness) buildBase(ctx context.Context, rev string) (Build, error) {
	out, err := git(ctx, h.root, "rev-parse", "--verify", "--short", rev+"^{commit}")
	if err != nil {
		return Build{}, fmt.Errorf("benchload: BASE=%s is not a commit: %w", rev, err)
	}
	short := strings.TrimSpace(out)
	tree := filepath.Join(h.dir, "base-src")
	h.logf("building base %s (%s) in a temporary worktree", rev, short)
	if _, err := git(ctx, h.root, "worktree", "add", "--detach", tree, short); err != nil {
		return Build{}, fmt.Errorf("benchload: %w", err)
	}
	defer func() {
		if _, err := git(context.Background(), h.root, "worktree", "remove", "--force", tree); err != nil {
			h.logf("removing the base worktree: %v", err)
		}
	}()
	b := Build{Label: "base " + rev, Rev: short, binDir: filepath.Join(h.dir, "bin", "base")}
	if err := devstack.Build(ctx, tree, b.binDir); err != nil {
		return Build{}, err
	}
	return b, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// gitRev is the current tree's short hash, "+dirty" with uncommitted
// changes, or "unknown" outside git.
func gitRev(root string) string {
	ctx := context.Background()
	out, err := git(ctx, root, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(out)
	if st, err := git(ctx, root, "status", "--porcelain", "--untracked-files=no"); err == nil && strings.TrimSpace(st) != "" {
		rev += "+dirty"
	}
	return rev
}

// stackRun is a started stack and what a scenario needs to drive it.
type stackRun struct {
	*devstack.Stack
	dir   string
	token string
}

// startStack starts a topology on build b with the scenario's settings.
func (h *harness) startStack(ctx context.Context, sc Scenario, b Build) (*stackRun, error) {
	h.dbs++
	dbName := fmt.Sprintf("bench_%d", h.dbs)
	if err := h.createDatabase(ctx, dbName); err != nil {
		return nil, err
	}
	env := map[string]string{
		"THROTTLE_GLOBAL_LIMIT": "10000000",
		// As docker-compose.multi.yml runs the gateways: a soft heap limit,
		// so garbage from thousands of waiting clients does not double RSS.
		"GOMEMLIMIT": "120MiB",
		"ADMIN_USER": "bench",
		"ADMIN_PASS": h.adminPwd,
		"JWT_SECRET": h.secret,
	}
	for k, v := range sc.Env {
		env[k] = v
	}
	dir := filepath.Join(h.dir, "stacks", fmt.Sprintf("%02d-%s-%s", h.dbs, sc.Name, strings.Fields(b.Label)[0]))
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := devstack.Start(sctx, devstack.Config{
		Root: h.root, Dir: dir, BinDir: b.binDir,
		Gateways: gateways, Fetchers: fetchers, Nginx: true,
		Simulator: true, SimArgs: []string{"-rate-limit", fmt.Sprint(sc.SimRateLimit), "-latency", "0s"},
		DatabaseURL: strings.Replace(h.pg.AdminURL(), "/postgres?", "/"+dbName+"?", 1),
		Env:         env,
	})
	if err != nil {
		return nil, err
	}
	st := &stackRun{Stack: s, dir: dir}
	if st.token, err = login(sctx, s); err != nil {
		_ = s.Close()
		return nil, err
	}
	return st, nil
}

func (h *harness) lastStackDir() string {
	dirs, _ := filepath.Glob(filepath.Join(h.dir, "stacks", "*"))
	slices.Sort(dirs)
	if len(dirs) == 0 {
		return ""
	}
	return dirs[len(dirs)-1]
}

func (h *harness) createDatabase(ctx context.Context, name string) error {
	db, err := sql.Open("postgres", h.pg.AdminURL())
	if err != nil {
		return fmt.Errorf("benchload: postgres: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("benchload: create database %s: %w", name, err)
	}
	return nil
}

// login gets a token through nginx, as a client would.
func login(ctx context.Context, s *devstack.Stack) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": s.AdminUser, "password": s.AdminPass})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.AuthURL+"/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("benchload: login: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("benchload: login: %s (%v)", resp.Status, err)
	}
	return tok.AccessToken, nil
}

// runScenario starts a stack for sc on b, measures, and stops it again.
func (h *harness) runScenario(ctx context.Context, sc Scenario, b Build) Measurement {
	st, err := h.startStack(ctx, sc, b)
	if err != nil {
		return Measurement{Err: err}
	}
	defer func() {
		if err := st.Close(); err != nil {
			h.logf("stopping the %s stack: %v", sc.Name, err)
		}
	}()
	procs := append(slices.Clone(st.Gateways), st.Fetchers...)
	rss := sampleRSS(procs)
	m, err := sc.run(ctx, h, st)
	peaks := rss.Stop()
	if err != nil {
		return Measurement{Err: err}
	}
	m.GatewayRSS, m.FetcherRSS = peaks[:len(st.Gateways)], peaks[len(st.Gateways):]
	calls, err := simCalls(ctx, st.SimURL)
	if err != nil {
		return Measurement{Err: err}
	}
	m.Calls, m.CallsMax60 = len(calls), maxInWindow(calls, time.Minute)
	return m
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
