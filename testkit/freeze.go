package testkit

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
)

// Freezing a server is the fault "hung, not down": every one of its
// processes gets SIGSTOP. Its port keeps accepting (the kernel completes new
// handshakes into the listen backlog) and open connections stay
// established, yet nothing answers, which is what a wedged server or a
// silent network drop looks like to a client, as opposed to a refused
// connection.

// Freeze stops every PostgreSQL process (postmaster and backends) until
// Thaw, or until the end of the test. Freezing a stopped server fails the
// test.
func (p *Postgres) Freeze(tb testing.TB) {
	tb.Helper()
	freeze(tb, &p.mu, &p.proc, "postgres on "+p.Addr)
}

// Thaw resumes a frozen PostgreSQL.
func (p *Postgres) Thaw(tb testing.TB) {
	tb.Helper()
	thaw(tb, &p.mu, &p.proc, "postgres on "+p.Addr)
}

// Freeze stops redis-server until Thaw, or until the end of the test.
// Freezing a stopped server fails the test.
func (r *Redis) Freeze(tb testing.TB) {
	tb.Helper()
	freeze(tb, &r.mu, &r.proc, "redis-server on "+r.Addr)
}

// Thaw resumes a frozen redis-server.
func (r *Redis) Thaw(tb testing.TB) {
	tb.Helper()
	thaw(tb, &r.mu, &r.proc, "redis-server on "+r.Addr)
}

func freeze(tb testing.TB, mu *sync.Mutex, proc **process, what string) {
	tb.Helper()
	if err := signalServer(mu, proc, what, syscall.SIGSTOP); err != nil {
		tb.Fatalf("testkit: freeze: %v", err)
	}
	// A stopped server would sit out Close's whole shutdown grace; this
	// cleanup runs before the ones registered earlier, which stop it.
	tb.Cleanup(func() { _ = signalServer(mu, proc, what, syscall.SIGCONT) })
}

func thaw(tb testing.TB, mu *sync.Mutex, proc **process, what string) {
	tb.Helper()
	if err := signalServer(mu, proc, what, syscall.SIGCONT); err != nil {
		tb.Fatalf("testkit: thaw: %v", err)
	}
}

func signalServer(mu *sync.Mutex, proc **process, what string, sig syscall.Signal) error {
	mu.Lock()
	defer mu.Unlock()
	if *proc == nil || (*proc).exited() {
		return fmt.Errorf("%s is not running", what)
	}
	(*proc).signalTree(sig)
	return nil
}

// signalTree sends sig to the leader, then to its descendants as /proc
// lists them: a stopped postmaster forks no new backend meanwhile.
// PostgreSQL's children left the process group (setsid), so a group signal
// would miss them.
func (p *process) signalTree(sig syscall.Signal) {
	pids := []int{p.cmd.Process.Pid}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, childPIDs(pids[i])...)
	}
	for _, pid := range pids {
		// ESRCH: a child that ended meanwhile has nothing left to stop.
		_ = syscall.Kill(pid, sig)
	}
}
