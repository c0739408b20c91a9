//go:build linux

package redisserver

import "syscall"

// childAttrs makes the kernel kill redis-server when its parent dies, so
// that a killed `tidings dev` or test binary leaves no server behind.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
