package tlsterm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
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

// TestFailureReason: what a real TLS 1.3 client (OpenSSL) that refuses the certificate makes
// crypto/tls report ("local error: tls: bad record MAC") is classified as a bad or refused
// certificate, and every reason has words. The other reasons are classified from real
// handshakes in admin's TestTLSFailureReason, which labels the metric with them.
func TestFailureReason(t *testing.T) {
	cert, _, err := SelfSigned("ftp.example.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"ftp"}}
	t.Run("openssl rejects the certificate, TLS 1.3", func(t *testing.T) {
		addr, done := serverHandshake(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Stdin is /dev/null: s_client ends at once after the handshake, or its failure.
		exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-tls1_3",
			"-verify_return_error", "-servername", "ftp.example.test").Run()
		s := <-done
		if got := FailureReason(s); got != FailBadCertificate || FailureWords(got) != "bad or refused certificate" {
			t.Fatalf("server side: %q (%q) from %v", got, FailureWords(got), s)
		}
	})
	if FailureReason(nil) != "" || FailureReason(errors.New("something new")) != FailOther {
		t.Fatal("nil or unknown errors")
	}
	if got := FailureReason(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)); got != FailTimeout {
		t.Fatalf("wrapped deadline: %q", got)
	}
	for _, r := range FailureReasons {
		if w := FailureWords(r); w == "" || w == r && r != FailTimeout && r != FailOther {
			t.Fatalf("reason %q has no words", r)
		}
	}
}
