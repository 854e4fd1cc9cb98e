package testkit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
)

// pgBinDir is where Debian's postgresql-15 package puts the server
// binaries; they are not on PATH, and pinning the major version keeps every
// machine testing against the same server.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgSuperuser is the bootstrap superuser initdb creates, whatever OS user
// runs it, so URLs are the same for root in CI and for a developer.
const pgSuperuser = "postgres"

// pgStopGrace is how long a shutdown request may take before the process
// group is killed.
const pgStopGrace = 10 * time.Second

// Postgres is a real PostgreSQL 15 cluster, initdb'd into a directory of its
// own, served on a free loopback port over TCP only.
type Postgres struct {
	// Addr is where the server listens, "127.0.0.1:port". It stays the same
	// across Stop and Start.
	Addr string

	bin     string // pgBinDir, checked
	dir     string // holds data/ and postgres.log
	port    int
	cred    *syscall.Credential // nil: run as ourselves
	dbCount atomic.Int64        // makes NewDatabase names unique

	mu   sync.Mutex // guards proc, so Stop/Start/Close may race with Cleanup
	proc *process   // nil while stopped
}

// StartPostgres initdb's a fresh cluster in tb.TempDir, starts it, and in
// tb.Cleanup stops it (immediate shutdown: the data is thrown away anyway)
// and lets the temp dir go. Its log is copied into the test output if the
// test fails. A missing PostgreSQL 15 install fails the test.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	p, err := LaunchPostgres(tb.TempDir(), 0)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := p.halt(syscall.SIGQUIT); err != nil {
			tb.Errorf("%v", err)
		}
		if tb.Failed() {
			dumpLog(tb, "postgres", p.logPath())
		}
	})
	return p
}

// LaunchPostgres starts PostgreSQL 15 on 127.0.0.1:port with its cluster in
// dir/data and its log in dir/postgres.log, and waits until it accepts a
// real connection. If dir/data already holds a cluster it is reused, so a
// dev stack keeps its data across runs; otherwise initdb creates one.
// Port 0 picks a free port. It is for TestMain and dev stacks, where there
// is no testing.TB; the caller must Close the server.
//
// The server runs with fsync off: fast, and fine for throwaway data, but a
// machine crash can corrupt the cluster.
//
// PostgreSQL refuses to run as root, so when we are root the server runs as
// the "postgres" account, dir/data is chowned to it, and dir plus any of its
// ancestors inside the temp directory are made searchable (o+x) for it.
func LaunchPostgres(dir string, port int) (*Postgres, error) {
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := findBinary("PostgreSQL 15 "+name, filepath.Join(pgBinDir, name)); err != nil {
			return nil, err
		}
	}
	if isDefaultPort(port) {
		return nil, fmt.Errorf("testkit: refusing port %d: it is a system service's default port", port)
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testkit: postgres dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testkit: postgres dir: %w", err)
	}
	p := &Postgres{bin: pgBinDir, dir: dir, cred: cred}
	if cred != nil {
		if err := ensureTraversable(dir); err != nil {
			return nil, err
		}
	}
	if err := p.initdb(); err != nil {
		return nil, err
	}
	pick := port == 0
	for attempt := 1; ; attempt++ {
		if pick {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		p.port = port
		p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = p.launch()
		if err == nil {
			return p, nil
		}
		if !pick || attempt == PortAttempts || !portTaken(err) {
			return nil, err
		}
	}
}

// pgCredential returns who the server must run as: the postgres account
// when we are root (initdb and postgres exit rather than run as root), or
// nil to run as ourselves.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testkit: running as root, PostgreSQL must run as the postgres account, but: %v; %s", err, installHint)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testkit: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testkit: postgres gid %q: %w", u.Gid, err)
	}
	// An empty (non-nil) group list drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// ensureTraversable makes dir, and every ancestor of it strictly inside the
// temp directory, searchable by other users. Test temp dirs are created 0700
// by root, which would lock out the postgres account. Directories outside
// the temp dir (say /root) are left alone: widening those is not this
// package's call, and initdb's "Permission denied" then names the problem.
func ensureTraversable(dir string) error {
	var roots []string
	for _, r := range []string{os.TempDir(), os.Getenv("GOTMPDIR")} {
		if r == "" {
			continue
		}
		if abs, err := filepath.Abs(r); err == nil {
			roots = append(roots, abs)
		}
	}
	inTemp := func(d string) bool {
		for _, r := range roots {
			if strings.HasPrefix(d, r+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}
	for d := dir; d == dir || inTemp(d); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("testkit: postgres dir: %w", err)
		}
		if mode := fi.Mode().Perm(); mode&0o001 == 0 {
			if err := os.Chmod(d, mode|0o001); err != nil {
				return fmt.Errorf("testkit: make %s searchable for the postgres account: %w", d, err)
			}
		}
	}
	return nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }
func (p *Postgres) logPath() string { return filepath.Join(p.dir, "postgres.log") }

