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
// kernel splices); a TLS side goes through the pooled buffer, in bulk when the TLS runs over a
// recordConn (as on data connections), on the source side or the destination side. Every
// path copies every byte and half-closes the destination.
func TestCopyHalfPaths(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes: several buffers
	cert, _, err := tlsterm.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	scfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	ccfg := &tls.Config{InsecureSkipVerify: true}
	for _, mode := range []string{"plain", "tls source", "tls source over recordConn", "tls destination over recordConn"} {
		srcW, srcR := tcpPair(t)
		dstW, dstR := tcpPair(t)
		var src, dst net.Conn = srcR, dstW
		var read io.Reader = dstR
		switch mode {
		case "plain":
			go func() { srcW.Write(payload); srcW.CloseWrite() }()
		case "tls source", "tls source over recordConn":
			var under net.Conn = srcR
			if mode == "tls source over recordConn" {
				under = newRecordConn(srcR)
			}
			src = tls.Server(under, scfg)
			cli := tls.Client(srcW, ccfg)
			go func() { cli.Write(payload); cli.CloseWrite() }()
		case "tls destination over recordConn":
			go func() { srcW.Write(payload); srcW.CloseWrite() }()
			dst = tls.Server(newRecordConn(dstW), scfg)
			read = tls.Client(dstR, ccfg)
		}
		if got := spliceable(dst, src); got != (mode == "plain") {
			t.Fatalf("%s: spliceable = %v", mode, got)
		}
		got := make(chan []byte)
		go func() { b, _ := io.ReadAll(read); got <- b }()
		n, err := copyHalf(dst, src, bigBufs)
		if err != nil || n != int64(len(payload)) {
			t.Fatalf("%s: copied %d, %v", mode, n, err)
		}
		if b := <-got; sha256.Sum256(b) != sha256.Sum256(payload) {
			t.Fatalf("%s: %d bytes arrived, content differs", mode, len(b))
		}
	}
}
