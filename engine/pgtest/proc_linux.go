package pgtest

import "syscall"

// setDeathSignal makes the kernel kill the server when the test binary
// dies, so that a killed test run leaves no server behind.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
