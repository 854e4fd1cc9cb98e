package devstack

import "syscall"

// sysProcAttr puts a child in its own process group, so Kill takes anything
// it forked too and a terminal's Ctrl-C reaches only us (we then stop the
// children in order), and has the kernel SIGKILL it if we die without
// cleaning up, so no service outlives a killed test binary or devstack.
//
// Pdeathsig fires when the forking OS thread exits; the Go runtime retires
// threads only for goroutines that exit while locked to one, which this
// package never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
