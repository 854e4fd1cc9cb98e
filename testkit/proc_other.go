//go:build unix && !linux

package testkit

import "syscall"

// sysProcAttr puts the child in its own process group, so stop can kill
// everything it forked with one signal. There is no parent-death signal
// outside Linux, so a test binary killed without running its Cleanup can
// leak servers there.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: cred,
	}
}

// childPIDs would list pid's children; there is no cheap portable way, and
// stop's process-group kill covers every server except PostgreSQL, whose
// children also exit on their own once the postmaster is gone.
func childPIDs(pid int) []int { return nil }
