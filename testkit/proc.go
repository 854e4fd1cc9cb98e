package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installHint ends every "binary not found" error, so the failure tells the
// reader how to fix it instead of just what is wrong.
const installHint = "run scripts/install-deps.sh from the repository root (as root, or as a user with sudo)"

// readyTimeout bounds how long a freshly started server may take to answer.
// Generous because CI machines have two cores shared with the race detector.
const readyTimeout = 15 * time.Second

// logTailBytes bounds how much of a server log ends up in an error message
// or a test log, so a chatty server cannot drown the actual failure.
const logTailBytes = 16 << 10

// findBinary returns the first existing executable among candidates. A bare
// name is looked up in PATH; anything else is taken as a path.
func findBinary(what string, candidates ...string) (string, error) {
	for _, c := range candidates {
		if !strings.Contains(c, "/") {
			if p, err := exec.LookPath(c); err == nil {
				return p, nil
			}
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("testkit: %s not found (looked for %s): %s",
		what, strings.Join(candidates, ", "), installHint)
}

// procSpec describes a server process to start.
type procSpec struct {
	path    string
	args    []string
	dir     string              // working directory; must be reachable by cred
	logPath string              // stdout and stderr are appended here
	cred    *syscall.Credential // nil: run as ourselves
}

// process is one running server and, through its process group, everything
// it forked.
type process struct {
	name     string
	cmd      *exec.Cmd
	logPath  string
	logStart int64         // size of logPath before this process started
	done     chan struct{} // closed once cmd.Wait has returned
	waitErr  error         // cmd.Wait's result; read only after done is closed
}

// startProcess starts spec in a new process group and returns without
// waiting for it to become ready.
func startProcess(spec procSpec) (*process, error) {
	logf, err := os.OpenFile(spec.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testkit: open log: %w", err)
	}
	// The child gets its own copy of the descriptor, so ours can go as soon
	// as it has started, whatever happens.
	defer logf.Close()
	fi, err := logf.Stat()
	if err != nil {
		return nil, fmt.Errorf("testkit: open log: %w", err)
	}

	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr(spec.cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testkit: start %s: %w", spec.path, err)
	}
	p := &process{
		name:     spec.path,
		cmd:      cmd,
		logPath:  spec.logPath,
		logStart: fi.Size(),
		done:     make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already ended on its own or
// otherwise.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end with sig, gives it grace to do so, then
// SIGKILLs its whole process group and, if the leader had to be killed, its
// direct children. The group kill is unconditional: a server that exited
// cleanly may still have left forked children behind (a redis background
// save, say), and those must not outlive the test.
//
// It returns an error if the process had already died before stop was
// called, since a server that crashes mid-test is a finding, not noise.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	var crashed error
	if p.exited() {
		crashed = fmt.Errorf("testkit: %s had exited on its own: %v\n%s", p.name, p.waitErr, p.output())
	} else if sig != syscall.SIGKILL {
		// Only the leader: a PostgreSQL postmaster coordinates its own
		// children's shutdown, and signalling them directly would turn a
		// clean shutdown into a crash.
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	pid := p.cmd.Process.Pid
	// PostgreSQL's children call setsid() and so leave our process group;
	// collect them by parentage while the leader, if still alive, is their
	// parent. (They also exit by themselves once they notice the postmaster
	// is gone, but not promptly while busy with a query.)
	var kids []int
	if !p.exited() {
		kids = childPIDs(pid)
	}
	// The group id is the leader's pid because of Setpgid. ESRCH (nothing
	// left to kill) is the normal case and not worth reporting.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	<-p.done
	return crashed
}

// output returns the tail of what this process (not earlier runs sharing the
// log file) has logged so far.
func (p *process) output() string {
	return readLog(p.logPath, p.logStart)
}

// readLog returns at most logTailBytes of path from offset from on.
func readLog(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	truncated := false
	if fi.Size()-from > logTailBytes {
		from = fi.Size() - logTailBytes
		truncated = true
	}
	data, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	if truncated {
		return "[...]\n" + string(data)
	}
	return string(data)
}

// dumpLog writes a server's whole log (tail-limited) into the test output;
// called from Cleanup of failed tests, because the log is the one thing that
// explains a misbehaving server and it disappears with the temp dir.
func dumpLog(tb testing.TB, what, path string) {
	tb.Logf("%s log %s:\n%s", what, path, readLog(path, 0))
}

// waitReady polls probe until it succeeds, the process exits, or
// readyTimeout passes. Each probe gets at most a second, so one hung
// connection attempt cannot eat the whole budget.
func waitReady(p *process, probe func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := probe(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return &startupError{msg: fmt.Sprintf("%s exited during startup (%v)", p.name, p.waitErr), log: p.output()}
		case <-ctx.Done():
			return &startupError{msg: fmt.Sprintf("%s not ready after %s: %v", p.name, readyTimeout, err), log: p.output()}
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// startupError is a server that did not come up, with what it logged.
type startupError struct {
	msg string
	log string
}

func (e *startupError) Error() string {
	return "testkit: " + e.msg + "; server log:\n" + e.log
}

// portTaken reports whether err is a server failing to bind its port, which
// happens when another process grabbed a FreePort result first.
func portTaken(err error) bool {
	var se *startupError
	return errors.As(err, &se) && BindFailed(se.log)
}

// BindFailed reports whether a server's log says it could not bind its port
// because another process held it: Redis and PostgreSQL write "Address
// already in use", Go servers "address already in use".
func BindFailed(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// PortAttempts is how many fresh ports a launcher (Launch* here, devstack's
// instances) tries when it picked the port and somebody else took it in the
// meantime.
const PortAttempts = 3
