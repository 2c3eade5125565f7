package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/jlaffaye/ftp"
)

const (
	demoUser = "demo"
	demoPass = "demo-secret"
)

// backend is an in-process FTP server serving a temp dir.
type backend struct {
	addr string
	root string
	srv  *demoftp.Server
}

func startBackend(t testing.TB, mod func(*demoftp.Config)) backend {
	t.Helper()
	root := t.TempDir()
	c := demoftp.Config{Addr: "127.0.0.1:0", Root: root, User: demoUser, Password: demoPass}
	if mod != nil {
		mod(&c)
	}
	srv, err := demoftp.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return backend{addr: srv.Addr(), root: root, srv: srv}
}

// testProxy is a running proxy in front of some backends.
type testProxy struct {
	srv  *proxy.Server
	addr string
	logs *lockedWriter
}

type proxyOpt func(*proxy.Config, *balancer.PoolConfig)

func startProxy(t testing.TB, backends []balancer.BackendConfig, opts ...proxyOpt) *testProxy {
	t.Helper()
	return startProxyWith(t, nil, slog.LevelDebug, backends, opts...)
}

// startObservedProxy is startProxy with an Observer (metrics) attached.
func startObservedProxy(t testing.TB, obs proxy.Observer, backends []balancer.BackendConfig, opts ...proxyOpt) *testProxy {
	t.Helper()
	return startProxyWith(t, obs, slog.LevelDebug, backends, opts...)
}

// startProxyLogging is startProxy with its log at level.
func startProxyLogging(t testing.TB, level slog.Level, backends []balancer.BackendConfig, opts ...proxyOpt) *testProxy {
	t.Helper()
	return startProxyWith(t, nil, level, backends, opts...)
}

// startProxyWith starts a proxy with an Observer (nil: none) and its log at level.
func startProxyWith(t testing.TB, obs proxy.Observer, level slog.Level, backends []balancer.BackendConfig, opts ...proxyOpt) *testProxy {
	t.Helper()
	pc := balancer.PoolConfig{Name: "default", Policy: "round_robin", Backends: backends}
	cfg := proxy.Config{
		Listeners: []proxy.ListenerConfig{{Address: "127.0.0.1:0", TLS: proxy.TLSNone, Pool: "default", Banner: "FTP proxy ready"}},
		Data: proxy.DataConfig{
			PortRange:      freePorts(t),
			AllowActive:    true,
			ConnectTimeout: 5 * time.Second,
		},
		Limits: proxy.Limits{IdleTimeout: time.Minute, LoginTimeout: 30 * time.Second, BackendTimeout: 5 * time.Second},
	}
	for _, o := range opts {
		o(&cfg, &pc)
	}
	pool, err := balancer.NewPool(pc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pools = append(cfg.Pools, pool)
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	srv, err := proxy.New(cfg, log, obs)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &testProxy{srv: srv, addr: srv.Addrs()[0].String(), logs: logs}
}

func plainBackend(addr string) balancer.BackendConfig {
	return balancer.BackendConfig{Address: addr, DataMode: balancer.DataPassive, FixPasvAddress: true}
}

func randomFile(t testing.TB, dir string, size int) (string, string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(dir, "rand.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, sha(b)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

func goClient(t testing.TB, addr string, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	opts = append([]ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}, opts...)
	c, err := ftp.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(demoUser, demoPass); err != nil {
		t.Fatal(err)
	}
	return c
}

// lockedWriter serialises writes from concurrent sessions into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

// String returns what was written so far.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// rawConn is a line-level client for adversarial tests: it writes exact bytes and reads
// whole replies.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *textproto.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, addr, "")
}

// dialRawFrom is dialRaw from source address src ("": any).
func dialRawFrom(t testing.TB, addr, src string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: t, c: c, r: newTextReader(c)}
	rc.expect(220)
	return rc
}

// send writes s verbatim (the caller adds CRLF).
func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one whole reply and returns its code and first-line text.
func (rc *rawConn) reply() (int, string) {
	rc.t.Helper()
	line, err := rc.r.ReadLine()
	if err != nil {
		rc.t.Fatalf("read reply: %v", err)
	}
	if len(line) < 4 {
		rc.t.Fatalf("short reply %q", line)
	}
	code, _ := strconv.Atoi(line[:3])
	if line[3] == '-' {
		for {
			l, err := rc.r.ReadLine()
			if err != nil {
				rc.t.Fatalf("read multi-line reply: %v", err)
			}
			if strings.HasPrefix(l, line[:3]+" ") {
				break
			}
		}
	}
	return code, line
}

// expect reads one reply and fails unless its code is want; it returns the first line.
func (rc *rawConn) expect(want int) string {
	rc.t.Helper()
	code, line := rc.reply()
	if code != want {
		rc.t.Fatalf("got %q, want code %d", line, want)
	}
	return line
}

// cmd sends one command line and expects a reply code.
func (rc *rawConn) cmd(line string, want int) string {
	rc.t.Helper()
	rc.send(line + "\r\n")
	return rc.expect(want)
}

func (rc *rawConn) login() {
	rc.t.Helper()
	rc.cmd("USER "+demoUser, 331)
	rc.cmd("PASS "+demoPass, 230)
}

// closed reports whether the server closed the connection (EOF within a second).
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.r.ReadLine()
	return err == io.EOF
}

func newTextReader(r io.Reader) *textproto.Reader { return textproto.NewReader(bufio.NewReader(r)) }

func readAll(p string) ([]byte, error) { return os.ReadFile(p) }

func newTextReaderFrom(r *bufio.Reader) *textproto.Reader { return textproto.NewReader(r) }

// freePorts is a passive range outside the kernel's ephemeral ports, so it never holds a
// test client's own (ephemeral) PORT target: the proxy refuses PORT into its own range. The
// in-process proxies of this package share one range (each allocator skips ports another
// holds), so the tests never run out of ranges to claim.
func freePorts(t testing.TB) nat.PortRange {
	sharedRangeOnce.Do(func() {
		r := peers.FreePortRange(t, 1000)
		sharedRange = nat.PortRange{First: uint16(r[0]), Last: uint16(r[1])}
	})
	return sharedRange
}

var (
	sharedRangeOnce sync.Once
	sharedRange     nat.PortRange
)
