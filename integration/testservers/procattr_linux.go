package testservers

import "syscall"

// sysProcAttr makes the kernel kill a server when the test binary dies
// (e.g. a test timeout panic), so no broker outlives its test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
