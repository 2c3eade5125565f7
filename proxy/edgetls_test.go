package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/testpki"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

func leafSum(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// withServerTLS uses srv as the explicit listener's TLS.
func withServerTLS(srv *tlsterm.Server, certUser tlsterm.ClientCertUser) proxyOpt {
	return func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Listeners[0].TLS = proxy.TLSExplicit
		c.TLS = srv
		c.ClientCertUser = certUser
	}
}

// authTLS connects, upgrades with AUTH TLS under cc and returns the TLS control connection.
func authTLS(t *testing.T, addr string, cc *tls.Config) (*rawConn, *tls.Conn) {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.c, cc)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return &rawConn{t: t, c: tc, r: newTextReader(tc)}, tc
}

// TestSNICertificateOnData chooses the control certificate by SNI and checks that the data
// connection, whose ClientHello has no SNI, gets the same certificate, and the transfer is
// intact.
func TestSNICertificateOnData(t *testing.T) {
	ca := testpki.NewCA(t, "sni CA")
	dir := t.TempDir()
	certs := map[string]*testpki.Leaf{
		"a.example":     ca.Server(t, 0, "a.example"),
		"x.b.example":   ca.Server(t, 0, "*.b.example"),
		"default.local": ca.Server(t, 0, "default.local"),
	}
	certs["a.example"].WritePair(t, dir, "a")
	certs["x.b.example"].WritePEM(t, dir, "b-wild")
	certs["default.local"].WritePEM(t, dir, "default")
	srv, err := tlsterm.NewServer(tlsterm.ServerOptions{CertDir: dir, DefaultCertificate: "default"})
	if err != nil {
		t.Fatal(err)
	}
	be := startBackend(t, nil)
	data := []byte(strings.Repeat("sni data ", 40000))
	if err := os.WriteFile(filepath.Join(be.root, "f.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withServerTLS(srv, tlsterm.CertUserOff))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	for name, leaf := range certs {
		t.Run(name, func(t *testing.T) {
			sni := name
			if name == "default.local" {
				sni = "" // no SNI: the default certificate
			}
			cc := &tls.Config{RootCAs: roots, ServerName: sni, InsecureSkipVerify: sni == "", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			rc, tc := authTLS(t, p.addr, cc)
			if got := leafSum(tc.ConnectionState().PeerCertificates[0]); got != leaf.Fingerprint() {
				t.Fatalf("control certificate for SNI %q is %v", sni, tc.ConnectionState().PeerCertificates[0].DNSNames)
			}
			rc.login()
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT P", 200)
			line := rc.cmd("EPSV", 229)
			port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
			dc, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			rc.send("RETR f.bin\r\n")
			rc.expect(150)
			// No SNI and no verification on the data connection: what matters is which
			// certificate the proxy picks without a name.
			dtc := tls.Client(dc, &tls.Config{InsecureSkipVerify: true})
			dtc.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(dtc)
			dtc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if fp := leafSum(dtc.ConnectionState().PeerCertificates[0]); fp != leaf.Fingerprint() {
				t.Fatalf("data connection got %v, control had %v", dtc.ConnectionState().PeerCertificates[0].DNSNames, leaf.Cert.DNSNames)
			}
			if sha(got) != sha(data) {
				t.Fatal("download corrupted")
			}
			rc.expect(226)
		})
	}
}

func TestClientCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "server CA")
	dir := t.TempDir()
	ca.Server(t, 0, "ftp.example").WritePEM(t, dir, "ftp")
	clients := testpki.NewCA(t, "client CA")
	caFile := clients.WriteCA(t, dir, "clients.ca")
	strangers := testpki.NewCA(t, "stranger CA")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	clientCfg := func(l *testpki.Leaf) *tls.Config {
		cc := &tls.Config{RootCAs: roots, ServerName: "ftp.example"}
		if l != nil {
			cc.Certificates = []tls.Certificate{l.TLS(t)}
		}
		return cc
	}
	be := startBackend(t, nil)

	newProxy := func(auth tlsterm.ClientAuth, user tlsterm.ClientCertUser) *testProxy {
		srv, err := tlsterm.NewServer(tlsterm.ServerOptions{CertDir: dir, ClientAuth: auth, ClientCAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		return startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, withServerTLS(srv, user))
	}

	t.Run("required, cn matches", func(t *testing.T) {
		p := newProxy(tlsterm.ClientAuthRequired, tlsterm.CertUserCN)
		rc, _ := authTLS(t, p.addr, clientCfg(clients.Client(t, demoUser)))
		rc.login()
		if !strings.Contains(p.logs.String(), `cert_subject="CN=demo,O=ftpsproxy tests"`) {
			t.Fatalf("session log lacks the certificate subject:\n%s", p.logs.String())
		}
	})
	t.Run("required, cn is another user", func(t *testing.T) {
		p := newProxy(tlsterm.ClientAuthRequired, tlsterm.CertUserCN)
		rc, _ := authTLS(t, p.addr, clientCfg(clients.Client(t, "mallory")))
		rc.cmd("USER "+demoUser, 331)
		rc.cmd("PASS "+demoPass, 530)
		if !strings.Contains(p.logs.String(), "login refused by client certificate") || !strings.Contains(p.logs.String(), `CN \"mallory\"`) {
			t.Fatalf("refusal not logged with its reason:\n%s", p.logs.String())
		}
	})
	t.Run("san-email", func(t *testing.T) {
		p := newProxy(tlsterm.ClientAuthRequired, tlsterm.CertUserSANEmail)
		rc, _ := authTLS(t, p.addr, clientCfg(clients.Client(t, "x", "demo@example.com")))
		rc.cmd("USER "+demoUser, 331)
		rc.cmd("PASS "+demoPass, 530) // USER demo is not demo@example.com
	})
	for _, tc := range []struct {
		name string
		leaf *testpki.Leaf
	}{{"required, no certificate", nil}, {"required, unknown CA", strangers.Client(t, demoUser)}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(tlsterm.ClientAuthRequired, tlsterm.CertUserOff)
			rc := dialRaw(t, p.addr)
			rc.cmd("AUTH TLS", 234)
			c := tls.Client(rc.c, clientCfg(tc.leaf))
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// In TLS 1.3 the client finishes first; the server's refusal arrives on read.
			err := c.Handshake()
			if err == nil {
				_, err = c.Read(make([]byte, 1))
			}
			if err == nil {
				t.Fatal("handshake without a valid client certificate succeeded")
			}
			waitFor(t, 2*time.Second, func() bool { return strings.Contains(p.logs.String(), "client TLS handshake failed") })
		})
	}
	t.Run("optional, no certificate, no name check", func(t *testing.T) {
		p := newProxy(tlsterm.ClientAuthOptional, tlsterm.CertUserOff)
		rc, _ := authTLS(t, p.addr, clientCfg(nil))
		rc.login()
	})
	t.Run("optional, no certificate, cn required", func(t *testing.T) {
		p := newProxy(tlsterm.ClientAuthOptional, tlsterm.CertUserCN)
		rc, _ := authTLS(t, p.addr, clientCfg(nil))
		rc.cmd("USER "+demoUser, 331)
		rc.cmd("PASS "+demoPass, 530)
	})
}
