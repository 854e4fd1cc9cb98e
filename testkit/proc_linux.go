package testkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts the child in its own process group, so stop can kill
// everything it forked with one signal, and asks the kernel to SIGKILL it
// when we die, so a test binary killed by a timeout or a signal (no Cleanup
// runs then) does not leak servers holding ports.
//
// Pdeathsig fires when the OS thread that forked the child exits, not the
// process; the Go runtime only retires threads of goroutines that exit while
// locked to them, which this package never does.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
}

// childPIDs returns pid's direct children, as far as /proc tells; nil if it
// cannot, which only costs stop its extra thoroughness.
func childPIDs(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}
