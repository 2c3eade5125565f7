package main

import (
	"log/slog"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// listenerKeepAlive reads SO_KEEPALIVE and TCP_KEEPIDLE of a listening socket.
func listenerKeepAlive(t *testing.T, ln net.Listener) (on, idle int) {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var e1, e2 error
	if err := rc.Control(func(fd uintptr) {
		on, e1 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, e2 = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	}); err != nil || e1 != nil || e2 != nil {
		t.Fatal(err, e1, e2)
	}
	return on, idle
}

// TestUpgraderListenKeepAlive: the daemon binds its listeners, with tableflip and without, as
// proxy.ControlListenConfig does: keep-alive set on the listening socket, for the accepted
// control connections to inherit (proxy's TestControlKeepAlive checks what they get).
func TestUpgraderListenKeepAlive(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	plain := &upgrader{log: log}
	ln, err := plain.listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if on, idle := listenerKeepAlive(t, ln); on != 1 || idle != 15 {
		t.Errorf("without tableflip: listening socket keep-alive %d, idle %d s; want 1, 15 s", on, idle)
	}

	up, err := newUpgrader("", log)
	if err != nil {
		t.Fatal(err)
	}
	if up.upg == nil {
		return // tableflip is not supported here: the path above is the one in use
	}
	defer up.upg.Stop()
	ln2, err := up.listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if on, idle := listenerKeepAlive(t, ln2); on != 1 || idle != 15 {
		t.Errorf("with tableflip: listening socket keep-alive %d, idle %d s; want 1, 15 s", on, idle)
	}
}
