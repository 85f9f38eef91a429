package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// setDeathSignal makes the kernel kill the server when the test binary
// dies, so that a killed test run leaves no server behind.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// signalGroup kills the server (the postmaster) and its children with
// SIGKILL, and returns a function that waits until the children have
// exited. The children are each in a session of their own (PostgreSQL's
// backends call setsid), so killing the postmaster's process group leaves
// them running for a moment: answering queries, and holding the shared
// memory that a restart needs. So the postmaster is stopped first (it
// forks no more), its children are found in /proc and killed with it.
func signalGroup(cmd *exec.Cmd) (waitGone func()) {
	if cmd.Process == nil {
		return func() {}
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	kids := children(pid)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return func() {
		deadline := time.Now().Add(10 * time.Second)
		for _, k := range kids {
			for alive(k) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// children returns the pids of the processes whose parent is pid.
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, p := range stats {
		if ppid, _, ok := procStat(p); ok && ppid == pid {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			kids = append(kids, n)
		}
	}
	return kids
}

// alive reports whether process pid exists and has not exited (a zombie,
// which no one may reap in a container, has exited).
func alive(pid int) bool {
	_, state, ok := procStat("/proc/" + strconv.Itoa(pid) + "/stat")
	return ok && state != "Z" && state != "X"
}

// procStat reads a process's parent and state from its /proc stat file.
func procStat(path string) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}
