//go:build unix

package engine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// lockedElsewhere reports whether another process holds the lock of the
// data directory dir, without taking it or changing the lock file.
func lockedElsewhere(dir string) bool {
	_, held := lockHolder(dir)
	return held
}

// lockHolder returns the id of the process that holds the lock of the
// data directory dir (0 if the system does not say), and whether one
// does.
func lockHolder(dir string) (pid int, held bool) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return 0, false
	}
	return int(lk.Pid), lk.Type != syscall.F_UNLCK
}

// processAlive reports whether a process with id pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
