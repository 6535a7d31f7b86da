//go:build !linux

package testservers

import "syscall"

// sysProcAttr: Pdeathsig is Linux-only; elsewhere a server can outlive a
// crashed test binary.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
