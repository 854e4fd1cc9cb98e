package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/testkit"
)

// redisServer is a redis-server the soak runs itself rather than through
// testkit, whose servers never persist: the soak also runs Redis the way the
// compose files do (appendonly yes), where a restart must keep the data.
// It is used from the fault runner's goroutine only.
type redisServer struct {
	// Addr is "127.0.0.1:port"; it stays the same across restarts.
	Addr       string
	dir        string
	appendOnly bool
	bin        string
	cmd        *exec.Cmd
	done       chan struct{}
}

// startRedis starts redis-server on a free loopback port with its working
// directory and log in dir. Without appendOnly nothing is ever written to
// disk, so a restart comes back empty.
func startRedis(dir string, appendOnly bool) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("chaos: redis-server not found (run scripts/install-deps.sh): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: redis dir: %w", err)
	}
	port, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, appendOnly: appendOnly, bin: bin}
	return r, r.start()
}

// URL is what the services get as REDIS_URL.
func (r *redisServer) URL() string { return "redis://" + r.Addr + "/0" }

// start launches the server and waits until it answers PING (after loading
// its append-only file, if any).
func (r *redisServer) start() error {
	aof := "no"
	if r.appendOnly {
		aof = "yes"
	} else {
		// Nothing should be there, but a stray file would make "restarted
		// empty" untrue.
		for _, name := range []string{"dump.rdb", "appendonlydir"} {
			_ = os.RemoveAll(filepath.Join(r.dir, name))
		}
	}
	log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: redis log: %w", err)
	}
	defer log.Close()
	_, port, _ := net.SplitHostPort(r.Addr)
	// appendfsync everysec is Redis's default and what the compose files
	// get: every acknowledged write is in the file (the page cache) before
	// the reply, so a killed process loses nothing; only a machine crash
	// could lose the last second.
	cmd := exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", aof, "--appendfsync", "everysec", "--dir", r.dir, "--daemonize", "no")
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done

	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("chaos: redis-server exited during startup; see %s", filepath.Join(r.dir, "redis.log"))
		default:
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("chaos: redis-server on %s not ready: %w", r.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the server, an abrupt outage, and waits for it to be gone.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// restart kills the server and starts it again on the same port: empty, or
// from its append-only file.
func (r *redisServer) restart(down time.Duration) error {
	r.kill()
	time.Sleep(down)
	return r.start()
}

// errTB hands testkit's outage helpers (Postgres.Stop and Start), written
// for tests, a testing.TB outside a test: it keeps the failure as an error
// instead of ending a test. Anything else testkit might call on it panics,
// which would be a bug here.
type errTB struct {
	testing.TB // nil
	err        error
}

func (e *errTB) Helper() {}

func (e *errTB) Fatalf(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

// call runs fn with a fresh errTB and returns what it recorded.
func call(fn func(tb *errTB)) error {
	tb := &errTB{}
	fn(tb)
	return tb.err
}
