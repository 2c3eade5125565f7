package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// headerLog records the PROXY headers a backend received.
type headerLog struct {
	mu      sync.Mutex
	local   int      // LOCAL (v2) / UNKNOWN (v1): the proxy's own connections
	sources []string // PROXY: the client source each carried
}

func (h *headerLog) validate(hd *proxyproto.Header) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd.Command.IsLocal() {
		h.local++
	} else {
		h.sources = append(h.sources, hd.SourceAddr.String())
	}
	return nil
}

func (h *headerLog) counts() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.local, append([]string(nil), h.sources...)
}

// requireProxyHeader puts a go-proxyproto listener with policy REQUIRE in front of a backend:
// a connection without a valid header is dropped before the FTP server sees it.
func requireProxyHeader(log *headerLog) func(net.Listener) net.Listener {
	return func(ln net.Listener) net.Listener {
		return &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil },
			ValidateHeader:    log.validate,
			ReadHeaderTimeout: 2 * time.Second,
		}
	}
}

// greetFirst makes every accepted connection start with prefix, before the server's own 220.
type greetFirst struct {
	net.Listener
	prefix string
}

func (l greetFirst) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		io.WriteString(c, l.prefix)
	}
	return c, err
}

// countAccepts counts the connections a backend accepts.
type countAccepts struct {
	net.Listener
	n *atomic.Int64
}

func (l countAccepts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// runChecks runs the pool's active health checks with the proxy's probe until the test ends.
func runChecks(t *testing.T, p *testProxy, log *slog.Logger) *balancer.Pool {
	t.Helper()
	pool := p.srv.Config().Pools[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pool.Check(ctx, p.srv.ProbeBackend, log)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return pool
}

// roundTrip uploads random bytes through the proxy, downloads them again and checks both the
// backend's copy and the download by sha256.
func roundTrip(t *testing.T, p *testProxy, be backend) {
	t.Helper()
	data := make([]byte, 256<<10)
	rand.Read(data)
	c := goClient(t, p.addr)
	if err := c.Stor("through.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("through.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sha(got) != sha(data) || fileSHA(t, be.root+"/through.bin") != sha(data) {
		t.Fatal("transfer through the proxy changed the data")
	}
}

// TestProbeReachesBackendLikeASession: backends that need what a session sends (a PROXY v1 or
// v2 header under policy REQUIRE, a 120 before the 220, explicit TLS) stay up under health
// checks that mark a backend down at its first failed probe, and a session reaches them and
// transfers. The probe sends a LOCAL header, a session the client's address.
func TestProbeReachesBackendLikeASession(t *testing.T) {
	cert, _, err := tlsterm.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		proxyPP  balancer.ProxyVersion // the backend's proxy_protocol
		greeting string                // sent before the server's 220
		tls      bool
	}{
		{name: "proxy v2 required", proxyPP: balancer.ProxyV2},
		{name: "proxy v1 required", proxyPP: balancer.ProxyV1},
		{name: "120 then 220", greeting: "120 Service ready in 1 minute\r\n"},
		{name: "proxy v2 and explicit TLS", proxyPP: balancer.ProxyV2, tls: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var headers headerLog
			var accepted atomic.Int64
			be := startBackend(t, func(c *demoftp.Config) {
				c.Wrap = func(ln net.Listener) net.Listener {
					ln = countAccepts{Listener: ln, n: &accepted}
					if tt.greeting != "" {
						ln = greetFirst{Listener: ln, prefix: tt.greeting}
					}
					if tt.proxyPP != balancer.ProxyOff {
						ln = requireProxyHeader(&headers)(ln)
					}
					return ln
				}
				if tt.tls {
					c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
				}
			})
			bc := plainBackend(be.addr)
			bc.ProxyProtocol = tt.proxyPP
			if tt.tls {
				bt, err := tlsterm.BackendConfig(tlsterm.BackendOptions{Address: be.addr, Verify: false})
				if err != nil {
					t.Fatal(err)
				}
				bc.TLS, bc.TLSConfig = balancer.TLSExplicit, bt
			}
			p := startProxy(t, []balancer.BackendConfig{bc}, func(_ *proxy.Config, pc *balancer.PoolConfig) {
				// A probe's deadline is the interval: 250 ms leaves room on a loaded machine.
				pc.Health = balancer.HealthConfig{Interval: 250 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
			})
			checks := &lockedWriter{w: &bytes.Buffer{}}
			pool := runChecks(t, p, slog.New(slog.NewTextHandler(checks, nil)))
			waitFor(t, 5*time.Second, func() bool { return accepted.Load() >= 4 }) // probes only so far
			roundTrip(t, p, be)
			if !pool.Backends[0].Healthy() || strings.Contains(checks.String(), "backend down") || strings.Contains(checks.String(), "health check failed") {
				t.Fatalf("backend marked down by the health check:\n%s", checks.String())
			}
			if tt.proxyPP != balancer.ProxyOff {
				local, sources := headers.counts()
				if local < 4 || len(sources) == 0 {
					t.Fatalf("%d LOCAL headers (probes), sessions' sources %v", local, sources)
				}
			}
		})
	}
}

// connScriptBackend accepts connections and hands each to script in its own goroutine; the
// connections are closed when the test ends.
func connScriptBackend(t *testing.T, script func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { script(c) })
		}
	})
	return ln.Addr().String()
}

