package proxy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
	"github.com/jlaffaye/ftp"
)

// withTLS makes the proxy's listener use mode with a fresh self-signed certificate and returns
// a client config that trusts it.
func withTLS(t testing.TB, mode proxy.TLSMode, requireReuse bool) (proxyOpt, *tls.Config) {
	t.Helper()
	cert, pemBytes, err := tlsterm.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tlsterm.NewServer(tlsterm.ServerOptions{Source: tlsterm.StaticSource{Cert: cert}})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	cc := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	return func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Listeners[0].TLS = mode
		c.TLS = srv
		c.RequireDataReuse = requireReuse
	}, cc
}

// TestExplicitTLSTransfers runs a Go client with AUTH TLS and PROT P through the proxy to a
// plain backend, with data-session reuse required (the Go client resumes).
func TestExplicitTLSTransfers(t *testing.T) {
	for _, mode := range []proxy.TLSMode{proxy.TLSExplicit, proxy.TLSRequired, proxy.TLSImplicit} {
		t.Run(mode.String(), func(t *testing.T) {
			be := startBackend(t, nil)
			opt, cc := withTLS(t, mode, true)
			p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)
			dial := ftp.DialWithExplicitTLS(cc)
			if mode == proxy.TLSImplicit {
				dial = ftp.DialWithTLS(cc)
			}
			c := goClient(t, p.addr, dial)
			src, want := randomFile(t, t.TempDir(), 2<<20+3)
			b, _ := readAll(src)
			if err := c.Stor("up.bin", bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			if got := fileSHA(t, filepath.Join(be.root, "up.bin")); got != want {
				t.Fatal("upload corrupted")
			}
			r, err := c.Retr("up.bin")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if sha(got) != want {
				t.Fatal("download corrupted")
			}
			if _, err := c.List("/"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTLSOrderErrors checks the RFC 4217 ordering replies.
func TestTLSOrderErrors(t *testing.T) {
	be := startBackend(t, nil)
	opt, cc := withTLS(t, proxy.TLSRequired, false)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)
	rc := dialRaw(t, p.addr)
	rc.cmd("PBSZ 0", 503)
	rc.cmd("PROT P", 503)
	rc.cmd("ADAT abc", 503)
	rc.cmd("CCC", 533)
	rc.cmd("MIC x", 537)
	rc.cmd("CONF x", 537)
	rc.cmd("ENC x", 537)
	rc.cmd("AUTH GSSAPI", 504)
	rc.cmd("USER "+demoUser, 534)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.c, cc)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := &rawConn{t: t, c: tc, r: newTextReader(tc)}
	tr.cmd("AUTH TLS", 503)
	tr.cmd("PROT P", 503)
	tr.cmd("PBSZ 0", 200)
	tr.cmd("PROT S", 536)
	tr.cmd("PROT E", 536)
	tr.cmd("PROT C", 534)
	tr.login()
	tr.cmd("EPSV", 229)
	tr.cmd("LIST", 521)
	tr.cmd("PROT P", 200)
	tr.cmd("CCC", 533)
}

// TestPipelinedAfterAuth sends a command right behind AUTH TLS, before the handshake: the
// session is closed and the command never runs.
func TestPipelinedAfterAuth(t *testing.T) {
	be := startBackend(t, nil)
	opt, _ := withTLS(t, proxy.TLSExplicit, false)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)
	rc := dialRaw(t, p.addr)
	rc.send("AUTH TLS\r\nUSER " + demoUser + "\r\n")
	if !rc.closed() {
		t.Fatal("session not closed after pipelined bytes")
	}
}

// TestAuthOnPlainListener: AUTH on a tls = "none" listener is 502.
func TestAuthOnPlainListener(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.cmd("AUTH TLS", 502)
	rc.cmd("PBSZ 0", 503)
}

// tlsSession logs in over explicit TLS with its own client config and returns the control
// connection.
func tlsSession(t *testing.T, addr string, cc *tls.Config) *rawConn {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.c, cc)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := &rawConn{t: t, c: tc, r: newTextReader(tc)}
	tr.cmd("PBSZ 0", 200)
	tr.cmd("PROT P", 200)
	tr.login()
	return tr
}

// epsvData opens a passive data connection and runs cmd over TLS with cc, returning the
// final reply code and the bytes read.
func epsvData(t *testing.T, tr *rawConn, cmd string, cc *tls.Config) (int, []byte) {
	t.Helper()
	line := tr.cmd("EPSV", 229)
	port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
	raw, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tr.send(cmd + "\r\n")
	tr.expect(150)
	dc := tls.Client(raw, cc)
	var data []byte
	if err := dc.Handshake(); err == nil {
		data, _ = io.ReadAll(dc)
	}
	code, _ := tr.reply()
	return code, data
}

// TestDataSessionReuseRequired: a data connection that resumes its own control session
// transfers; one with no ticket or another session's ticket gets 522, and the session goes on.
func TestDataSessionReuseRequired(t *testing.T) {
	be := startBackend(t, nil)
	os.WriteFile(filepath.Join(be.root, "f"), []byte("payload"), 0o644)
	opt, base := withTLS(t, proxy.TLSExplicit, true)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)

	ccA := base.Clone()
	ccA.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	a := tlsSession(t, p.addr, ccA)
	if code, data := epsvData(t, a, "RETR f", ccA); code != 226 || string(data) != "payload" {
		t.Fatalf("resuming client: %d %q", code, data)
	}

	ccB := base.Clone()
	ccB.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	b := tlsSession(t, p.addr, ccB)
	// B's data connection presents A's ticket.
	if code, _ := epsvData(t, b, "RETR f", ccA); code != 522 {
		t.Fatalf("foreign ticket: reply %d, want 522", code)
	}
	// No ticket at all.
	noCache := base.Clone()
	noCache.ClientSessionCache = nil
	if code, _ := epsvData(t, b, "RETR f", noCache); code != 522 {
		t.Fatalf("no ticket: reply %d, want 522", code)
	}
	// The session goes on and its own ticket works.
	if code, data := epsvData(t, b, "RETR f", ccB); code != 226 || string(data) != "payload" {
		t.Fatalf("after refusals: %d %q", code, data)
	}
}

