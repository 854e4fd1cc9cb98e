package testkit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a real redis-server process on a free loopback port, with
// persistence off (save "", appendonly no): its data lives only as long as
// the process.
type Redis struct {
	// Addr is where the server listens, "127.0.0.1:port". It stays the same
	// across Stop and Start.
	Addr string

	bin   string
	dir   string
	port  int
	extra []string // more redis-server flags, after ours so they win

	mu   sync.Mutex // guards proc, so Stop/Start/Close may race with Cleanup
	proc *process   // nil while stopped
}

// StartRedis starts a redis-server for the test and stops it in tb.Cleanup.
// Its log goes to a file in tb.TempDir and is copied into the test output if
// the test fails. A missing redis-server binary fails the test.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	r, err := LaunchRedis(tb.TempDir(), 0)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("%v", err)
		}
		if tb.Failed() {
			dumpLog(tb, "redis-server", r.logPath())
		}
	})
	return r
}

// LaunchRedis starts a redis-server with its working directory and log in
// dir (created if missing) on 127.0.0.1:port, and waits until it answers
// PING. Port 0 picks a free port. It is for TestMain and dev stacks, where
// there is no testing.TB; the caller must Close the server.
func LaunchRedis(dir string, port int) (*Redis, error) {
	return LaunchRedisArgs(dir, port)
}

// LaunchRedisArgs is LaunchRedis with more redis-server flags, which win
// over testkit's own: "--bind", "127.0.0.1 10.213.0.1" to listen on a
// namespace link too, "--replicaof", "127.0.0.1 6400" for a replica.
func LaunchRedisArgs(dir string, port int, extra ...string) (*Redis, error) {
	bin, err := findBinary("redis-server", "redis-server", "/usr/bin/redis-server")
	if err != nil {
		return nil, err
	}
	if isDefaultPort(port) {
		return nil, fmt.Errorf("testkit: refusing port %d: it is a system service's default port", port)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testkit: redis dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testkit: redis dir: %w", err)
	}
	pick := port == 0
	for attempt := 1; ; attempt++ {
		if pick {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, dir: dir, port: port, extra: extra}
		err = r.launch()
		if err == nil {
			return r, nil
		}
		if !pick || attempt == PortAttempts || !portTaken(err) {
			return nil, err
		}
	}
}

func (r *Redis) logPath() string { return filepath.Join(r.dir, "redis.log") }

// launch starts the server process and waits for it; the caller holds mu or
// owns r exclusively.
func (r *Redis) launch() error {
	// Nothing should have written these with persistence off, but if a
	// previous run did (a manual SAVE, say), redis would load it on start
	// and Start would no longer mean "restarted empty".
	for _, name := range []string{"dump.rdb", "appendonlydir"} {
		if err := os.RemoveAll(filepath.Join(r.dir, name)); err != nil {
			return fmt.Errorf("testkit: clear redis dir: %w", err)
		}
	}
	// No config file: redis-server then uses its compiled-in defaults and
	// never reads the system's /etc/redis/redis.conf.
	proc, err := startProcess(procSpec{
		path: r.bin,
		args: append([]string{
			"--port", strconv.Itoa(r.port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", r.dir,
			"--daemonize", "no",
		}, r.extra...),
		dir:     r.dir,
		logPath: r.logPath(),
	})
	if err != nil {
		return err
	}
	if err := waitReady(proc, r.ping); err != nil {
		_ = proc.stop(syscall.SIGKILL, 0)
		return err
	}
	r.proc = proc
	return nil
}

// ping speaks RESP by hand rather than through go-redis, whose pool,
// retries and backoff would make the readiness loop's timing opaque.
func (r *Redis) ping(ctx context.Context) error { return pingAddr(ctx, r.Addr) }

// pingAddr sends one PING to a redis-server or Sentinel at addr.
func pingAddr(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	// "-LOADING ..." and friends mean "up but not ready yet".
	if reply := strings.TrimSpace(line); reply != "+PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// URL returns the server's URL for redis.ParseURL and friends, database 0.
func (r *Redis) URL() string {
	return "redis://" + r.Addr + "/0"
}

// Client returns a go-redis client for the server, closed in tb.Cleanup.
// It keeps working across Stop and Start: go-redis redials broken
// connections.
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// FastClient is a client configured as the services configure theirs: short
// timeouts and no retries, so a dead Redis costs a request well under a
// second. DialerRetries matters as much as MaxRetries: its default of 5, with
// 100ms between attempts, adds 400ms to every call while Redis refuses
// connections, and five whole DialTimeouts when it black-holes them. It is
// closed in tb.Cleanup.
func (r *Redis) FastClient(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          r.Addr,
		DialTimeout:   300 * time.Millisecond,
		ReadTimeout:   300 * time.Millisecond,
		WriteTimeout:  300 * time.Millisecond,
		PoolTimeout:   300 * time.Millisecond,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server to simulate an outage; its data is gone. Stopping a
// stopped server fails the test, since that is a bug in the test.
func (r *Redis) Stop(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		tb.Fatalf("testkit: Redis.Stop: redis-server on %s is not running", r.Addr)
	}
	// SIGKILL: an outage is abrupt, and it guarantees nothing is saved.
	err := r.proc.stop(syscall.SIGKILL, 0)
	r.proc = nil
	if err != nil {
		tb.Fatalf("%v", err)
	}
}

// Start starts the server again on the same port, empty, to simulate "Redis
// restarted and lost everything". Starting a running server fails the test.
func (r *Redis) Start(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		tb.Fatalf("testkit: Redis.Start: redis-server on %s is already running", r.Addr)
	}
	if err := r.launch(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Close stops the server if it is running. It reports an error if the server
// had died on its own beforehand. Calling it again is a no-op.
func (r *Redis) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	err := r.proc.stop(syscall.SIGKILL, 0)
	r.proc = nil
	return err
}
