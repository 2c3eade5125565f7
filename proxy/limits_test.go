package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// expectFinal reads everything the proxy sends until it closes and checks it is exactly
// want (one 421 line) after the lines already consumed.
func expectFinal(t *testing.T, rc *rawConn, want string) {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(rc.r.R)
	if err != nil {
		t.Fatalf("reading until close: %v (got %q)", err, rest)
	}
	if string(rest) != want+"\r\n" {
		t.Fatalf("got %q, want exactly %q then close", rest, want+"\r\n")
	}
}

// scriptedBackend is a minimal FTP server that logs anyone in and answers every other
// command with the given reply (for a backend that sends 421).
func scriptedBackend(t *testing.T, reply string) string {
	t.Helper()
	return connScriptBackend(t, func(c net.Conn) {
		defer c.Close()
		io.WriteString(c, "220 scripted\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case strings.HasPrefix(line, "USER"):
				io.WriteString(c, "331 pass\r\n")
			case strings.HasPrefix(line, "PASS"):
				io.WriteString(c, "230 in\r\n")
			default:
				io.WriteString(c, reply)
				if strings.HasPrefix(reply, "421") {
					return
				}
			}
		}
	})
}

// failThenLimited fails n logins on one connection, then sends PASS pass and expects the
// login-rate 421 and the close.
func failThenLimited(t *testing.T, addr string, n int, pass string) {
	t.Helper()
	rc := dialRaw(t, addr)
	for range n {
		rc.cmd("USER "+demoUser, 331)
		rc.cmd("PASS wrong", 530)
	}
	rc.cmd("USER "+demoUser, 331)
	rc.send("PASS " + pass + "\r\n")
	expectFinal(t, rc, "421 Too many login attempts, try again later")
}

// Test421Golden checks the exact bytes of every 421 cause and that the connection is closed.
func Test421Golden(t *testing.T) {
	t.Run("no backend", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		p := startProxy(t, []balancer.BackendConfig{plainBackend(dead)})
		rc := dialRaw(t, p.addr)
		rc.cmd("USER "+demoUser, 331)
		rc.send("PASS " + demoPass + "\r\n")
		expectFinal(t, rc, "421 Service not available, closing control connection")
	})
	t.Run("too many per ip", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.MaxSessionsPerIP = 2
		})
		a, b := dialRaw(t, p.addr), dialRaw(t, p.addr)
		a.login()
		b.login()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		if string(got) != "421 Too many connections, try again later\r\n" {
			t.Fatalf("got %q", got)
		}
		// Another address is not affected.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c2, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		line, _ := bufio.NewReader(c2).ReadString('\n')
		if !strings.HasPrefix(line, "220 ") {
			t.Fatalf("other address got %q", line)
		}
	})
	t.Run("too many global", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.MaxSessions = 1
		})
		a := dialRaw(t, p.addr)
		a.login()
		c, _ := net.Dial("tcp", p.addr)
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		if string(got) != "421 Too many connections, try again later\r\n" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("backend full", func(t *testing.T) {
		be := startBackend(t, nil)
		bc := plainBackend(be.addr)
		bc.MaxSessions = 1
		p := startProxy(t, []balancer.BackendConfig{bc})
		a := dialRaw(t, p.addr)
		a.login()
		b := dialRaw(t, p.addr)
		b.cmd("USER "+demoUser, 331)
		b.send("PASS " + demoPass + "\r\n")
		expectFinal(t, b, "421 Too many connections, try again later")
	})
	t.Run("login rate", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.LoginsPerMinute = 1
			c.Limits.LoginBurst = 3
		})
		failThenLimited(t, p.addr, 3, "wrong")
		// The address is banned now: a new connection gets the same 421 instead of the 220,
		// even with the right password at hand.
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, _ := io.ReadAll(c); string(got) != "421 Too many login attempts, try again later\r\n" {
			t.Fatalf("banned address on a new connection: got %q", got)
		}
		dialRawFrom(t, p.addr, "127.0.0.3") // another address is not banned: greeted
	})
	t.Run("login attempts cap", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.AttemptsPerMinute = 3
		})
		failThenLimited(t, p.addr, 3, demoPass)
		dialRaw(t, p.addr) // the cap bans nobody: the next connection is greeted
	})
	t.Run("login timeout", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.LoginTimeout = 300 * time.Millisecond
		})
		rc := dialRaw(t, p.addr)
		rc.cmd("USER "+demoUser, 331)
		expectFinal(t, rc, "421 Timeout, closing control connection")
	})
	t.Run("idle timeout", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.IdleTimeout = 300 * time.Millisecond
		})
		rc := dialRaw(t, p.addr)
		rc.login()
		expectFinal(t, rc, "421 Timeout, closing control connection")
	})
	t.Run("shutdown", func(t *testing.T) {
		be := startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
		a := dialRaw(t, p.addr)
		a.login()
		b := dialRaw(t, p.addr) // not logged in
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go p.srv.Shutdown(ctx)
		expectFinal(t, a, "421 Server shutting down, closing control connection")
		expectFinal(t, b, "421 Server shutting down, closing control connection")
	})
	t.Run("backend 421", func(t *testing.T) {
		addr := scriptedBackend(t, "421 Backend going down\r\n")
		p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)})
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.send("PWD\r\n")
		expectFinal(t, rc, "421 Backend going down")
	})
	t.Run("backend multi-line 421", func(t *testing.T) {
		addr := scriptedBackend(t, "421-Backend\r\n going\r\n421 down\r\n")
		p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)})
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.send("PWD\r\n")
		expectFinal(t, rc, "421 Backend") // one line, never a multi-line 421
	})
	t.Run("backend lost", func(t *testing.T) {
		addr := scriptedBackend(t, "garbage without a code\r\n")
		p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)})
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.send("PWD\r\n")
		expectFinal(t, rc, "421 Service not available, closing control connection")
	})
	t.Run("backend 6xx", func(t *testing.T) {
		addr := scriptedBackend(t, "631 protected reply\r\n")
		p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)})
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.send("PWD\r\n")
		expectFinal(t, rc, "421 Service not available, closing control connection")
	})
}

// TestLoginLimitsFitRealClients (SPEC §8): with the default limits, successful logins are
// never counted against an address or a user; failures on one user from several addresses
// are slowed (the 530 waits, doubling) but the owner's right password gets in at once.
func TestLoginLimitsFitRealClients(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Limits.LoginsPerMinute = proxy.DefaultLoginsPerMinute
		c.Limits.LoginBurst = proxy.DefaultLoginBurst
		c.Limits.AttemptsPerMinute = proxy.DefaultAttemptsPerMinute
	})
	for range 30 { // six times the failure budget, from one address
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.cmd("QUIT", 221)
	}
	var wg sync.WaitGroup
	delays := make([]time.Duration, 4)
	for i := range delays {
		wg.Go(func() {
			rc := dialRawFrom(t, p.addr, fmt.Sprintf("127.0.0.%d", 10+i))
			rc.cmd("USER "+demoUser, 331)
			start := time.Now()
			rc.send("PASS wrong\r\n")
			if code, line := rc.reply(); code != 530 {
				t.Errorf("failure %d: %q", i, line)
			}
			delays[i] = time.Since(start)
		})
	}
	wg.Wait()
	slices.Sort(delays)
	if delays[0] < 250*time.Millisecond || delays[3] < 2*time.Second {
		t.Fatalf("530 delays %v: want at least 250 ms, the 4th failure at least 2 s", delays)
	}
	rc := dialRawFrom(t, p.addr, "127.0.0.20")
	start := time.Now()
	rc.login()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the right password took %v after failures by others", d)
	}
}
