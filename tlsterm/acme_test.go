package tlsterm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/pebble"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// End to end against a real ACME CA: pebble, with pebble-challtestsrv as its DNS (every name
// resolves to 127.0.0.1), so pebble's HTTP-01 validation really connects to our challenge
// server (internal/pebble installs and runs them).

const acmeDomain = "ftp.test.example"

func TestACME(t *testing.T) {
	start := time.Now()
	peb := pebble.Start(t, pebble.Options{})
	t.Logf("pebble ready after %v", time.Since(start).Round(time.Millisecond))

	logs := &logRecorder{}
	log := slog.New(logs.handler())
	opts := ACMEOptions{
		Domains:     []string{acmeDomain},
		Email:       "ops@test.example",
		CA:          peb.Directory,
		CARoot:      peb.MinicaRoot,
		Storage:     t.TempDir(),
		HTTPAddress: peb.HTTPAddress,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our log:\n%s", logs.text()) // pebble.Start prints pebble's
		}
	})

	// First start: no certificate in storage, so one order, validated over HTTP-01.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	t0 := time.Now()
	a, err := NewACME(ctx, opts, log)
	if err != nil {
		t.Fatalf("NewACME: %v", err)
	}
	t.Logf("certificate obtained in %v", time.Since(t0).Round(time.Millisecond))
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()
	if n := peb.Orders(); n != 1 {
		t.Fatalf("pebble saw %d orders, want 1", n)
	}
	if !strings.Contains(peb.Log(), "Attempting to validate w/ HTTP: http://"+acmeDomain+":"+strconv.Itoa(peb.HTTPPort)+"/") {
		t.Fatal("pebble did not validate over HTTP-01")
	}
	for _, m := range []string{"obtaining certificate", "served key authentication", "certificate obtained successfully"} {
		if !logs.has(m) {
			t.Errorf("certmagic's %q is missing from our slog log", m)
		}
	}
	if !logs.hasAttr("component", "obtain") {
		t.Error(`the zap logger name did not arrive as attr component="obtain"`)
	}

	// The challenge server answers anything else with 404.
	resp, err := http.Get("http://" + peb.HTTPAddress + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the challenge server: %s, want 404", resp.Status)
	}

	roots := peb.IssuerRoots(t)
	serial := handshakeACME(t, a, roots)
	// What the expiry metric reads: the managed certificate, by domain.
	if cs := a.Certificates(); len(cs) != 1 || cs[0].Name != acmeDomain || time.Until(cs[0].NotAfter) < 24*time.Hour {
		t.Errorf("Certificates() = %+v, want %s valid for more than a day", cs, acmeDomain)
	}

	// Restart on the same storage: the certificate is loaded, not ordered again.
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	mark := logs.mark()
	t1 := time.Now()
	a2, err := NewACME(ctx, opts, log)
	if err != nil {
		t.Fatalf("NewACME after restart: %v", err)
	}
	defer a2.Close()
	t.Logf("restart took %v", time.Since(t1).Round(time.Millisecond))
	if n := peb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders after the restart, want still 1", n)
	}
	for _, m := range []string{"obtaining certificate", "certificate obtained successfully"} {
		if logs.hasSince(mark, m) {
			t.Errorf("certmagic logged %q after the restart: storage was not reused", m)
		}
	}
	if s2 := handshakeACME(t, a2, roots); s2 != serial {
		t.Errorf("serial after restart %s, want %s", s2, serial)
	}
}

