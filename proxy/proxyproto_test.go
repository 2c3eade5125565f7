package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

func withProxyProtocol(trusted ...string) proxyOpt {
	return func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Listeners[0].ProxyProtocol = true
		for _, p := range trusted {
			c.Listeners[0].TrustedProxies = append(c.Listeners[0].TrustedProxies, netip.MustParsePrefix(p))
		}
	}
}

// dialPP connects and sends header bytes first, returning the connection and its reader.
func dialPP(t *testing.T, addr, header string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if header != "" {
		io.WriteString(c, header)
	}
	return c, bufio.NewReader(c)
}

// refused checks the proxy closed the connection without a greeting.
func refused(t *testing.T, r *bufio.Reader) {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil || len(b) != 0 {
		t.Fatalf("expected a silent close, got %q, %v", b, err)
	}
}

func TestProxyProtocolIn(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withProxyProtocol("127.0.0.1/32"))

	t.Run("trusted v1 sets the client address", func(t *testing.T) {
		c, r := dialPP(t, p.addr, "PROXY TCP4 198.51.100.7 203.0.113.10 40000 21\r\n")
		rc := &rawConn{t: t, c: c, r: newTextReaderFrom(r)}
		rc.expect(220)
		rc.login()
		// PORT must name the client's real address now, not the proxy's 127.0.0.1.
		rc.cmd("PORT 127,0,0,1,200,10", 501)
		rc.cmd("PORT 198,51,100,7,200,10", 200)
		// PASV announces what the client connected to (the header's destination).
		if l := rc.cmd("PASV", 227); !strings.Contains(l, "(203,0,113,10,") {
			t.Fatalf("227 = %q", l)
		}
		// A data connection from 127.0.0.1 is not from the client: refused.
		before := p.srv.Foreign.Load()
		line := rc.cmd("EPSV", 229)
		port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
		dc, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close()
		rc.send("LIST\r\n")
		dc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := dc.Read(make([]byte, 1)); err == nil {
			t.Fatal("foreign data connection was served")
		}
		waitFor(t, 2*time.Second, func() bool { return p.srv.Foreign.Load() == before+1 })
		if !strings.Contains(p.logs.String(), "client=198.51.100.7:40000") {
			t.Fatal("logs do not show the real client address")
		}
	})
	t.Run("trusted v2", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 21})
		b, _ := h.Format()
		c, r := dialPP(t, p.addr, string(b))
		rc := &rawConn{t: t, c: c, r: newTextReaderFrom(r)}
		rc.expect(220)
		rc.login()
	})
	t.Run("missing header", func(t *testing.T) {
		_, r := dialPP(t, p.addr, "USER demo\r\n")
		refused(t, r)
	})
	t.Run("malformed v1", func(t *testing.T) {
		_, r := dialPP(t, p.addr, "PROXY TCP4 999.1.1.1 1.2.3.4 1 2\r\n")
		refused(t, r)
	})
	t.Run("v1 bad port", func(t *testing.T) {
		_, r := dialPP(t, p.addr, "PROXY TCP4 1.1.1.1 1.2.3.4 70000 2\r\n")
		refused(t, r)
	})
	t.Run("oversized v1", func(t *testing.T) {
		_, r := dialPP(t, p.addr, "PROXY TCP4 "+strings.Repeat("1", 200)+"\r\n")
		refused(t, r)
	})
	t.Run("split across slow writes", func(t *testing.T) {
		// The PROXY spec lets a receiver drop a header that does not arrive in one piece;
		// go-proxyproto does, which also defeats slow-loris headers.
		c, r := dialPP(t, p.addr, "PROXY TCP4 198.51.")
		time.Sleep(300 * time.Millisecond)
		io.WriteString(c, "100.8 127.0.0.1 1000 21\r\n")
		refused(t, r)
	})
	t.Run("truncated then silent, others unaffected", func(t *testing.T) {
		_, r := dialPP(t, p.addr, "PROXY TCP4 198.51.100.9 ")
		c2, r2 := dialPP(t, p.addr, "PROXY TCP4 198.51.100.10 127.0.0.1 1000 21\r\n")
		rc := &rawConn{t: t, c: c2, r: newTextReaderFrom(r2)}
		rc.expect(220)
		rc.login()
		refused(t, r) // after the header timeout
	})
}

