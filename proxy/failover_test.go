package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// silentBackend accepts TCP and never greets.
func silentBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

// greetingBackend greets with line and closes.
func greetingBackend(t *testing.T, line string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, line)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestFailoverSkipsBadBackends: a backend that never greets, one that greets 421 and one that
// greets 530 are skipped before the client sees anything; the session lands on the good one.
func TestFailoverSkipsBadBackends(t *testing.T) {
	good := startBackend(t, nil)
	os.WriteFile(filepath.Join(good.root, "which"), []byte("good"), 0o644)
	bad := []string{
		silentBackend(t),
		greetingBackend(t, "421 Too busy\r\n"),
		greetingBackend(t, "530 Go away\r\n"),
		greetingBackend(t, "garbage\r\n"),
	}
	var bcs []balancer.BackendConfig
	for _, a := range bad {
		bcs = append(bcs, plainBackend(a))
	}
	bcs = append(bcs, plainBackend(good.addr))
	p := startProxy(t, bcs, func(c *proxy.Config, pc *balancer.PoolConfig) {
		c.Limits.BackendTimeout = 300 * time.Millisecond
		c.Limits.GreetingTimeout = 300 * time.Millisecond // the silent one is skipped at once
		pc.Policy = balancer.LeastConn                    // configured order: the bad ones first
		pc.Health.Fall = 100                              // keep them in the order for every session
	})
	for range 3 {
		c := goClient(t, p.addr)
		r, err := c.Retr("which")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if string(b) != "good" {
			t.Fatalf("served by the wrong backend: %q", b)
		}
	}
}

// TestHealthChecks: a backend that dies is marked down by the active check within
// interval × fall; new sessions avoid it; when it returns it comes back after rise checks;
// with every backend down, new sessions get the 421 promptly.
func TestHealthChecks(t *testing.T) {
	a := startBackend(t, nil)
	os.WriteFile(filepath.Join(a.root, "which"), []byte("a"), 0o644)
	rootB := t.TempDir()
	os.WriteFile(filepath.Join(rootB, "which"), []byte("b"), 0o644)
	startB := func(addr string) *demoftp.Server {
		s, err := demoftp.Start(demoftp.Config{Addr: addr, Root: rootB, User: demoUser, Password: demoPass})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b := startB("127.0.0.1:0")
	bAddr := b.Addr()
	p := startProxy(t, []balancer.BackendConfig{plainBackend(a.addr), plainBackend(bAddr)}, func(c *proxy.Config, pc *balancer.PoolConfig) {
		pc.Health = balancer.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2}
	})
	pool := p.srv.Config().Pools[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pool.Check(ctx, p.srv.ProbeBackend, slog.New(slog.DiscardHandler))

	serverOf := func() string {
		c := goClient(t, p.addr)
		r, err := c.Retr("which")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, _ := io.ReadAll(r)
		return string(got)
	}
	b.Stop()
	waitFor(t, 2*time.Second, func() bool { return !pool.Backends[1].Healthy() })
	for range 6 {
		if s := serverOf(); s != "a" {
			t.Fatalf("session went to the dead backend %q", s)
		}
	}
	b = startB(bAddr)
	defer b.Stop()
	waitFor(t, 2*time.Second, func() bool { return pool.Backends[1].Healthy() })
	seen := map[string]bool{}
	for range 6 {
		seen[serverOf()] = true
	}
	if !seen["b"] {
		t.Fatal("recovered backend gets no sessions")
	}
	b.Stop()
	a.srv.Stop()
	waitFor(t, 2*time.Second, func() bool { return !pool.Backends[0].Healthy() && !pool.Backends[1].Healthy() })
	rc := dialRaw(t, p.addr)
	rc.cmd("USER "+demoUser, 331)
	start := time.Now()
	rc.send("PASS " + demoPass + "\r\n")
	expectFinal(t, rc, "421 Service not available, closing control connection")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("421 took %v", d)
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in " + limit.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
