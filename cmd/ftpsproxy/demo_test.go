package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// TestDemoServesThroughTheLoader starts the demo (its embedded config goes through
// config.Load and the same build as -config) and downloads its file with a Go client over
// explicit FTPS, trusting the certificate the demo wrote.
func TestDemoServesThroughTheLoader(t *testing.T) {
	ports := peers.FreePortRange(t, 10)
	// The config refuses port 0, as for any listener: take a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	d, err := startDemo(listen, fmt.Sprintf("%d-%d", ports[0], ports[1]), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	if got := d.proxy.Config().Listeners[0].Banner; got != "ftpsproxy demo ready" {
		t.Errorf("banner %q: the demo config was not the one loaded", got)
	}
	certPEM, err := os.ReadFile(d.certPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	c, err := ftp.Dial(d.addr(), ftp.DialWithTimeout(5*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(demoUser, demoPassword); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("Hello from the ftpsproxy demo backend.\n"))
	if sha256.Sum256(body) != want {
		t.Fatalf("hello.txt = %q", body)
	}
}

// TestDemoRefusesBadPorts shows a bad -ports reported by the loader, with its key.
func TestDemoRefusesBadPorts(t *testing.T) {
	_, err := startDemo("127.0.0.1:2121", "80-90", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `data.port_range: port range "80-90" must lie within 1024-65535`) {
		t.Fatalf("err = %v", err)
	}
}
