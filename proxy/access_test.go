package proxy_test

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

const line421Denied = "421 Service not available, closing control connection"

// countingBackend accepts TCP connections, counts them and closes them at once: a backend
// that tells whether the proxy contacted it.
func countingBackend(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	return connScriptBackend(t, func(c net.Conn) { n.Add(1); c.Close() }), &n
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// denied421 checks that the proxy sent exactly the denied 421 and closed, no greeting first.
func denied421(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != line421Denied+"\r\n" {
		t.Fatalf("got %q, %v; want exactly %q then close", b, err, line421Denied)
	}
}

func deniedCount(m *admin.Metrics) uint64 {
	for _, c := range m.Counts421() {
		if c.Cause == "denied" {
			return c.Count
		}
	}
	return 0
}

func TestListenerAllowDeny(t *testing.T) {
	addr, contacts := countingBackend(t)
	m := admin.NewMetrics()
	p := startObservedProxy(t, m, []balancer.BackendConfig{plainBackend(addr)}, withProxyProtocol("127.0.0.1/32"),
		func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Listeners[0].Access = proxy.AccessList{
				Allow: prefixes("198.51.100.0/24", "2001:db8::/32"),
				Deny:  prefixes("198.51.100.128/25"),
			}
		})
	header := func(src string) string {
		if strings.Contains(src, ":") {
			return "PROXY TCP6 " + src + " 2001:db8:ffff::1 40000 21\r\n"
		}
		return "PROXY TCP4 " + src + " 203.0.113.10 40000 21\r\n"
	}
	for _, src := range []string{"198.51.100.200", "203.0.113.5", "10.0.0.1", "2001:db9::1"} {
		t.Run("refused "+src, func(t *testing.T) {
			before := deniedCount(m)
			c, _ := dialPP(t, p.addr, header(src))
			denied421(t, c)
			if got := deniedCount(m); got != before+1 {
				t.Fatalf("denied 421s counted %d, want %d", got, before+1)
			}
		})
	}
	if n := contacts.Load(); n != 0 {
		t.Fatalf("backend contacted %d times for refused clients", n)
	}
	for _, src := range []string{"198.51.100.7", "198.51.100.127", "2001:db8::7"} {
		t.Run("allowed "+src, func(t *testing.T) {
			c, r := dialPP(t, p.addr, header(src))
			rc := &rawConn{t: t, c: c, r: newTextReaderFrom(r)}
			rc.expect(220)
			before := contacts.Load()
			rc.cmd("USER demo", 331)
			rc.send("PASS x\r\n")
			rc.expect(421) // the counting backend hangs up: no backend, but it was tried
			if contacts.Load() == before {
				t.Fatal("an allowed client's login did not reach the backend")
			}
		})
	}
	if !strings.Contains(p.logs.String(), "client refused") || !strings.Contains(p.logs.String(), "client=198.51.100.200") {
		t.Fatalf("refusal not logged with the real client address:\n%s", p.logs.String())
	}
}

// TestDeniedLogRateLimited floods the proxy from a denied network: every connection gets
// its 421 and is counted, but the log holds only a few lines per second.
func TestDeniedLogRateLimited(t *testing.T) {
	addr, _ := countingBackend(t)
	m := admin.NewMetrics()
	p := startObservedProxy(t, m, []balancer.BackendConfig{plainBackend(addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Listeners[0].Access = proxy.AccessList{Deny: prefixes("127.0.0.0/8")}
	})
	const n = 60
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		denied421(t, c)
		c.Close()
	}
	elapsed := time.Since(start)
	if got := deniedCount(m); got != n {
		t.Fatalf("denied 421s counted %d, want %d", got, n)
	}
	logs := p.logs.String()
	lines := strings.Count(logs, "client refused")
	// The server's per-cause log limit (internal/logthrottle): a burst of 10, then 10 per
	// second; one spare for the tick boundary.
	limit := 10 + int(elapsed.Seconds()*10) + 1
	if lines < 1 || lines > limit || lines >= n {
		t.Fatalf("%d refusal lines for %d refusals in %v; want 1..%d", lines, n, elapsed, limit)
	}
	if strings.Contains(logs, "session start") || strings.Contains(logs, "session end") {
		t.Fatal("refused connections wrote session lines (not rate-limited)")
	}
	// A "suppressed N similar" line reports how many lines were dropped.
	time.Sleep(300 * time.Millisecond)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	denied421(t, c)
	c.Close()
	waitFor(t, 2*time.Second, func() bool { return strings.Contains(p.logs.String(), "suppressed=") })
}

func TestRouteAllowDeny(t *testing.T) {
	be := startBackend(t, nil)
	addr, contacts := countingBackend(t)
	m := admin.NewMetrics()
	p := startObservedProxy(t, m, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		office, err := balancer.NewPool(balancer.PoolConfig{Name: "office", Policy: "round_robin", Backends: []balancer.BackendConfig{plainBackend(addr)}})
		if err != nil {
			t.Fatal(err)
		}
		c.Pools = append(c.Pools, office)
		c.Routes = []proxy.Route{
			{User: "*@office", Pool: "office", Allow: prefixes("10.0.0.0/8")},
			{User: "demo", Pool: "default", Allow: prefixes("127.0.0.0/8"), Deny: prefixes("127.0.0.2/32")},
		}
	})
	t.Run("route refuses a client outside its allow list", func(t *testing.T) {
		rc := dialRaw(t, p.addr)
		rc.cmd("USER alice@office", 331)
		rc.send("PASS x\r\n")
		expectFinal(t, rc, line421Denied)
		if contacts.Load() != 0 {
			t.Fatal("the refused route's backend was contacted")
		}
		if deniedCount(m) != 1 {
			t.Fatalf("denied count %d, want 1", deniedCount(m))
		}
	})
	t.Run("route allows a client inside", func(t *testing.T) {
		rc := dialRaw(t, p.addr)
		rc.login()
		rc.cmd("QUIT", 221)
	})
	t.Run("route deny wins over allow", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		rc := &rawConn{t: t, c: c, r: newTextReader(c)}
		rc.expect(220)
		rc.cmd("USER demo", 331)
		rc.send("PASS " + demoPass + "\r\n")
		expectFinal(t, rc, line421Denied)
	})
}

func TestAccessListPermits(t *testing.T) {
	tests := []struct {
		name string
		a    proxy.AccessList
		ip   string
		want bool
	}{
		{"empty list admits all", proxy.AccessList{}, "203.0.113.1", true},
		{"deny only", proxy.AccessList{Deny: prefixes("10.0.0.0/8")}, "10.1.1.1", false},
		{"deny only, other address", proxy.AccessList{Deny: prefixes("10.0.0.0/8")}, "11.1.1.1", true},
		{"allow only, outside", proxy.AccessList{Allow: prefixes("10.0.0.0/8")}, "11.1.1.1", false},
		{"deny wins", proxy.AccessList{Allow: prefixes("10.0.0.0/8"), Deny: prefixes("10.0.0.5/32")}, "10.0.0.5", false},
		{"mapped ipv4", proxy.AccessList{Allow: prefixes("10.0.0.0/8")}, "::ffff:10.0.0.5", true},
		{"ipv6", proxy.AccessList{Allow: prefixes("2001:db8::/32")}, "2001:db8::1", true},
		{"ipv6 outside", proxy.AccessList{Allow: prefixes("2001:db8::/32")}, "2001:db9::1", false},
	}
	for _, tt := range tests {
		if got := tt.a.Permits(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("%s: Permits(%s) = %v, want %v", tt.name, tt.ip, got, tt.want)
		}
	}
}
