package proxy_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// The benchmarks run the proxy with its log at info, as in production: at debug every command
// is logged.

// BenchmarkSession is one whole short session through the proxy: connect, 220, USER, PASS,
// EPSV, RETR of 1 KiB, QUIT. Profile it with -cpuprofile to see the proxy's own cost per
// session (the in-process backend's cost shows up separately).
func BenchmarkSession(b *testing.B) {
	be := startBackend(b, nil)
	payload := strings.Repeat("x", 1024)
	os.WriteFile(filepath.Join(be.root, "f"), []byte(payload), 0o644)
	p := startProxyLogging(b, slog.LevelInfo, []balancer.BackendConfig{plainBackend(be.addr)})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rc := dialRaw(b, p.addr)
		rc.login()
		line := rc.cmd("EPSV", 229)
		port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
		dc, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			b.Fatal(err)
		}
		rc.send("RETR f\r\n")
		rc.expect(150)
		got, _ := io.ReadAll(dc)
		dc.Close()
		rc.expect(226)
		rc.cmd("QUIT", 221)
		rc.c.Close()
		if len(got) != len(payload) {
			b.Fatalf("got %d bytes", len(got))
		}
	}
}

// BenchmarkNoop is one NOOP round trip on a logged-in session: through the proxy, and
// directly to the same in-process backend for reference.
func BenchmarkNoop(b *testing.B) {
	be := startBackend(b, nil)
	p := startProxyLogging(b, slog.LevelInfo, []balancer.BackendConfig{plainBackend(be.addr)})
	for _, c := range []struct{ name, addr string }{{"direct", be.addr}, {"proxy", p.addr}} {
		b.Run(c.name, func(b *testing.B) {
			rc := dialRaw(b, c.addr)
			rc.login()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rc.send("NOOP\r\n")
				rc.expect(200)
			}
		})
	}
}

// BenchmarkImplicitHandshake is one connection to an implicit-TLS listener: connect, TLS
// handshake, the 220, close; through the proxy and, for reference, to a bare crypto/tls
// server that writes a 220 with the same certificate. "resumed" resumes the previous
// connection's session. The difference is what a session costs the proxy beside TLS.
func BenchmarkImplicitHandshake(b *testing.B) {
	opt, cc := withTLS(b, proxy.TLSImplicit, false)
	p := startProxyLogging(b, slog.LevelInfo, []balancer.BackendConfig{plainBackend("127.0.0.1:1")}, opt,
		func(c *proxy.Config, _ *balancer.PoolConfig) { c.Limits.MaxSessionsPerIP = 0 })
	pc := proxy.Config{Listeners: []proxy.ListenerConfig{{}}}
	opt(&pc, nil) // the same certificate for the bare server
	bare, err := tls.Listen("tcp", "127.0.0.1:0", pc.TLS.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	go func() {
		for {
			c, err := bare.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, "220 ready\r\n"); err != nil {
					return
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	for _, target := range []struct{ name, addr string }{{"bare", bare.Addr().String()}, {"proxy", p.addr}} {
		for _, resumed := range []bool{false, true} {
			name := target.name + "/full"
			if resumed {
				name = target.name + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				c := cc.Clone()
				c.ClientSessionCache = nil
				if resumed {
					c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				}
				one := func() bool {
					conn, err := tls.Dial("tcp", target.addr, c)
					if err != nil {
						b.Fatal(err)
					}
					defer conn.Close()
					line := make([]byte, 64)
					if n, err := conn.Read(line); err != nil || !strings.HasPrefix(string(line[:n]), "220") {
						b.Fatalf("greeting: %q %v", line[:n], err)
					}
					return conn.ConnectionState().DidResume
				}
				one()
				b.ResetTimer()
				for b.Loop() {
					if one() != resumed {
						b.Fatalf("resumed %v, want %v", !resumed, resumed)
					}
				}
			})
		}
	}
}
