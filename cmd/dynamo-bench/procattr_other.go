//go:build !linux

package main

import "syscall"

// childProcAttr puts a node in its own process group, so a Ctrl-C in the
// terminal reaches only this tool, which then stops the nodes in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
