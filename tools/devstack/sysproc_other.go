//go:build !linux

package devstack

import "syscall"

// sysProcAttr puts a child in its own process group. Only Linux has a
// parent-death signal; elsewhere Close must run to stop the children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
