package proxy_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// BenchmarkSession is one whole short session through the proxy: connect, 220, USER, PASS,
// EPSV, RETR of 1 KiB, QUIT. Profile it with -cpuprofile to see the proxy's own cost per
// session (the in-process backend's cost shows up separately).
func BenchmarkSession(b *testing.B) {
	be := startBackend(b, nil)
	payload := strings.Repeat("x", 1024)
	os.WriteFile(filepath.Join(be.root, "f"), []byte(payload), 0o644)
	p := startProxy(b, []balancer.BackendConfig{plainBackend(be.addr)})
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
	p := startProxy(b, []balancer.BackendConfig{plainBackend(be.addr)})
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
