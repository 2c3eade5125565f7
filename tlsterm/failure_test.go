package tlsterm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os/exec"
	"testing"
	"time"
)

// testCert is a self-signed ECDSA certificate for name, valid from notBefore to notAfter.
func testCert(t *testing.T, name string, notBefore, notAfter time.Time) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// serverSide runs the server side of one handshake on a loopback listener, with a 500 ms
// deadline, and reports its error.
func serverSide(t *testing.T, srv *tls.Config) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		ch <- tls.Server(c, srv).Handshake()
	}()
	return ln.Addr().String(), ch
}

// handshake runs a real TLS handshake over loopback TCP and returns each side's error. A nil
// client config makes the client write clientBytes raw (or nothing) and close.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config, clientBytes string) (serverErr, clientErr error) {
	t.Helper()
	addr, done := serverSide(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	switch {
	case cli != nil:
		c.SetDeadline(time.Now().Add(5 * time.Second))
		clientErr = tls.Client(c, cli).Handshake()
	case clientBytes == "hang":
		serverErr = <-done // the server's deadline passes
		return serverErr, nil
	default:
		c.Write([]byte(clientBytes))
		c.Close()
	}
	return <-done, clientErr
}

// TestFailureReason classifies the errors of real failed handshakes, on both sides, into
// the bounded reason set (it labels ftpsproxy_tls_handshake_failures_total), each with words.
func TestFailureReason(t *testing.T) {
	now := time.Now()
	good, goodRoots := testCert(t, "ftp.test", now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredRoots := testCert(t, "ftp.test", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	serve := func(c tls.Certificate) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{c}} }
	for _, tc := range []struct {
		name             string
		srv, cli         *tls.Config
		raw              string
		wantSrv, wantCli string // "" : that side's error is not checked
	}{
		{name: "client does not trust the CA", srv: serve(good), cli: &tls.Config{ServerName: "ftp.test", RootCAs: x509.NewCertPool()},
			wantSrv: FailBadCertificate, wantCli: FailUnknownCA}, // Go clients send bad_certificate for any verify error
		{name: "wrong name", srv: serve(good), cli: &tls.Config{ServerName: "other.test", RootCAs: goodRoots},
			wantSrv: FailBadCertificate, wantCli: FailBadCertificate},
		{name: "expired certificate", srv: serve(expired), cli: &tls.Config{ServerName: "ftp.test", RootCAs: expiredRoots},
			wantSrv: FailBadCertificate, wantCli: FailExpired},
		{name: "no shared version", srv: &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS13},
			cli:     &tls.Config{ServerName: "ftp.test", RootCAs: goodRoots, MaxVersion: tls.VersionTLS12},
			wantSrv: FailNoVersion, wantCli: FailNoVersion},
		{name: "no shared cipher", srv: &tls.Config{Certificates: []tls.Certificate{good}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			cli: &tls.Config{ServerName: "ftp.test", RootCAs: goodRoots, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}},
			wantSrv: FailNoCipher, wantCli: FailNoCipher},
		{name: "plain FTP on a TLS port", srv: serve(good), raw: "USER anonymous\r\n", wantSrv: FailNotTLS},
		{name: "client closes at once", srv: serve(good), raw: "", wantSrv: FailEOF},
		{name: "client never speaks", srv: serve(good), raw: "hang", wantSrv: FailTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvErr, cliErr := handshake(t, tc.srv, tc.cli, tc.raw)
			if srvErr == nil {
				t.Fatal("server handshake succeeded")
			}
			if got := FailureReason(srvErr); got != tc.wantSrv {
				t.Errorf("server side %q: reason %q, want %q", srvErr, got, tc.wantSrv)
			}
			if tc.cli == nil {
				return
			}
			if cliErr == nil {
				t.Fatal("client handshake succeeded")
			}
			if got := FailureReason(cliErr); got != tc.wantCli {
				t.Errorf("client side %q: reason %q, want %q", cliErr, got, tc.wantCli)
			}
		})
	}
	// What crypto/tls reports when a TLS 1.3 OpenSSL client rejects the certificate (its alert
	// comes unencrypted); e2e TestDashboardMetricsExist makes curl do it for real.
	if got := FailureReason(errors.New("local error: tls: bad record MAC")); got != FailBadCertificate {
		t.Errorf("bad record MAC: %q, want bad_certificate", got)
	}
	if got := FailureReason(errors.New("tls: something new")); got != FailOther {
		t.Errorf("unknown error: %q, want other", got)
	}
	if got := FailureReason(nil); got != "" {
		t.Errorf("nil error: %q", got)
	}
}

// TestFailureReasonOpenSSL: a real TLS 1.3 OpenSSL client that refuses the certificate makes
// crypto/tls report "local error: tls: bad record MAC"; that is a bad or refused certificate.
func TestFailureReasonOpenSSL(t *testing.T) {
	now := time.Now()
	good, _ := testCert(t, "ftp.test", now.Add(-time.Hour), now.Add(time.Hour))
	addr, done := serverSide(t, &tls.Config{Certificates: []tls.Certificate{good}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stdin is /dev/null: s_client ends at once after the handshake, or its failure.
	exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-tls1_3",
		"-verify_return_error", "-servername", "ftp.test").Run()
	err := <-done
	if got := FailureReason(err); got != FailBadCertificate || FailureWords(got) != "bad or refused certificate" {
		t.Fatalf("%v: %q (%q)", err, got, FailureWords(got))
	}
	for _, r := range FailureReasons {
		if w := FailureWords(r); w == "" || w == r && r != FailTimeout && r != FailOther {
			t.Fatalf("reason %q has no words", r)
		}
	}
}
