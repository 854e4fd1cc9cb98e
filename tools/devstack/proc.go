package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"cryptopulse/testkit"
)

// healthTimeout bounds how long Start waits for a process to answer its
// health check when the caller's context has no earlier deadline. Services
// run migrations and connect to Redis first; CI machines are slow.
const healthTimeout = 60 * time.Second

// stopTimeout bounds a graceful stop when the caller's context has no
// earlier deadline: the services' default SHUTDOWN_GRACE_MS (15 s) plus room.
const stopTimeout = 25 * time.Second

// Proc is one child process of a stack (a service instance, the simulator or
// nginx) that can be stopped, killed and started again on the same port with
// the same environment, as an operator would do to one instance.
//
// Its methods are safe for concurrent use.
type Proc struct {
	// Name identifies the instance: "gateway-1", "fetcher-2", "auth-1",
	// "cgsim", "nginx". Services get it as INSTANCE_ID, and every line they
	// log is prefixed with it.
	Name string
	// Addr is where the process listens, "127.0.0.1:port". Once the
	// process has run it never changes, so nginx finds a restarted instance
	// where it left it (only a first start that found its port taken moves).
	Addr string

	bin    string
	args   []string
	env    []string
	dir    string
	logDir string
	health string // path answering 200 once the process is up
	// instance is the X-Instance-Id a health answer must carry to come from
	// this process and not from another that holds its port ("" for nginx
	// and the simulator, which do not name themselves).
	instance string
	// movePort, when set, moves a process that never ran to another free
	// port (Addr and whatever tells the process its port), for firstStart.
	movePort func() error
	stopSig  syscall.Signal // what Stop sends; nginx stops gracefully on SIGQUIT
	sink     *sink

	mu  sync.Mutex
	cur *procRun // the latest run; nil before the first Start
}

// procRun is one execution of a Proc.
type procRun struct {
	cmd  *exec.Cmd
	log  *lineWriter
	done chan struct{} // closed when the process has exited and its output is drained
	err  error         // cmd.Wait's result, read after done
}

// URL returns the base URL of the process, "http://127.0.0.1:port".
func (p *Proc) URL() string { return "http://" + p.Addr }

// Running reports whether the process is currently running.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil && !p.cur.exited()
}

// Pid returns the process id of the current run, or 0 if it never started.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// Start starts the process (again) on the same port with the same
// environment and waits until it answers its health check. It fails if the
// process is already running, if it exits during startup, or when ctx is
// done; the error then carries the last lines it logged.
func (p *Proc) Start(ctx context.Context) error {
	r, err := p.spawn()
	if err != nil {
		return err
	}
	if err := p.waitHealthy(ctx, r); err != nil {
		// A process that never became healthy must not keep its port.
		r.kill()
		<-r.done
		return err
	}
	return nil
}

// errPortTaken marks a start that failed because another process already
// listened on the port.
var errPortTaken = errors.New("port taken by another process")

// firstStart is Start for a process's first run. A free port is only free
// when it is chosen: on a machine where many tests start servers, another
// one may bind it before this process does. Then the process moves to
// another free port and starts again, up to testkit.PortAttempts times.
// Once it has run, its port stays (Restart and Start come back to it).
func (p *Proc) firstStart(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := p.Start(ctx)
		if err == nil || !errors.Is(err, errPortTaken) || p.movePort == nil || attempt == testkit.PortAttempts {
			return err
		}
		if err := p.movePort(); err != nil {
			return err
		}
	}
}

