package main

import (
	"log/slog"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ftpsproxy/ftpsproxy/internal/sockopt"
)

// TestUpgraderListenKeepAlive: the daemon binds its listeners, with tableflip and without, as
// proxy.ControlListenConfig does: keep-alive set on the listening socket, for the accepted
// control connections to inherit (proxy's TestControlKeepAlive checks what they get).
func TestUpgraderListenKeepAlive(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	check := func(name string, u *upgrader) {
		t.Helper()
		ln, err := u.listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		tl := ln.(*net.TCPListener)
		on := sockopt.Must(t, tl, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle := sockopt.Must(t, tl, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		if on != 1 || idle != 15 {
			t.Errorf("%s: listening socket keep-alive %d, idle %d s; want 1, 15 s", name, on, idle)
		}
	}
	check("without tableflip", &upgrader{log: log})

	up, err := newUpgrader("", log)
	if err != nil {
		t.Fatal(err)
	}
	if up.upg == nil {
		return // tableflip is not supported here: the path above is the one in use
	}
	defer up.upg.Stop()
	check("with tableflip", up)
}