func TestProxyProtocolUntrusted(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withProxyProtocol("10.0.0.0/8"))
	_, r := dialPP(t, p.addr, "PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\r\n")
	refused(t, r)
}

// headerBackend accepts one connection, parses the PROXY header with go-proxyproto (an
// independent receiver), then plays a minimal FTP server.
func headerBackend(t *testing.T) (string, <-chan *proxyproto.Header) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan *proxyproto.Header, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err != nil {
			got <- nil
			return
		}
		got <- h
		io.WriteString(c, "220 ok\r\n")
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
				io.WriteString(c, "200 ok\r\n")
			}
		}
	}()
	return ln.Addr().String(), got
}

func TestProxyProtocolOut(t *testing.T) {
	for _, v := range []balancer.ProxyVersion{balancer.ProxyV1, balancer.ProxyV2} {
		t.Run(v.String(), func(t *testing.T) {
			addr, got := headerBackend(t)
			bc := plainBackend(addr)
			bc.ProxyProtocol = v
			opt, cc := withTLS(t, proxy.TLSExplicit, false)
			p := startProxy(t, []balancer.BackendConfig{bc}, opt)
			rc := dialRaw(t, p.addr)
			rc.cmd("HOST ftp.example.test", 220)
			rc.cmd("AUTH TLS", 234)
			tc := tls.Client(rc.c, cc)
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			tr := &rawConn{t: t, c: tc, r: newTextReader(tc)}
			tr.login()
			h := <-got
			if h == nil {
				t.Fatal("backend could not parse the header")
			}
			src, _, _ := h.TCPAddrs()
			if src.String() != rc.c.LocalAddr().String() {
				t.Fatalf("header source %s, want the client %s", src, rc.c.LocalAddr())
			}
			if v == balancer.ProxyV2 {
				tlvs, err := h.TLVs()
				if err != nil {
					t.Fatal(err)
				}
				var authority string
				for _, tlv := range tlvs {
					if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
						authority = string(tlv.Value)
					}
				}
				if authority != "ftp.example.test" {
					t.Fatalf("authority TLV %q", authority)
				}
				ssl, ok := tlvparse.FindSSL(tlvs)
				if !ok || !ssl.ClientSSL() {
					t.Fatal("no SSL TLV")
				}
				if ver, _ := ssl.SSLVersion(); !strings.HasPrefix(ver, "TLS 1.") {
					t.Fatalf("SSL version TLV %q", ver)
				}
			}
		})
	}
}

// TestProxyProtocolLocal (issue 15 item 3): a PROXY v2 LOCAL header from a trusted proxy (a
// health check) is accepted with the real endpoints: greeted, answered, and logged at debug
// only. From an untrusted peer it is refused like any header.
func TestProxyProtocolLocal(t *testing.T) {
	be := startBackend(t, nil)
	local := proxyV2Header(0x20, 0x00, 0, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withProxyProtocol("127.0.0.1/32"))
	c, r := dialPP(t, p.addr, local)
	rc := &rawConn{t: t, c: c, r: newTextReaderFrom(r)}
	rc.expect(220)
	rc.cmd("NOOP", 200)
	rc.cmd("QUIT", 221)
	waitFor(t, 3*time.Second, func() bool { return strings.Contains(p.logs.String(), `msg="session end" session=1 client=127.0.0.1`) })
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, "health_check=true") && !strings.Contains(l, "level=DEBUG") {
			t.Fatalf("a health check logged above debug: %s", l)
		}
	}
	u := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withProxyProtocol("10.0.0.0/8"))
	_, r = dialPP(t, u.addr, local)
	refused(t, r)
}
