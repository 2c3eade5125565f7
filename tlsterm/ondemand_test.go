package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/pebble"
)

// askService permits the names in ok (200) and refuses the rest (404), counting queries.
func askService(t *testing.T, ok ...string) (string, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		for _, name := range ok {
			if r.URL.Query().Get("domain") == name {
				return
			}
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func TestOnDemandDecision(t *testing.T) {
	ask, queries := askService(t, "asked.example")
	redirect := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/", http.StatusFound))
	defer redirect.Close()
	d := newOnDemand(OnDemandOptions{Allow: []string{"*.customers.example", "exact.example"}, Ask: ask, PerMinute: 1, Burst: 3}, []string{"managed.example"})
	ctx := context.Background()
	tests := []struct {
		name string
		want error
	}{
		{"managed.example", nil}, // no token spent
		{"a.customers.example", nil},
		{"EXACT.example", nil},
		{"asked.example", nil},                     // the ask service says yes; third token
		{"b.customers.example", ErrRateLimited},    // burst of 3 spent
		{"a.b.customers.example", ErrNotPermitted}, // "*" is one label; ask says 404
		{"other.example", ErrNotPermitted},         // ask says 404
		{"*.customers.example", ErrNotPermitted},
		{"", ErrNotPermitted},
	}
	for _, tt := range tests {
		err := d.decide(ctx, tt.name)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("decide(%q) = %v, want %v", tt.name, err, tt.want)
		}
	}
	// asked, a.b.customers and other: names outside allow that are well-formed.
	if queries.Load() != 3 {
		t.Errorf("ask service queried %d times, want 3 (well-formed names outside allow only)", queries.Load())
	}
	r := newOnDemand(OnDemandOptions{Ask: redirect.URL}, nil)
	if err := r.decide(ctx, "x.example"); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("a redirecting ask service permitted: %v", err)
	}
	for _, bad := range []OnDemandOptions{{}, {Allow: []string{"["}}, {Ask: "ftp://x/"}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) passed", bad)
		}
	}
}

// TestACMEOnDemand issues certificates from pebble for three names: one managed from the
// start, one from the allow list and one the ask service permits, all on their first
// handshake. A refused name and a name over the rate limit get no order.
func TestACMEOnDemand(t *testing.T) {
	peb := pebble.Start(t, pebble.Options{})
	ask, _ := askService(t, "c.test.example")
	logs := &logRecorder{}
	a, err := NewACME(context.Background(), ACMEOptions{
		Domains:     []string{"a.test.example"},
		Email:       "ops@test.example",
		CA:          peb.Directory,
		CARoot:      peb.MinicaRoot,
		Storage:     t.TempDir(),
		HTTPAddress: peb.HTTPAddress,
		OnDemand:    OnDemandOptions{Allow: []string{"b.test.example", "*.burst.example"}, Ask: ask, PerMinute: 1, Burst: 2},
	}, slog.New(logs.handler()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our log:\n%s", logs.text())
		}
	})
	srv, err := NewServer(ServerOptions{Source: a})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, srv.Config())
	roots := peb.IssuerRoots(t)
	for _, name := range []string{"a.test.example", "b.test.example", "c.test.example"} {
		leaf, err := leafFor(addr, name, roots)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := leaf.VerifyHostname(name); err != nil {
			t.Fatal(err)
		}
	}
	if n := peb.Orders(); n != 3 {
		t.Fatalf("pebble saw %d orders, want 3", n)
	}
	// Refused by the ask service; then permitted by allow but over the burst of 2.
	for _, name := range []string{"d.test.example", "x.burst.example"} {
		if _, err := leafFor(addr, name, roots); err == nil {
			t.Fatalf("%s: verified certificate served", name)
		}
	}
	if n := peb.Orders(); n != 3 {
		t.Fatalf("pebble saw %d orders after refused names, want 3", n)
	}
	if !logs.has("acme on-demand certificate refused") {
		t.Error("refusals not logged")
	}
}

// serveTLS accepts TLS connections with cfg, completing handshakes, until the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// leafFor runs a verified handshake for name and returns the server's leaf certificate.
func leafFor(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 20 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{ALPN}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}
