//go:build unix && !linux

package pgtest

import (
	"os/exec"
	"syscall"
)

func setDeathSignal(*syscall.SysProcAttr) {}

// signalGroup kills the server's process group (its backends, in sessions
// of their own, notice the postmaster's death soon after).
func signalGroup(cmd *exec.Cmd) (waitGone func()) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return func() {}
}
