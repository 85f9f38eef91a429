//go:build !unix

package engine

// lockedElsewhere cannot tell on this platform; read-only opens then show
// every claim as interrupted.
func lockedElsewhere(string) bool { return false }

// processAlive cannot tell on this platform: no snapshot is taken for
// stale.
func processAlive(int) bool { return true }

func lockHolder(string) (int, bool) { return 0, false }
