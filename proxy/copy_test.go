package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestCopyHalfPaths: plain TCP on both sides is handed to io.Copy as *net.TCPConn (so the
// kernel splices); a TLS side goes through the pooled buffer. Both copy every byte and
// half-close the destination.
func TestCopyHalfPaths(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes: several buffers
	for _, withTLS := range []bool{false, true} {
		srcW, srcR := tcpPair(t)
		dstW, dstR := tcpPair(t)
		var src net.Conn = srcR
		if withTLS {
			cert, _, err := tlsterm.SelfSigned("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			srv := tls.Server(srcR, &tls.Config{Certificates: []tls.Certificate{*cert}})
			cli := tls.Client(srcW, &tls.Config{InsecureSkipVerify: true})
			go func() { cli.Write(payload); cli.CloseWrite() }()
			src = srv
		} else {
			go func() { srcW.Write(payload); srcW.CloseWrite() }()
		}
		if got := spliceable(dstW, src); got == withTLS {
			t.Fatalf("tls=%v: spliceable = %v", withTLS, got)
		}
		got := make(chan []byte)
		go func() { b, _ := io.ReadAll(dstR); got <- b }()
		n, err := copyHalf(dstW, src, bigBufs)
		if err != nil || n != int64(len(payload)) {
			t.Fatalf("tls=%v: copied %d, %v", withTLS, n, err)
		}
		if b := <-got; sha256.Sum256(b) != sha256.Sum256(payload) {
			t.Fatalf("tls=%v: %d bytes arrived, content differs", withTLS, len(b))
		}
	}
}
