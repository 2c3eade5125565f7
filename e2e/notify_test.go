package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a NOTIFY_SOCKET as systemd makes one: a unixgram socket the service
// writes its sd_notify states to.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "ops-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, conn: conn, path: path}
}

// next returns the next datagram, failing the test after 10 s.
func (n *notifySocket) next() string {
	n.t.Helper()
	buf := make([]byte, 4096)
	n.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	k, err := n.conn.Read(buf)
	if err != nil {
		n.t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:k])
}

// expect reads the next message and checks its first line is want.
func (n *notifySocket) expect(want string) string {
	n.t.Helper()
	msg := n.next()
	if first, _, _ := strings.Cut(msg, "\n"); first != want {
		n.t.Fatalf("sd_notify message %q, want %s", msg, want)
	}
	return msg
}

// TestSystemdNotify runs the binary with NOTIFY_SOCKET set, as systemd runs a Type=notify
// unit: READY=1 once it accepts; RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a
// SIGHUP, after the reload was applied (the listener it adds accepts) and also after a
// refused one; STOPPING=1 on SIGTERM,
// sent before it exits 0. Nothing else is sent.
func TestSystemdNotify(t *testing.T) {
	ns := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", ns.path)
	listen := freeAddr(t)
	backend := freeAddr(t) // never dialled: no login happens and health checks are off
	portRange, adminAddr := freeRange(t, 10), freeAddr(t)
	withAdmin := func(cfg string) string { return cfg + fmt.Sprintf("\n[admin]\naddress = %q\n", adminAddr) }
	p := startProxy(t, withAdmin(reloadConfig(listen, "", portRange, backend)))
	ns.expect("READY=1")
	if c, err := net.DialTimeout("tcp", listen, time.Second); err != nil {
		t.Fatalf("READY=1 sent but the listener refuses: %v", err)
	} else {
		c.Close()
	}

	// The reload adds a listener: once READY=1 arrives it must accept.
	listen2 := freeAddr(t)
	os.WriteFile(p.cfg, []byte(withAdmin(reloadConfig(listen, listen2, portRange, backend))), 0o644)
	p.signal(syscall.SIGHUP)
	msg := ns.expect("RELOADING=1")
	if !strings.Contains(msg, "\nMONOTONIC_USEC=") {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	ns.expect("READY=1")
	if c, err := net.DialTimeout("tcp", listen2, time.Second); err != nil {
		t.Fatalf("READY=1 after the reload, but its new listener refuses: %v", err)
	} else {
		c.Close()
	}
	waitLog(t, p, "config reloaded")

	os.WriteFile(p.cfg, []byte("[[listener]]\naddress = 1\n"), 0o644)
	p.signal(syscall.SIGHUP)
	ns.expect("RELOADING=1")
	ns.expect("READY=1")
	waitLog(t, p, "reload refused")
	// The reload metrics saw one applied and one refused reload, the refused one last.
	_, body := scrapeNames(t, "http://"+adminAddr+"/metrics")
	for _, want := range []string{`ftpsproxy_reloads_total{outcome="ok"} 1`, `ftpsproxy_reloads_total{outcome="failed"} 1`,
		"ftpsproxy_last_reload_successful 0"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "reload"))
		}
	}

	p.signal(syscall.SIGTERM)
	ns.expect("STOPPING=1")
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if p.code != 0 {
		t.Fatalf("exit %d after SIGTERM", p.code)
	}
	ns.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if k, err := ns.conn.Read(make([]byte, 4096)); err == nil {
		t.Fatalf("unexpected sd_notify message after STOPPING=1 (%d bytes)", k)
	}
}
