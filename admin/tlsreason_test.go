package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
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

// handshake runs a real TLS handshake over loopback TCP and returns each side's error. A nil
// client config makes the client write clientBytes raw (or nothing) and close.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config, clientBytes string) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		done <- tls.Server(c, srv).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
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

// TestTLSFailureReason classifies the errors of real failed handshakes, on both sides, into
// the bounded reason set of ftpsproxy_tls_handshake_failures_total.
func TestTLSFailureReason(t *testing.T) {
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
			wantSrv: TLSReasonBadCertificate, wantCli: TLSReasonUnknownCA}, // Go clients send bad_certificate for any verify error
		{name: "wrong name", srv: serve(good), cli: &tls.Config{ServerName: "other.test", RootCAs: goodRoots},
			wantSrv: TLSReasonBadCertificate, wantCli: TLSReasonBadCertificate},
		{name: "expired certificate", srv: serve(expired), cli: &tls.Config{ServerName: "ftp.test", RootCAs: expiredRoots},
			wantSrv: TLSReasonBadCertificate, wantCli: TLSReasonExpired},
		{name: "no shared version", srv: &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS13},
			cli:     &tls.Config{ServerName: "ftp.test", RootCAs: goodRoots, MaxVersion: tls.VersionTLS12},
			wantSrv: TLSReasonNoVersion, wantCli: TLSReasonNoVersion},
		{name: "no shared cipher", srv: &tls.Config{Certificates: []tls.Certificate{good}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			cli: &tls.Config{ServerName: "ftp.test", RootCAs: goodRoots, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}},
			wantSrv: TLSReasonNoCipher, wantCli: TLSReasonNoCipher},
		{name: "plain FTP on a TLS port", srv: serve(good), raw: "USER anonymous\r\n", wantSrv: TLSReasonNotTLS},
		{name: "client closes at once", srv: serve(good), raw: "", wantSrv: TLSReasonEOF},
		{name: "client never speaks", srv: serve(good), raw: "hang", wantSrv: TLSReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvErr, cliErr := handshake(t, tc.srv, tc.cli, tc.raw)
			if srvErr == nil {
				t.Fatal("server handshake succeeded")
			}
			if got := TLSFailureReason(srvErr); got != tc.wantSrv {
				t.Errorf("server side %q: reason %q, want %q", srvErr, got, tc.wantSrv)
			}
			if tc.cli == nil {
				return
			}
			if cliErr == nil {
				t.Fatal("client handshake succeeded")
			}
			if got := TLSFailureReason(cliErr); got != tc.wantCli {
				t.Errorf("client side %q: reason %q, want %q", cliErr, got, tc.wantCli)
			}
		})
	}
	// What crypto/tls reports when a TLS 1.3 OpenSSL client rejects the certificate (its alert
	// comes unencrypted); e2e TestDashboardMetricsExist makes curl do it for real.
	if got := TLSFailureReason(errors.New("local error: tls: bad record MAC")); got != TLSReasonBadCertificate {
		t.Errorf("bad record MAC: %q, want bad_certificate", got)
	}
	if got := TLSFailureReason(errors.New("tls: something new")); got != TLSReasonOther {
		t.Errorf("unknown error: %q, want other", got)
	}
	if got := TLSFailureReason(nil); got != "" {
		t.Errorf("nil error: %q", got)
	}
}
