package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/pebble"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/jlaffaye/ftp"
)

const acmeDomain = "ftp.test.example"

// TestACMEThroughProxy runs the binary with [tls.acme] against a real ACME CA (pebble, whose
// DNS sends every name to 127.0.0.1, so its HTTP-01 validation really reaches the proxy's
// http_address) in front of a plain vsftpd. A client that verifies the full chain against
// pebble's issuing root and the name ftp.test.example does AUTH TLS, an upload and a
// download. After SIGTERM (exit 0) a restart on the same storage orders nothing and serves
// the same certificate.
func TestACMEThroughProxy(t *testing.T) {
	t0 := time.Now()
	ca := pebble.Start(t, pebble.Options{})
	backend := peers.StartVsftpd(t, peers.Options{})
	roots := ca.IssuerRoots(t)
	t.Logf("pebble and vsftpd ready after %v", time.Since(t0).Round(time.Millisecond))

	listen := freeAddr(t)
	cfg := fmt.Sprintf(`
[[listener]]
address = %q
tls = "explicit"
pool = "farm"

[tls.acme]
domains = [%q]
email = "ops@test.example"
ca = %q
ca_root = %q
storage = %q
http_address = %q

[data]
port_range = %q
connect_timeout = "10s"

[[pool]]
name = "farm"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "info"
`, listen, acmeDomain, ca.Directory, ca.MinicaRoot, t.TempDir(), ca.HTTPAddress,
		freeRange(t, 20), backend.Addr)

	// First start: nothing in storage. The listener accepts only once the certificate is
	// there, so by now pebble has validated and issued.
	t1 := time.Now()
	p := startProxy(t, cfg)
	t.Logf("proxy listening (certificate obtained) after %v", time.Since(t1).Round(time.Millisecond))
	if n := ca.Orders(); n != 1 {
		t.Fatalf("pebble saw %d orders, want 1", n)
	}
	if want := "Attempting to validate w/ HTTP: http://" + acmeDomain + ":" + strconv.Itoa(ca.HTTPPort) + "/"; !strings.Contains(ca.Log(), want) {
		t.Fatalf("pebble did not validate over HTTP-01 at the proxy's http_address (%q missing)", want)
	}
	logs := p.logs.String()
	for _, m := range []string{`msg="obtaining certificate"`, `msg="certificate obtained successfully"`, `msg="acme certificate ready"`} {
		if !strings.Contains(logs, m) {
			t.Errorf("the proxy log lacks %s", m)
		}
	}
	serial := acmeReadySerial(t, p)

	got := acmeTransfer(t, listen, roots, "first.bin")
	if got != serial {
		t.Fatalf("client saw serial %s, the proxy logged %s", got, serial)
	}
	acmeNoSNI(t, listen, roots, serial)

	// A reload that changes [tls.acme] keeps the old value, says so in one warning per key,
	// and applies the rest; the certificate in use stays and nothing is ordered.
	reloadWith(t, p, strings.Replace(cfg, `email = "ops@test.example"`, `email = "new@test.example"`, 1))
	waitLog(t, p, `level=WARN msg="tls.acme.email: changed; takes effect at restart"`)
	if got := acmeTransfer(t, listen, roots, "after-reload.bin"); got != serial || ca.Orders() != 1 {
		t.Fatalf("after a reload changing tls.acme.email: serial %s (want %s), %d orders", got, serial, ca.Orders())
	}

	// SIGTERM: clean exit.
	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if p.code != 0 {
		t.Fatalf("exit code %d after SIGTERM", p.code)
	}

	// Restart on the same storage: the certificate is loaded, not ordered again.
	t2 := time.Now()
	pidFile := filepath.Join(t.TempDir(), "ftpsproxy.pid")
	p2 := startProxyArgs(t, cfg, "-pidfile", pidFile)
	t.Logf("restarted proxy listening after %v", time.Since(t2).Round(time.Millisecond))
	if n := ca.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders after the restart, want still 1", n)
	}
	logs2 := p2.logs.String()
	for _, m := range []string{`msg="obtaining certificate"`, `msg="certificate obtained successfully"`} {
		if strings.Contains(logs2, m) {
			t.Errorf("the restarted proxy logged %s: storage was not reused", m)
		}
	}
	if s := acmeReadySerial(t, p2); s != serial {
		t.Errorf("restarted proxy logged serial %s, want %s", s, serial)
	}
	if s := acmeTransfer(t, listen, roots, "second.bin"); s != serial {
		t.Errorf("after the restart the client saw serial %s, want %s", s, serial)
	}

	// SIGUSR2: the new process inherits the control listener and the ACME HTTP-01 listener
	// (binding http_address again would fail while the old process still holds it) and loads
	// the certificate from storage.
	upgrade(t, p2, pidFile)
	if s := acmeTransfer(t, listen, roots, "third.bin"); s != serial || ca.Orders() != 1 {
		t.Errorf("after the upgrade: serial %s (want %s), %d orders (want 1)", s, serial, ca.Orders())
	}
	t.Logf("whole test %v", time.Since(t0).Round(time.Millisecond))
}