// stream writes first, then chunk again and again until the peer goes away.
func stream(first string, chunk []byte) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		if _, err := io.WriteString(c, first); err != nil {
			return
		}
		for {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}
}

// rssBytes is the process's resident set size from /proc/self/status.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestProbeBoundedAgainstFloodingBackend: a backend that greets and then streams 1 MiB chunks
// with no line end (or an endless multi-line greeting) fails every probe at the reply bounds,
// is logged and marked down, and the process's RSS and heap stay within a few MiB of where
// they started over seconds of probing (unbounded, 1.5 GiB/s would arrive here).
func TestProbeBoundedAgainstFloodingBackend(t *testing.T) {
	mib := bytes.Repeat([]byte("x"), 1<<20)
	line := append(bytes.Repeat([]byte("x"), 4<<10), '\r', '\n')
	tests := []struct {
		name   string
		script func(net.Conn)
		cause  string // in the logged error
	}{
		{"220 then no line end", stream("220", mib), "line over"},
		{"endless multi-line 220", stream("220-welcome\r\n", line), "multi-line reply over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := connScriptBackend(t, tt.script)
			p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)}, func(_ *proxy.Config, pc *balancer.PoolConfig) {
				pc.Health = balancer.HealthConfig{Interval: 100 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}
			})
			runtime.GC()
			baseRSS := rssBytes(t)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			baseHeap := ms.HeapInuse
			checks := &lockedWriter{w: &bytes.Buffer{}}
			pool := runChecks(t, p, slog.New(slog.NewTextHandler(checks, nil)))
			var peakRSS int64
			var peakHeap uint64
			deadline := time.Now().Add(2 * time.Second) // 20 probes
			for time.Now().Before(deadline) {
				peakRSS = max(peakRSS, rssBytes(t))
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("RSS %d → peak %d KiB, heap in use %d → peak %d KiB", baseRSS>>10, peakRSS>>10, baseHeap>>10, peakHeap>>10)
			if pool.Backends[0].Healthy() {
				t.Fatal("a flooding backend is still up")
			}
			logs := checks.String()
			if !strings.Contains(logs, `msg="backend down"`) || !strings.Contains(logs, tt.cause) {
				t.Fatalf("the cause is not logged (want %q):\n%s", tt.cause, logs)
			}
			if d := peakRSS - baseRSS; d > 48<<20 {
				t.Fatalf("RSS grew by %d MiB while probing", d>>20)
			}
			if d := int64(peakHeap) - int64(baseHeap); d > 16<<20 {
				t.Fatalf("heap grew by %d MiB while probing", d>>20)
			}
		})
	}
}

