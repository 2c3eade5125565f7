package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// serverHandshake runs one server handshake on a loopback listener and reports its error.
func serverHandshake(t *testing.T, server *tls.Config) (addr string, result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		done <- tls.Server(c, server).HandshakeContext(ctx)
	}()
	return ln.Addr().String(), done
}

// handshakePair runs a real server handshake against client over loopback and returns the
// server's and the client's errors.
func handshakePair(t *testing.T, server *tls.Config, client func(c net.Conn) error) (srvErr, cliErr error) {
	t.Helper()
	addr, done := serverHandshake(t, server)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cliErr = client(c)
	srvErr = <-done
	c.Close()
	return srvErr, cliErr
}

// TestFailureReason makes each failure happen for real (Go's client and server over loopback,
// and OpenSSL's client for the TLS 1.3 certificate rejection) and checks the words.
func TestFailureReason(t *testing.T) {
	cert, _, err := SelfSigned("ftp.example.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"ftp"}}
	goClient := func(cc *tls.Config) func(net.Conn) error {
		return func(c net.Conn) error { return tls.Client(c, cc).Handshake() }
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	trusting := x509.NewCertPool()
	trusting.AddCert(leaf)
	for _, tc := range []struct {
		name     string
		client   func(net.Conn) error
		srv, cli string // the reason on each side ("" = not checked)
	}{
		// Go's client answers any verification failure with the bad_certificate alert.
		{name: "unknown CA, TLS 1.3", client: goClient(&tls.Config{ServerName: "ftp.example.test"}), srv: FailBadCert, cli: FailUnknownCA},
		{name: "unknown CA, TLS 1.2", client: goClient(&tls.Config{ServerName: "ftp.example.test", MaxVersion: tls.VersionTLS12}), srv: FailBadCert, cli: FailUnknownCA},
		{name: "name mismatch", client: goClient(&tls.Config{ServerName: "other.example.test", RootCAs: trusting}), cli: FailNameMismatch, srv: FailBadCert},
		{name: "no shared version", client: goClient(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}), srv: FailNoVersion, cli: FailNoVersion},
		{name: "no shared ALPN", client: goClient(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}), srv: FailNoALPN, cli: FailNoALPN},
		{name: "not TLS", client: func(c net.Conn) error { _, err := io.WriteString(c, "USER x\r\nPASS y\r\n"); return err }, srv: FailNotTLS},
		{name: "silent client", client: func(c net.Conn) error { time.Sleep(700 * time.Millisecond); return nil }, srv: FailTimeout},
		{name: "client leaves", client: func(c net.Conn) error { return c.Close() }, srv: FailClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := handshakePair(t, srv, tc.client)
			if got := FailureReason(s); tc.srv != "" && got != tc.srv {
				t.Errorf("server side: %q from %v, want %q", got, s, tc.srv)
			}
			if got := FailureReason(c); tc.cli != "" && got != tc.cli {
				t.Errorf("client side: %q from %v, want %q", got, c, tc.cli)
			}
		})
	}
	t.Run("openssl rejects the certificate, TLS 1.3", func(t *testing.T) {
		addr, done := serverHandshake(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Stdin is /dev/null: s_client ends at once after the handshake, or its failure.
		exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-tls1_3",
			"-verify_return_error", "-servername", "ftp.example.test").Run()
		s := <-done
		if got := FailureReason(s); got != FailCertRejected && got != FailUnknownCA {
			t.Fatalf("server side: %q from %v", got, s)
		}
		t.Logf("%v -> %q", s, FailureReason(s))
	})
	if FailureReason(nil) != "" || FailureReason(errors.New("something new")) != FailOther {
		t.Fatal("nil or unknown errors")
	}
	if got := FailureReason(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)); got != FailTimeout {
		t.Fatalf("wrapped deadline: %q", got)
	}
	for _, r := range FailureReasons {
		if strings.TrimSpace(r) != r || r == "" {
			t.Fatalf("reason %q", r)
		}
	}
}
