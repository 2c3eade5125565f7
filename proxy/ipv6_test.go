package proxy_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestIPv6Client: a client on [::1] uses EPSV and EPRT; PASV is refused toward EPSV; an
// EPRT to another address is refused.
func TestIPv6Client(t *testing.T) {
	be := startBackend(t, nil)
	os.WriteFile(filepath.Join(be.root, "f"), []byte("over IPv6"), 0o644)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Listeners[0].Address = "[::1]:0"
	})
	rc := dialRaw(t, p.addr)
	rc.login()
	rc.cmd("PASV", 501)
	rc.cmd("EPSV 1", 522)
	rc.cmd("EPRT |2|::2|5000|", 501)
	line := rc.cmd("EPSV 2", 229)
	port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
	dc, err := net.Dial("tcp", "[::1]:"+port)
	if err != nil {
		t.Fatal(err)
	}
	rc.send("RETR f\r\n")
	rc.expect(150)
	got, _ := io.ReadAll(dc)
	rc.expect(226)
	if string(got) != "over IPv6" {
		t.Fatalf("EPSV download %q", got)
	}
	// Active: EPRT to the client's own IPv6 address.
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, lport, _ := net.SplitHostPort(ln.Addr().String())
	rc.cmd("EPRT |2|::1|"+lport+"|", 200)
	rc.send("RETR f\r\n")
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc.expect(150)
	got, _ = io.ReadAll(c)
	rc.expect(226)
	if string(got) != "over IPv6" {
		t.Fatalf("EPRT download %q", got)
	}
}
