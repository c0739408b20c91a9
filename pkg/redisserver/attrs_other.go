//go:build !linux

package redisserver

import "syscall"

func childAttrs() *syscall.SysProcAttr { return nil }