// TestHungBackendDownWithinFallIntervals: with health_interval 1s and the default fall (3)
// and timeout (3s), a backend that accepts TCP and never greets is down within fall ×
// interval + 1 s: each probe's deadline is the interval, not the 3 s timeout.
func TestHungBackendDownWithinFallIntervals(t *testing.T) {
	addr := connScriptBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)}, func(_ *proxy.Config, pc *balancer.PoolConfig) {
		pc.Health = balancer.HealthConfig{Interval: time.Second}
	})
	pool := p.srv.Config().Pools[0]
	if pool.Health.Fall != 3 || pool.Health.Timeout != 3*time.Second {
		t.Fatalf("defaults changed: fall %d, timeout %v", pool.Health.Fall, pool.Health.Timeout)
	}
	start := time.Now()
	runChecks(t, p, slog.New(slog.DiscardHandler))
	waitFor(t, 10*time.Second, func() bool { return !pool.Backends[0].Healthy() })
	took := time.Since(start)
	t.Logf("hung backend down after %v", took)
	if limit := 3*time.Second + time.Second; took > limit {
		t.Fatalf("down after %v, want within fall × interval + 1 s = %v", took, limit)
	}
}

// loginRefused sends USER and PASS through the proxy and expects the no-backend 421.
func loginRefused(t *testing.T, addr string) {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.cmd("USER "+demoUser, 331)
	rc.send("PASS " + demoPass + "\r\n")
	expectFinal(t, rc, "421 Service not available, closing control connection")
}

// TestPassiveEjectionNeedsFallFailures: sessions that fail to reach a backend together (ten
// stalled by the same silent greeting) count as one failure; only fall failures in a row take
// the backend out, as with active checks.
func TestPassiveEjectionNeedsFallFailures(t *testing.T) {
	addr := connScriptBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := startProxy(t, []balancer.BackendConfig{plainBackend(addr)}, func(c *proxy.Config, pc *balancer.PoolConfig) {
		c.Limits.GreetingTimeout = time.Second // long enough for all ten to be waiting at once
		// Checks on (passive reports count only then) but never due during the test.
		pc.Health = balancer.HealthConfig{Interval: time.Hour, Fall: 3}
	})
	b := p.srv.Config().Pools[0].Backends[0]
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { loginRefused(t, p.addr) })
	}
	wg.Wait()
	if !b.Healthy() {
		t.Fatal("ten overlapping greeting timeouts took the backend out")
	}
	loginRefused(t, p.addr)
	if !b.Healthy() {
		t.Fatal("down after two failures in a row, fall is 3")
	}
	loginRefused(t, p.addr)
	if b.Healthy() {
		t.Fatal("still up after three failures in a row")
	}
	if !regexp.MustCompile(`msg="backend down" .*pool=default backend=` + regexp.QuoteMeta(addr) + ` by=session err=.*greeting`).MatchString(p.logs.String()) {
		t.Fatalf("ejection not logged:\n%s", p.logs.String())
	}
}

// TestPanicMode: with no healthy backend a session still tries the pool's backends (and
// reaches a backend the checks wrongly think down), logged and counted; with panic off it
// gets the 421 at once; a pool whose backends are really gone gets the 421 within the
// connect deadline either way.
func TestPanicMode(t *testing.T) {
	off := false
	for _, panicOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("panic=%v", panicOn), func(t *testing.T) {
			be := startBackend(t, nil)
			p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, pc *balancer.PoolConfig) {
				if !panicOn {
					pc.Panic = &off
				}
			})
			pool := p.srv.Config().Pools[0]
			for pool.Backends[0].Healthy() {
				pool.Report(pool.Backends[0], false)
			}
			if !panicOn {
				loginRefused(t, p.addr)
				return
			}
			roundTrip(t, p, be)
			if !strings.Contains(p.logs.String(), "panic mode") {
				t.Fatal("panic mode not logged")
			}
		})
	}
	t.Run("backends gone", func(t *testing.T) {
		gone := []string{closedPort(t), closedPort(t)}
		p := startProxy(t, []balancer.BackendConfig{plainBackend(gone[0]), plainBackend(gone[1])}, func(c *proxy.Config, pc *balancer.PoolConfig) {
			c.Limits.BackendTimeout = 2 * time.Second
		})
		pool := p.srv.Config().Pools[0]
		for _, b := range pool.Backends {
			for b.Healthy() {
				pool.Report(b, false)
			}
		}
		start := time.Now()
		loginRefused(t, p.addr)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the 421 took %v, more than backend_timeout", d)
		}
		if n := strings.Count(p.logs.String(), "backend failed, trying next"); n != 2 {
			t.Fatalf("%d backends tried in panic mode, want both", n)
		}
	})
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
