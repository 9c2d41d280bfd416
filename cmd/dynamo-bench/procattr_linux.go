package main

import "syscall"

// childProcAttr puts a node in its own process group, so a Ctrl-C in the
// terminal reaches only this tool, which then stops the nodes in order; and
// has the kernel kill it should this tool die without cleaning up.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