// handshakeACME serves a TLS listener with src through NewServer and checks a verified
// handshake with ALPN "ftp", and one without SNI; it returns the leaf's serial.
func handshakeACME(t *testing.T, src CertSource, roots *x509.CertPool) string {
	t.Helper()
	srv, err := NewServer(ServerOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(tcp, srv.Config())
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					io.WriteString(c, "220 ok\r\n")
				}
			}()
		}
	}()

	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", tcp.Addr().String(), &tls.Config{
		ServerName: acmeDomain,
		NextProtos: []string{ALPN},
		RootCAs:    roots,
	})
	if err != nil {
		t.Fatalf("verified handshake for %s: %v", acmeDomain, err)
	}
	defer c.Close()
	cs := c.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		t.Errorf("ALPN %q, want %q", cs.NegotiatedProtocol, ALPN)
	}
	if len(cs.VerifiedChains) == 0 {
		t.Error("no verified chain")
	}
	leaf := cs.PeerCertificates[0]
	if err := leaf.VerifyHostname(acmeDomain); err != nil {
		t.Error(err)
	}
	line := make([]byte, 8)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "220 ok\r\n" {
		t.Errorf("read after handshake: %q, %v", line, err)
	}

	// FTP clients that connect by IP send no SNI: they get the first domain's certificate.
	c2, err := tls.DialWithDialer(d, "tcp", tcp.Addr().String(), &tls.Config{
		InsecureSkipVerify: true, // checked by hand below
		NextProtos:         []string{ALPN},
	})
	if err != nil {
		t.Fatalf("handshake without SNI: %v", err)
	}
	defer c2.Close()
	if got := c2.ConnectionState().PeerCertificates[0]; !got.Equal(leaf) {
		t.Errorf("without SNI got certificate for %v, want %v", got.DNSNames, leaf.DNSNames)
	}
	return leaf.SerialNumber.Text(16)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logRecorder keeps every slog record (message and attrs) and a text rendering of them.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
	buf  lockedBuffer
}

type recHandler struct {
	slog.Handler
	rec   *logRecorder
	attrs []slog.Attr
}

func (l *logRecorder) handler() slog.Handler {
	return recHandler{Handler: slog.NewTextHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}), rec: l}
}

func (h recHandler) Handle(ctx context.Context, r slog.Record) error {
	c := r.Clone()
	c.AddAttrs(h.attrs...)
	h.rec.mu.Lock()
	h.rec.recs = append(h.rec.recs, c)
	h.rec.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{Handler: h.Handler.WithAttrs(as), rec: h.rec, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h recHandler) WithGroup(name string) slog.Handler {
	return recHandler{Handler: h.Handler.WithGroup(name), rec: h.rec, attrs: h.attrs}
}

func (l *logRecorder) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

func (l *logRecorder) hasSince(from int, msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs[from:] {
		if r.Message == msg {
			return true
		}
	}
	return false
}

func (l *logRecorder) has(msg string) bool { return l.hasSince(0, msg) }

func (l *logRecorder) hasAttr(key, value string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		found := false
		r.Attrs(func(a slog.Attr) bool {
			found = a.Key == key && a.Value.String() == value
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

func (l *logRecorder) text() string { return l.buf.String() }

// The zap→slog bridge on its own: levels, logger names, field types, With and namespaces.
func TestACMEZapBridge(t *testing.T) {
	var buf lockedBuffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	zl := newZapLogger(h)
	zl.Debug("hidden")
	if zl.Core().Enabled(zapcore.DebugLevel) || !zl.Core().Enabled(zapcore.InfoLevel) {
		t.Error("Enabled does not follow the slog handler's level")
	}
	zl.Named("obtain").With(zap.String("identifier", "a.example")).Info("certificate obtained successfully",
		zap.Int("n", 3), zap.Bool("ok", true), zap.Duration("took", 1500*time.Millisecond),
		zap.Error(errors.New("boom")), zap.Strings("names", []string{"a", "b"}), zap.Float64("f", 0.5),
		zap.Error(nil), zap.Namespace("ns"), zap.String("inner", "x"))
	zl.Warn("w")
	zl.Error("e")
	zl.DPanic("d") // development mode is off: logged at error, no panic

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), buf.String())
	}
	got, _ := json.Marshal(lines[0])
	want := `{"component":"obtain","f":0.5,"identifier":"a.example","level":"INFO","msg":"certificate obtained successfully","n":3,"names":["a","b"],"error":"boom","ns":{"inner":"x"},"ok":true,"took":1500000000}`
	var wm map[string]any
	json.Unmarshal([]byte(want), &wm)
	wantJ, _ := json.Marshal(wm)
	if string(got) != string(wantJ) {
		t.Errorf("got  %s\nwant %s", got, wantJ)
	}
	for i, lvl := range []string{"WARN", "ERROR", "ERROR"} {
		if lines[i+1]["level"] != lvl {
			t.Errorf("line %d level %v, want %s", i+1, lines[i+1]["level"], lvl)
		}
	}
}
