package proxy_test

// Issue 13 items 5, 6 and 7: log lines an outsider can cause are rate-limited per cause,
// commands that make a backend announce an address are answered by the proxy, and PORT/EPRT
// never reach the proxy's own admin or ACME listeners.

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// infoLine matches one record of the text handler at info level or above, and its message.
var infoLine = regexp.MustCompile(`(?m)^time=\S+ level=(?:INFO|WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// checkFloodLogged runs flood against p (whose log is at info level) and checks the lines
// written from its start until a second after it: those with message msg at most 10 a second
// (plus the one burst of 10), every line at most 100 a second (plus the burst of 100), and a
// "suppressed N similar" line for msg. want is how many events the flood caused; at least
// that many must have been counted (logged or suppressed) for msg.
func checkFloodLogged(t *testing.T, p *testProxy, msg string, flood func() (events int)) {
	t.Helper()
	from := len(p.logs.String())
	start := time.Now()
	events := flood()
	d := time.Since(start)
	time.Sleep(1500 * time.Millisecond) // the summaries are due a second after the flood
	secs := math.Ceil(d.Seconds()) + 2
	text := p.logs.String()[from:]
	lines := infoLine.FindAllStringSubmatch(text, -1)
	own, counted := 0, 0
	for _, l := range lines {
		m, _ := strconv.Unquote(l[1])
		if m == "" {
			m = l[1]
		}
		if m == msg {
			own++
		}
	}
	counted = own + suppressedCount(text, msg)
	t.Logf("%d events in %v: %d lines of %q, %d lines in all, %d counted", events, d.Round(time.Millisecond), own, msg, len(lines), counted)
	if own > 10+int(10*secs) {
		t.Errorf("%d lines of %q in about %v s: over 10 a second", own, msg, secs)
	}
	if len(lines) > 100+int(100*secs) {
		t.Errorf("%d lines in about %v s: over 100 a second", len(lines), secs)
	}
	if counted < events {
		t.Errorf("%d of %d events logged or counted in a summary", counted, events)
	}
}

// suppressedCount adds up the "suppressed N similar" summaries of msg in text.
func suppressedCount(text, msg string) int {
	sum := regexp.MustCompile(`msg="suppressed (\d+) similar" cause=` + regexp.QuoteMeta(strconv.Quote(msg)))
	total := 0
	for _, m := range sum.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

// loggedOrCounted is how many msg events text shows: lines plus the summaries' counts.
func loggedOrCounted(text, msg string) int {
	return strings.Count(text, "msg="+strconv.Quote(msg)+" ") + suppressedCount(text, msg)
}

// infoProxy is a proxy logging at info level in front of a recording backend.
func infoProxy(t *testing.T, hook recHook, opts ...proxyOpt) (*testProxy, *recBackend) {
	be := startRecBackend(t, "127.0.0.1:0", hook)
	opts = append([]proxyOpt{func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Data.ConnectTimeout = 2 * time.Second
		c.Limits.TLSHandshake = time.Second
	}}, opts...)
	return startProxyLogging(t, slog.LevelInfo, []balancer.BackendConfig{plainBackend(be.addr)}, opts...), be
}

func loginExact(t *testing.T, addr, user string) *exactClient {
	t.Helper()
	c := dialExact(t, addr)
	c.expect(greeting)
	c.send("USER " + user + "\r\nPASS " + corpusPassword + "\r\n")
	c.expect(proxy.ReplyUserOK)
	c.expect("230 rec welcome")
	return c
}

func TestLogFloodsLimited(t *testing.T) {
	t.Run("foreign data peers", func(t *testing.T) {
		p, _ := infoProxy(t, nil)
		c := loginExact(t, p.addr, "u1")
		c.send("PASV\r\n")
		port, err := port227(c.expect("227 *"))
		if err != nil {
			t.Fatal(err)
		}
		before := p.srv.Foreign.Load()
		checkFloodLogged(t, p, "data connection from a foreign address refused", func() int {
			// The proxy refuses foreign peers while it waits for the client's (connect_timeout).
			c.send("RETR f\r\n")
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
			// A dial the proxy resets at once may report the reset itself: count the ones
			// that did not fail, as a floor.
			ok := 0
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
				if bad, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
					ok++
					bad.Close()
				}
			}
			c.expect(proxy.ReplyCantOpen)
			waitFor(t, 3*time.Second, func() bool { return p.srv.Foreign.Load()-before >= uint64(ok) })
			// Every refused connection is an event the metric counts; the log must account
			// for each of them too.
			return int(p.srv.Foreign.Load() - before)
		})
	})
	t.Run("refused PORT", func(t *testing.T) {
		p, _ := infoProxy(t, nil)
		c := loginExact(t, p.addr, "u2")
		checkFloodLogged(t, p, "data connection target refused", func() int {
			const n = 3000
			go io.WriteString(c.c, strings.Repeat("PORT 10,1,2,3,20,0\r\n", n)) // a write error shows as a missing reply below
			for range n {
				c.expect(proxy.ReplyPortRefused)
			}
			return n
		})
	})
	t.Run("unsolicited backend lines", func(t *testing.T) {
		const n = 100000
		p, be := infoProxy(t, func(s *recSess, verb, _ string) bool {
			if verb != "CWD" {
				return false
			}
			s.raw("250 ok\r\n" + strings.Repeat("200 stray\r\n", n))
			return true
		})
		c := loginExact(t, p.addr, "u3")
		msg := "unsolicited reply from backend dropped"
		checkFloodLogged(t, p, msg, func() int {
			c.send("CWD /\r\n")
			c.expect("250 ok")
			// The strays are dropped as they come; every one is logged or counted.
			waitFor(t, 10*time.Second, func() bool { return loggedOrCounted(p.logs.String(), msg) >= n })
			return n
		})
		c.send("NOOP\r\n")
		c.expect("200 rec NOOP")
		if be.count() != 1 {
			t.Fatalf("%d backend sessions", be.count())
		}
	})
	t.Run("connection refused (PROXY header)", func(t *testing.T) {
		p, be := infoProxy(t, nil, withProxyProtocol("10.0.0.0/8"))
		checkFloodLogged(t, p, "connection refused", func() int {
			return dialFlood(t, p.addr, 800, "USER x\r\n")
		})
		if be.count() != 0 {
			t.Fatal("a backend was contacted")
		}
	})
	t.Run("TLS handshake failures", func(t *testing.T) {
		opt, _ := withTLS(t, proxy.TLSImplicit, false)
		p, _ := infoProxy(t, nil, opt)
		checkFloodLogged(t, p, "client TLS handshake failed", func() int {
			return dialFlood(t, p.addr, 800, "GET / HTTP/1.1\r\n\r\n")
		})
		if !strings.Contains(p.logs.String(), `reason="not TLS"`) {
			t.Fatal("the cause of the failures was not logged in words")
		}
	})
	t.Run("plain connect and close", func(t *testing.T) {
		p, _ := infoProxy(t, nil)
		checkFloodLogged(t, p, "session end", func() int {
			return dialFlood(t, p.addr, 1500, "")
		})
	})
	t.Run("banned address", func(t *testing.T) {
		p, _ := infoProxy(t, nil, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.LoginsPerMinute, c.Limits.LoginBurst = 1, 1
		})
		failThenLimitedExact(t, p.addr)
		checkFloodLogged(t, p, "banned address refused", func() int {
			return dialFlood(t, p.addr, 800, "")
		})
	})
}

// failThenLimitedExact fails one login (the budget of 1) and is banned at the second.
func failThenLimitedExact(t *testing.T, addr string) {
	c := dialExact(t, addr)
	c.expect(greeting)
	c.send("USER a\r\nPASS bad1\r\n")
	c.expect(proxy.ReplyUserOK)
	c.expect(proxy.ReplyLoginBad)
	c.send("USER a\r\nPASS bad2\r\n")
	c.expect(proxy.ReplyUserOK)
	c.expectClose(proxy.Line421(proxy.CauseLoginRate) + "\r\n")
}

// dialFlood makes n connections to addr, one after the other, each sending send (if any)
// and waiting for the proxy to close it; it returns n.
func dialFlood(t *testing.T, addr string, n int, send string) int {
	var ok atomic.Int64
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		if send != "" {
			io.WriteString(c, send)
		} else {
			c.(*net.TCPConn).CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
		ok.Add(1)
	}
	if ok.Load() < int64(n)*9/10 {
		t.Fatalf("only %d of %d connections made", ok.Load(), n)
	}
	return int(ok.Load())
}

// TestAddressVerbsRefused (issue 13 item 6): every command that makes a backend announce an
// address is answered 502 by the proxy and never reaches the backend, even one that would
// answer with its private address.
func TestAddressVerbsRefused(t *testing.T) {
	p, be := infoProxy(t, func(s *recSess, verb, _ string) bool {
		switch verb {
		case "SPSV", "CPSV", "LPSV", "ESTP":
			s.reply("227 Entering Passive Mode (10,9,8,7,200,1)")
		case "ESTA":
			s.reply("225 Connected from (10,9,8,7,200,1)")
		default:
			return false
		}
		return true
	})
	c := loginExact(t, p.addr, "u")
	for _, v := range []string{"SPSV", "CPSV", "LPSV", "ESTP", "ESTA", "spsv", "CPSV 1"} {
		c.send(v + "\r\n")
		c.expect(proxy.ReplyAddrVerbRefused(strings.ToUpper(strings.Fields(v)[0])))
	}
	c.send("NOOP\r\n")
	c.expect("200 rec NOOP")
	got := be.find("u").snapshot()
	if want := []string{"USER u\r\n", "PASS pw\r\n", "NOOP\r\n"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backend received %q, want %q", got, want)
	}
}

// TestPortToOwnAddrsRefused (issue 13 item 7): PORT and EPRT (also IPv4-mapped) to the
// proxy's admin or ACME address, bound to one address or to all, are refused with 501 and
// nothing is dialled; the same client's PORT to its own other port is accepted.
func TestPortToOwnAddrsRefused(t *testing.T) {
	adminTrap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer adminTrap.Close()
	acmeTrap, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer acmeTrap.Close()
	adminAP := adminTrap.Addr().(*net.TCPAddr).AddrPort()
	acmePort := acmeTrap.Addr().(*net.TCPAddr).AddrPort().Port()
	p, be := infoProxy(t, nil, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.OwnAddrs = []netip.AddrPort{adminAP, netip.AddrPortFrom(netip.IPv6Unspecified(), acmePort)}
	})
	c := loginExact(t, p.addr, "u")
	for _, cmd := range []string{
		fmt.Sprintf("PORT 127,0,0,1,%d,%d", adminAP.Port()>>8, adminAP.Port()&0xff),
		fmt.Sprintf("EPRT |2|::ffff:127.0.0.1|%d|", adminAP.Port()),
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", adminAP.Port()),
		fmt.Sprintf("PORT 127,0,0,1,%d,%d", acmePort>>8, acmePort&0xff),
		fmt.Sprintf("EPRT |2|::ffff:127.0.0.1|%d|", acmePort),
	} {
		c.send(cmd + "\r\nLIST\r\n")
		c.expect(proxy.ReplyPortRefused)
		c.expect(proxy.ReplyNeedData)
	}
	for _, trap := range []net.Listener{adminTrap, acmeTrap} {
		trap.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
		if conn, err := trap.Accept(); err == nil {
			conn.Close()
			t.Fatalf("%s was dialled", trap.Addr())
		}
	}
	c.send("PORT 127,0,0,1,200,10\r\n") // the control case: the client's own, other port
	c.expect(proxy.ReplyPortOK)
	c.send("NOOP\r\n")
	c.expect("200 rec NOOP")
	if got := be.find("u").snapshot(); len(got) != 3 {
		t.Fatalf("backend received %q", got)
	}
}