// TestTLSBadInput: a ClientHello on a plain port, garbage instead of a handshake, a stalled
// handshake, and a backend whose certificate fails verification.
func TestTLSBadInput(t *testing.T) {
	be := startBackend(t, nil)
	opt, cc := withTLS(t, proxy.TLSExplicit, false)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Limits.TLSHandshake = 500 * time.Millisecond
	})
	t.Run("ClientHello on a plain port", func(t *testing.T) {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := tls.Client(c, cc)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatal("handshake succeeded on a plain port")
		}
	})
	t.Run("garbage after AUTH", func(t *testing.T) {
		rc := dialRaw(t, p.addr)
		rc.cmd("AUTH TLS", 234)
		rc.send("this is not a TLS record\r\n")
		if !rc.closed() {
			t.Fatal("session survived a failed handshake")
		}
	})
	t.Run("stalled handshake", func(t *testing.T) {
		rc := dialRaw(t, p.addr)
		rc.cmd("AUTH TLS", 234)
		start := time.Now()
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(rc.c); err != nil {
			t.Fatalf("not closed: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("stalled handshake held for %v", d)
		}
	})
	t.Run("plaintext after AUTH", func(t *testing.T) {
		rc := dialRaw(t, p.addr)
		rc.cmd("AUTH TLS", 234)
		rc.send("USER demo\r\n")
		if !rc.closed() {
			t.Fatal("plaintext accepted after AUTH TLS")
		}
	})
}

// TestBackendCertificateRefused: a TLS backend whose certificate does not verify is not used;
// the client gets the 421 and the failure is logged.
func TestBackendCertificateRefused(t *testing.T) {
	cert, _, err := tlsterm.SelfSigned("wrong.example")
	if err != nil {
		t.Fatal(err)
	}
	p, rc := loginToTLSBackend(t, cert, tlsterm.BackendOptions{Verify: true})
	expectFinal(t, rc, "421 Service not available, closing control connection")
	if !strings.Contains(p.logs.String(), "certificate") {
		t.Fatal("the certificate failure is not in the logs")
	}
}

// loginToTLSBackend starts an explicit-TLS backend presenting cert and a proxy that reaches it
// with opts (Address filled in), then sends USER and PASS through the proxy; the caller reads
// the outcome of the PASS.
func loginToTLSBackend(t *testing.T, cert *tls.Certificate, opts tlsterm.BackendOptions) (*testProxy, *rawConn) {
	t.Helper()
	be := startBackend(t, func(c *demoftp.Config) {
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	})
	opts.Address = be.addr
	bt, err := tlsterm.BackendConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	bc := plainBackend(be.addr)
	bc.TLS, bc.TLSConfig = balancer.TLSExplicit, bt
	p := startProxy(t, []balancer.BackendConfig{bc})
	rc := dialRaw(t, p.addr)
	rc.cmd("USER "+demoUser, 331)
	rc.send("PASS " + demoPass + "\r\n")
	return p, rc
}