// initdb creates the cluster unless dataDir already holds one.
func (p *Postgres) initdb() error {
	data := p.dataDir()
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.Mkdir(data, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("testkit: postgres data dir: %w", err)
	}
	if p.cred != nil {
		if err := os.Chown(data, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fmt.Errorf("testkit: chown postgres data dir: %w", err)
		}
	}
	proc, err := startProcess(procSpec{
		path: filepath.Join(p.bin, "initdb"),
		args: []string{
			"--pgdata", data,
			"--username", pgSuperuser,
			"--auth", "trust", // loopback only, throwaway data
			"--encoding", "UTF8",
			"--locale", "C", // independent of the machine's installed locales
			"--no-sync", // nothing here has to survive a power cut
			"--no-instructions",
		},
		dir:     p.dir,
		logPath: p.logPath(),
		cred:    p.cred,
	})
	if err != nil {
		return err
	}
	select {
	case <-proc.done:
	case <-time.After(2 * time.Minute):
		_ = proc.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("testkit: initdb hung; log:\n%s", proc.output())
	}
	if proc.waitErr != nil {
		return fmt.Errorf("testkit: initdb %s: %v; log:\n%s", data, proc.waitErr, proc.output())
	}
	// initdb's process group is gone with it, but make sure.
	_ = proc.stop(syscall.SIGKILL, 0)
	return nil
}

// launch starts the postmaster and waits for it; the caller holds mu or owns
// p exclusively.
//
// The postmaster is our direct child rather than pg_ctl's: pg_ctl puts the
// server in a session of its own, out of reach of our process-group kill
// and parent-death signal.
func (p *Postgres) launch() error {
	proc, err := startProcess(procSpec{
		path: filepath.Join(p.bin, "postgres"),
		args: []string{
			"-D", p.dataDir(),
			"-p", strconv.Itoa(p.port),
			"-c", "listen_addresses=127.0.0.1",
			// TCP only: a socket path under a long temp dir can exceed the
			// 107-byte sun_path limit, and clients here all use TCP.
			"-c", "unix_socket_directories=",
			// Test data need not survive a crash; these make DDL and
			// commits several times faster.
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			// Dynamic shared memory in files under the data dir rather
			// than /dev/shm, so a SIGKILLed server leaves nothing behind
			// that outlives its temp dir.
			"-c", "dynamic_shared_memory_type=mmap",
		},
		dir:     p.dir,
		logPath: p.logPath(),
		cred:    p.cred,
	})
	if err != nil {
		return err
	}
	if err := waitReady(proc, p.ping); err != nil {
		_ = proc.stop(syscall.SIGQUIT, pgStopGrace)
		return err
	}
	p.proc = proc
	return nil
}

// ping makes a real connection as the superuser, because the port accepts
// TCP well before the server accepts sessions ("the database system is
// starting up").
func (p *Postgres) ping(ctx context.Context) error {
	db, err := sql.Open("postgres", p.AdminURL())
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// adminExec runs one statement as the superuser on the postgres database.
func (p *Postgres) adminExec(query string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("postgres", p.AdminURL())
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, query)
	return err
}

// AdminURL returns a lib/pq URL for the superuser on the postgres database.
func (p *Postgres) AdminURL() string {
	return p.dbURL("postgres")
}

func (p *Postgres) dbURL(name string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgSuperuser, p.Addr, name)
}

// NewDatabase creates a database with a unique name and returns a lib/pq
// URL for it (postgres://postgres@127.0.0.1:port/name?sslmode=disable). It
// is dropped in tb.Cleanup, connections and all, unless the server is
// stopped by then. One database per test keeps tests independent while they
// share a cluster, which is much cheaper than a cluster per test.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := p.uniqueName(tb.Name())
	if err := p.adminExec("CREATE DATABASE " + pq.QuoteIdentifier(name)); err != nil {
		tb.Fatalf("testkit: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if !p.running() {
			return // nothing to drop from; the cluster's owner cleans up
		}
		if err := p.adminExec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)"); err != nil {
			tb.Errorf("testkit: drop database %s: %v", name, err)
		}
	})
	return p.dbURL(name)
}

// uniqueName builds a database name that says which test made it, is a
// plain lowercase identifier (no quoting surprises in hand-written SQL),
// fits the 63-byte identifier limit, and is unique even when several
// processes share one cluster (the random part).
func (p *Postgres) uniqueName(testName string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(testName) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	hint := b.String()
	if len(hint) > 32 {
		hint = hint[:32]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on Linux
	return fmt.Sprintf("t_%s_%d_%s", hint, p.dbCount.Add(1), hex.EncodeToString(rnd[:]))
}

// Stop shuts the server down (fast shutdown) to simulate an outage; the data
// stays for Start. Stopping a stopped server fails the test, since that is a
// bug in the test.
func (p *Postgres) Stop(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		tb.Fatalf("testkit: Postgres.Stop: postgres on %s is not running", p.Addr)
	}
	err := p.proc.stop(syscall.SIGINT, pgStopGrace)
	p.proc = nil
	if err != nil {
		tb.Fatalf("%v", err)
	}
}

// Start starts the server again on the same port with the same data.
// Starting a running server fails the test.
func (p *Postgres) Start(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		tb.Fatalf("testkit: Postgres.Start: postgres on %s is already running", p.Addr)
	}
	if err := p.launch(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Close shuts the server down cleanly (fast shutdown), leaving the cluster
// in dir/data for the next LaunchPostgres. It reports an error if the server
// had died on its own beforehand. Calling it again is a no-op.
func (p *Postgres) Close() error {
	return p.halt(syscall.SIGINT)
}

// halt stops the server with sig if it is running: SIGINT is PostgreSQL's
// fast shutdown, SIGQUIT its immediate one.
func (p *Postgres) halt(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	err := p.proc.stop(sig, pgStopGrace)
	p.proc = nil
	return err
}

// running reports whether the server process is up.
func (p *Postgres) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.exited()
}
