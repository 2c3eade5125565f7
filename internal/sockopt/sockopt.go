// Package sockopt reads integer socket options, for tests that check what the proxy sets on
// its sockets (keep-alive, the protocol of a listener).
package sockopt

import (
	"syscall"
	"testing"
)

// Int reads the integer socket option level/opt of the socket behind sc.
func Int(sc syscall.Conn, level, opt int) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return 0, err
	}
	return v, serr
}

// Must is Int for a test: a failed read ends it.
func Must(t testing.TB, sc syscall.Conn, level, opt int) int {
	t.Helper()
	v, err := Int(sc, level, opt)
	if err != nil {
		t.Fatal("sockopt:", err)
	}
	return v
}