// acmeReadySerial returns the serial in the proxy's "acme certificate ready" record.
func acmeReadySerial(t *testing.T, p *proxyProc) string {
	t.Helper()
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if !strings.Contains(l, `msg="acme certificate ready"`) || !strings.Contains(l, "domain="+acmeDomain) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if s, ok := strings.CutPrefix(f, "serial="); ok {
				return s
			}
		}
	}
	t.Fatal(`no "acme certificate ready" record with domain and serial in the proxy log`)
	return ""
}

// acmeTransfer logs in through the proxy with explicit FTPS, verifying chain and name on
// every handshake (control and data), uploads and downloads a file, and returns the serial
// of the leaf (the same on every handshake).
func acmeTransfer(t *testing.T, addr string, roots *x509.CertPool, name string) string {
	t.Helper()
	var mu sync.Mutex
	var serials []string
	cc := &tls.Config{
		ServerName:         acmeDomain,
		RootCAs:            roots,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		// Runs after the standard verification, on every handshake, resumed ones too.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 {
				return errors.New("no verified chain")
			}
			// The pool holds only pebble's root: a chain of 3 means the proxy sent the
			// intermediate too.
			if n := len(cs.VerifiedChains[0]); n < 3 {
				return fmt.Errorf("verified chain of %d certificates, want leaf, intermediate, root", n)
			}
			mu.Lock()
			serials = append(serials, cs.PeerCertificates[0].SerialNumber.Text(16))
			mu.Unlock()
			return nil
		},
	}
	c, err := ftp.Dial(addr, ftp.DialWithExplicitTLS(cc), ftp.DialWithTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("AUTH TLS with verification of %s: %v", acmeDomain, err)
	}
	defer c.Quit()
	if err := c.Login(peers.User, peers.Password); err != nil {
		t.Fatalf("login: %v", err)
	}
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i*7 + len(name))
	}
	if err := c.Stor(name, bytes.NewReader(data)); err != nil {
		t.Fatalf("STOR %s: %v", name, err)
	}
	r, err := c.Retr(name)
	if err != nil {
		t.Fatalf("RETR %s: %v", name, err)
	}
	back, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("RETR %s: %v", name, err)
	}
	if sum(back) != sum(data) {
		t.Fatalf("RETR %s: %d bytes with sha256 %s, sent %d with %s", name, len(back), sum(back), len(data), sum(data))
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(serials) < 3 {
		t.Fatalf("%d verified handshakes, want control + 2 data", len(serials))
	}
	for _, s := range serials[1:] {
		if s != serials[0] {
			t.Fatalf("serials differ between handshakes: %v", serials)
		}
	}
	return serials[0]
}

// acmeNoSNI: a client that connects by IP sends no SNI; it still gets the certificate for
// the first domain (verified here by hand against the name).
func acmeNoSNI(t *testing.T, addr string, roots *x509.CertPool, serial string) {
	t.Helper()
	var leafSerial string
	cc := &tls.Config{
		InsecureSkipVerify: true, // no ServerName: verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: acmeDomain, Roots: roots, Intermediates: inter}); err != nil {
				return err
			}
			leafSerial = leaf.SerialNumber.Text(16)
			return nil
		},
	}
	c, err := ftp.Dial(addr, ftp.DialWithExplicitTLS(cc), ftp.DialWithTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("AUTH TLS without SNI: %v", err)
	}
	defer c.Quit()
	if err := c.Login(peers.User, peers.Password); err != nil {
		t.Fatalf("login without SNI: %v", err)
	}
	if leafSerial != serial {
		t.Errorf("without SNI: serial %s, want %s", leafSerial, serial)
	}
}
