package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// identityConfig is a proxy in front of one pool whose backends are given as TOML lines.
func identityConfig(listen, portRange, health, backends, extra string) string {
	return fmt.Sprintf(`
[[listener]]
address = %q
pool = "farm"

[data]
port_range = %q

[[pool]]
name = "farm"
policy = "least_conn"
health_interval = %q
health_timeout = "500ms"
health_rise = 2
health_fall = 2
%s
[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0
backend_timeout = "10s"
shutdown_grace = "20s"

[log]
level = "debug"
%s`, listen, portRange, health, backends, extra)
}

// reloadWith writes cfg and sends SIGHUP, then waits for the n-th "config reloaded" line.
func reloadWith(t *testing.T, p *proxyProc, cfg string) {
	t.Helper()
	n := strings.Count(p.logs.String(), "config reloaded")
	if err := os.WriteFile(p.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return strings.Count(p.logs.String(), "config reloaded") > n })
}

// TestReloadKeepsBackendAccounting is issue 14's case: a backend with max_sessions = 1 runs a
// download; a SIGHUP (same config) must not reset its count, so a second session still gets
// "421 Too many connections" after the reload, and the download finishes with its sha256.
func TestReloadKeepsBackendAccounting(t *testing.T) {
	v := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 20)})
	_, data := randomData(t, t.TempDir(), "big", 16<<20)
	v.WriteFile(t, "big", data)
	v.WriteFile(t, "marker", []byte("v1"))
	cfg := identityConfig(freeAddr(t), freeRange(t, 20), "1s",
		fmt.Sprintf("[[pool.backend]]\nname = \"v1\"\naddress = %q\nmax_sessions = 1\n", v.Addr), "")
	p := startProxy(t, cfg)

	c := login(t, p.addr)
	defer c.Quit()
	r, head := startDownload(t, c, "big")
	got := append(make([]byte, 0, len(data)), head...)

	second := func(when string) {
		t.Helper()
		_, s, err := session(p.addr, "", "")
		if err == nil {
			s.Close()
			t.Fatalf("%s: a second session was admitted to a backend with max_sessions = 1 and a download running", when)
		}
		if !is421(err, "Too many connections, try again later") {
			t.Fatalf("%s: second session: %v, want 421 Too many connections", when, err)
		}
	}
	second("before the reload")
	reloadWith(t, p, cfg)
	second("after the reload")

	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, rest...)
	if err := r.Close(); err != nil {
		t.Fatalf("download's final reply: %v", err)
	}
	if sum(got) != sum(data) {
		t.Fatal("download across the reload: sha256 differs")
	}
	// The slot is free again once the download's session ends.
	c.Quit()
	waitFor(t, 5*time.Second, func() bool {
		_, s, err := session(p.addr, "", "")
		if err == nil {
			s.Close()
		}
		return err == nil
	})
}

// hungBackend accepts TCP connections and never greets; it returns its address and a count
// of connections accepted.
func hungBackend(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	return ln.Addr().String(), func() int { return len(accepted) }
}

// TestReloadAddedBackendWaitsForProbe: a backend added by a reload that accepts TCP but never
// greets gets no session (each login is answered at once by the working backend, never after
// the 10 s backend_timeout), and the reload's log line names it as added.
func TestReloadAddedBackendWaitsForProbe(t *testing.T) {
	v := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 40)})
	v.WriteFile(t, "marker", []byte("v1"))
	hung, _ := hungBackend(t)
	listen, ports := freeAddr(t), freeRange(t, 40)
	one := fmt.Sprintf("[[pool.backend]]\naddress = %q\n", v.Addr)
	p := startProxy(t, identityConfig(listen, ports, "2s", one, ""))
	// least_conn with the new backend at 0 sessions would pick it first for every session.
	reloadWith(t, p, identityConfig(listen, ports, "2s", one+fmt.Sprintf("[[pool.backend]]\nname = \"hung\"\naddress = %q\n", hung), ""))
	waitLog(t, p, "backends_added=farm/hung")
	for i := range 10 {
		start := time.Now()
		name, s, err := session(p.addr, "", "")
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		s.Close()
		if name != "v1" {
			t.Fatalf("session %d went to %q", i, name)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("session %d took %v: it waited for the hung backend", i, d)
		}
	}
	if strings.Contains(p.logs.String(), "backend failed, trying next") {
		t.Fatal("a session tried the hung backend")
	}
	if strings.Contains(p.logs.String(), "backend up") {
		t.Fatal("the hung backend was reported up")
	}
}
