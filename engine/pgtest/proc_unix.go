//go:build unix

package pgtest

import (
	"os/exec"
	"syscall"
)

// credential is the user the server runs as.
type credential struct{ uid, gid int }

// sysProcAttr runs a server process as cred (if set) in a process group of
// its own, so that killGroup ends the server's children too.
func sysProcAttr(cred *credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: uint32(cred.uid), Gid: uint32(cred.gid)}
	}
	setDeathSignal(a)
	return a
}

// killGroup kills the server and every process of it (see signalGroup)
// and waits until they have exited.
func killGroup(cmd *exec.Cmd) {
	gone := signalGroup(cmd)
	_ = cmd.Wait()
	gone()
}