// TestBackendCertificateExpired: a backend certificate that is trusted (ca_file) and names the
// backend, but has expired, is refused like any other failed verification: 421 to the client
// and "expired" in the log. The same setup with a current certificate logs in, so the refusal
// is the expiry and nothing else.
func TestBackendCertificateExpired(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		wantOK   bool
	}{
		{"current", time.Now().Add(time.Hour), true},
		{"expired", time.Now().Add(-time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, pemBytes := certValidUntil(t, tc.notAfter, "127.0.0.1")
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			p, rc := loginToTLSBackend(t, cert, tlsterm.BackendOptions{Verify: true, CAFile: caFile})
			if tc.wantOK {
				rc.expect(230)
				return
			}
			expectFinal(t, rc, "421 Service not available, closing control connection")
			if !strings.Contains(p.logs.String(), "expired") {
				t.Fatalf("the expiry is not in the logs:\n%s", p.logs.String())
			}
		})
	}
}

// certValidUntil makes a self-signed ECDSA certificate for hosts that was valid from a day
// before notAfter until notAfter, and returns it with its PEM (to be trusted as a root).
func certValidUntil(t *testing.T, notAfter time.Time, hosts ...string) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(notAfter.UnixNano()),
		Subject:               pkix.Name{CommonName: "backend"},
		NotBefore:             notAfter.Add(-24 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestControlResumesEarlierSession: a control connection may resume the TLS session of an
// earlier control connection (a reconnecting client skips the full handshake); its data
// connections resume the new session, and the earlier session's ticket is refused there.
func TestControlResumesEarlierSession(t *testing.T) {
	be := startBackend(t, nil)
	os.WriteFile(filepath.Join(be.root, "f"), []byte("payload"), 0o644)
	opt, base := withTLS(t, proxy.TLSExplicit, true)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)

	cache := &memoCache{m: map[string]*tls.ClientSessionState{}}
	cc := base.Clone()
	cc.ClientSessionCache = cache
	first := tlsSession(t, p.addr, cc)
	if first.c.(*tls.Conn).ConnectionState().DidResume {
		t.Fatal("first control connection resumed with an empty cache")
	}
	if code, data := epsvData(t, first, "RETR f", cc); code != 226 || string(data) != "payload" {
		t.Fatalf("first session: %d %q", code, data)
	}
	first.cmd("QUIT", 221)
	old := base.Clone()
	old.ClientSessionCache = cache.clone()

	second := tlsSession(t, p.addr, cc)
	if !second.c.(*tls.Conn).ConnectionState().DidResume {
		t.Fatal("second control connection did not resume the first one's session")
	}
	if code, data := epsvData(t, second, "RETR f", cc); code != 226 || string(data) != "payload" {
		t.Fatalf("data connection of the resumed session: %d %q", code, data)
	}
	if code, _ := epsvData(t, second, "RETR f", old); code != 522 {
		t.Fatalf("data connection with the earlier session's ticket: reply %d, want 522", code)
	}
}

// memoCache is a ClientSessionCache that can be copied, to replay an older ticket.
type memoCache struct {
	mu sync.Mutex
	m  map[string]*tls.ClientSessionState
}

func (c *memoCache) Get(k string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *memoCache) Put(k string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == nil {
		delete(c.m, k)
		return
	}
	c.m[k] = s
}

func (c *memoCache) clone() *memoCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &memoCache{m: maps.Clone(c.m)}
}

// TestTLSClientGetsCloseNotify: after QUIT a TLS client receives close_notify before the
// connection closes (TLS 1.2, so the alert's record type shows on the wire).
func TestTLSClientGetsCloseNotify(t *testing.T) {
	be := startBackend(t, nil)
	opt, base := withTLS(t, proxy.TLSExplicit, false)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)
	cc := base.Clone()
	cc.MaxVersion = tls.VersionTLS12
	rc := dialRaw(t, p.addr)
	rc.cmd("AUTH TLS", 234)
	rec := &recordTap{Conn: rc.c}
	tc := tls.Client(rec, cc)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := &rawConn{t: t, c: tc, r: newTextReader(tc)}
	tr.login()
	tr.cmd("QUIT", 221)
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(tc); err != nil {
		t.Fatalf("after QUIT: %v", err)
	}
	if rec.last != 21 {
		t.Fatalf("last record type %d, want 21 (alert: close_notify)", rec.last)
	}
}

// recordTap notes the type of the last whole TLS record read through it.
type recordTap struct {
	net.Conn
	buf  []byte
	last byte
}

func (r *recordTap) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.buf = append(r.buf, p[:n]...)
	for len(r.buf) >= 5 {
		size := 5 + (int(r.buf[3])<<8 | int(r.buf[4]))
		if len(r.buf) < size {
			break
		}
		r.last = r.buf[0]
		r.buf = r.buf[size:]
	}
	return n, err
}