// spawn starts a new run without waiting for it to become healthy.
func (p *Proc) spawn() (*procRun, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.exited() {
		return nil, fmt.Errorf("devstack: start %s: already running (pid %d)", p.Name, p.cur.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(filepath.Join(p.logDir, p.Name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devstack: start %s: %w", p.Name, err)
	}
	lw := newLineWriter(p.Name, p.sink, logFile)

	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	// One writer for both streams: exec then uses a single pipe and a single
	// copying goroutine, so lines never interleave mid-way.
	cmd.Stdout = lw
	cmd.Stderr = lw
	cmd.SysProcAttr = sysProcAttr()
	// Should the child fork something that keeps the pipe open, Wait still
	// returns shortly after the child itself has exited.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		_ = lw.Close()
		return nil, fmt.Errorf("devstack: start %s: %w", p.Name, err)
	}
	r := &procRun{cmd: cmd, log: lw, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		_ = lw.Close()
		close(r.done)
	}()
	p.cur = r
	return r, nil
}

// waitHealthy polls the health path until it answers 200, r exits, or ctx
// (bounded by healthTimeout) is done.
func (p *Proc) waitHealthy(ctx context.Context, r *procRun) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	url := p.URL() + p.health
	delay := 10 * time.Millisecond
	var last error
	for {
		last = probe(ctx, client, url, p.instance)
		if last == nil {
			return nil
		}
		select {
		case <-r.done:
			tail := r.log.Tail()
			if testkit.BindFailed(tail) {
				return fmt.Errorf("devstack: %s exited during startup (%v): %w at %s; last output:\n%s", p.Name, r.err, errPortTaken, p.Addr, tail)
			}
			return fmt.Errorf("devstack: %s exited during startup (%v); last output:\n%s", p.Name, r.err, tail)
		case <-ctx.Done():
			return fmt.Errorf("devstack: %s not healthy at %s: %w (last probe: %v); last output:\n%s",
				p.Name, url, ctx.Err(), last, r.log.Tail())
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// probe makes one GET and wants a 200, from instance when that is not "".
func probe(ctx context.Context, client *http.Client, url, instance string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// Another stack's instance on our port answers 200 too; ours then
	// fails to bind and exits, which the caller sees next.
	if got := resp.Header.Get("X-Instance-Id"); instance != "" && got != instance {
		return fmt.Errorf("GET %s: answered by %q, not %s", url, got, instance)
	}
	return nil
}

// current returns the latest run, or an error naming p if it never started.
func (p *Proc) current() (*procRun, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return nil, fmt.Errorf("devstack: %s was never started", p.Name)
	}
	return p.cur, nil
}

// Signal sends sig to the process (not to anything it forked), as a process
// manager would: SIGTERM asks a service to shut down gracefully, SIGHUP
// makes nginx reload its configuration.
func (p *Proc) Signal(sig os.Signal) error {
	r, err := p.current()
	if err != nil {
		return err
	}
	if r.exited() {
		return fmt.Errorf("devstack: signal %s: %w", p.Name, os.ErrProcessDone)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("devstack: signal %s: %w", p.Name, err)
	}
	return nil
}

// Kill sends SIGKILL to the process and everything it forked, without
// waiting: a crash, as opposed to Stop. Killing a process that has already
// exited is not an error.
func (p *Proc) Kill() error {
	r, err := p.current()
	if err != nil {
		return err
	}
	r.kill()
	return nil
}

// Wait blocks until the current run exits and returns its exit code. A
// process ended by a signal has exit code -1 and a non-nil error naming the
// signal; err is also set if the process was never started.
func (p *Proc) Wait() (exitCode int, err error) {
	r, err := p.current()
	if err != nil {
		return -1, err
	}
	<-r.done
	return r.result(p.Name)
}

// Stop sends the process its stop signal (SIGTERM; SIGQUIT for nginx, its
// graceful one) and waits for it to exit. If it has not exited when ctx is
// done (or after a default 25 s), it is killed and Stop reports that. A
// non-zero exit code is an error too: the services promise to exit 0 on
// SIGTERM. Stopping a process that is not running is not an error.
func (p *Proc) Stop(ctx context.Context) error {
	r, err := p.current()
	if err != nil {
		return nil
	}
	if r.exited() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	_ = r.cmd.Process.Signal(p.stopSig)
	select {
	case <-r.done:
	case <-ctx.Done():
		r.kill()
		<-r.done
		return fmt.Errorf("devstack: %s did not exit after %s: %w; killed it; last output:\n%s",
			p.Name, p.stopSig, ctx.Err(), r.log.Tail())
	}
	// Anything the process forked goes with it.
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	if code, err := r.result(p.Name); code != 0 {
		if err == nil {
			err = fmt.Errorf("devstack: %s exited with code %d", p.Name, code)
		}
		return fmt.Errorf("%w after %s; last output:\n%s", err, p.stopSig, r.log.Tail())
	}
	return nil
}

// Restart stops the process gracefully and starts it again on the same port.
func (p *Proc) Restart(ctx context.Context) error {
	if err := p.Stop(ctx); err != nil {
		return err
	}
	return p.Start(ctx)
}

// Output returns the last lines the current run has written, for test
// failure messages.
func (p *Proc) Output() string {
	r, err := p.current()
	if err != nil {
		return ""
	}
	return r.log.Tail()
}

func (r *procRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the run's whole process group (its id is the child's pid,
// because of Setpgid).
func (r *procRun) kill() {
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
}

// result turns cmd.Wait's outcome into an exit code; read after done.
func (r *procRun) result(name string) (int, error) {
	state := r.cmd.ProcessState
	if state == nil {
		return -1, fmt.Errorf("devstack: %s: %w", name, r.err)
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, fmt.Errorf("devstack: %s killed by signal %s", name, ws.Signal())
	}
	if code := state.ExitCode(); code != 0 {
		return code, nil
	}
	// Exit code 0 but Wait failed: the output could not be drained (a
	// forked child kept the pipe open past WaitDelay). The process itself
	// ended cleanly, which is what callers ask about.
	var exitErr *exec.ExitError
	if r.err != nil && !errors.As(r.err, &exitErr) && !errors.Is(r.err, exec.ErrWaitDelay) {
		return 0, fmt.Errorf("devstack: %s: %w", name, r.err)
	}
	return 0, nil
}

// envList turns a map into KEY=VALUE entries in a stable order, so a
// restarted process gets exactly the environment it had.
func envList(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}
