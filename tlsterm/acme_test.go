package tlsterm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// End to end against a real ACME CA: pebble, with pebble-challtestsrv as its DNS (every name
// resolves to 127.0.0.1), so pebble's HTTP-01 validation really connects to our challenge
// server. Both are installed with `go install` into a cache directory on first use.

const (
	pebbleModule  = "github.com/letsencrypt/pebble/v2"
	pebbleVersion = "v2.10.1"
	acmeDomain    = "ftp.test.example"
)

func TestACME(t *testing.T) {
	start := time.Now()
	peb := startPebble(t)
	t.Logf("pebble ready after %v", time.Since(start).Round(time.Millisecond))

	logs := &logRecorder{}
	log := slog.New(logs.handler())
	opts := ACMEOptions{
		Domains:     []string{acmeDomain},
		Email:       "ops@test.example",
		CA:          peb.directory,
		CARoot:      peb.minicaRoot,
		Storage:     t.TempDir(),
		HTTPAddress: peb.httpAddress,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our log:\n%s", logs.text())
			t.Logf("pebble log:\n%s", peb.out.String())
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
	if n := peb.count("Added order"); n != 1 {
		t.Fatalf("pebble saw %d orders, want 1", n)
	}
	if !strings.Contains(peb.out.String(), "Attempting to validate w/ HTTP: http://"+acmeDomain+":") {
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
	resp, err := http.Get("http://" + peb.httpAddress + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the challenge server: %s, want 404", resp.Status)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(peb.get(t, peb.mgmt+"/roots/0")) {
		t.Fatal("no root from pebble's management endpoint")
	}
	serial := handshakeACME(t, a, roots)

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
	if n := peb.count("Added order"); n != 1 {
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

// pebbleEnv is a running pebble with its DNS.
type pebbleEnv struct {
	directory   string // ACME directory URL
	mgmt        string // https://host:port of the management API
	minicaRoot  string // root of pebble's own HTTPS certificate
	httpAddress string // where pebble validates HTTP-01 (our challenge server's address)
	client      *http.Client
	out         *lockedBuffer
}

func (p *pebbleEnv) count(s string) int { return strings.Count(p.out.String(), s) }

func (p *pebbleEnv) get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := p.client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

func startPebble(t *testing.T) *pebbleEnv {
	t.Helper()
	pebbleBin, challBin := pebbleBinaries(t)
	modDir := pebbleModuleDir(t)

	dnsPort := freeUDPTCPPort(t)
	httpPort := freePort(t)
	acmeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &pebbleEnv{
		directory:   "https://" + acmeAddr + "/dir",
		mgmt:        "https://" + mgmtAddr,
		minicaRoot:  filepath.Join(modDir, "test", "certs", "pebble.minica.pem"),
		httpAddress: fmt.Sprintf("127.0.0.1:%d", httpPort),
		out:         &lockedBuffer{},
	}

	dir := t.TempDir()
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    filepath.Join(modDir, "test", "certs", "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test", "certs", "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        freePort(t), // TLS-ALPN-01 is disabled on our side
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "90 days", "validityPeriod": 90 * 24 * 3600},
		},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// Only the DNS part of the challenge test server: A queries answer 127.0.0.1, AAAA
	// nothing (pebble dials the first address it gets, and AAAA comes first).
	startProcess(t, p.out, challBin,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	startProcess(t, p.out, pebbleBin, "-config", cfgFile,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	rootPEM, err := os.ReadFile(p.minicaRoot)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	p.client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	t.Cleanup(p.client.CloseIdleConnections)

	// Ready when the DNS answers and the directory is served.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addrs, err := r.LookupHost(ctx, acmeDomain)
		cancel()
		if err == nil && len(addrs) > 0 && addrs[0] == "127.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble-challtestsrv DNS not answering: %v %v\n%s", addrs, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		resp, err := p.client.Get(p.directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not serving %s: %v\n%s", p.directory, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// startProcess runs a helper until the test ends, its output into out.
func startProcess(t *testing.T, out io.Writer, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// pebbleBinaries returns pebble and pebble-challtestsrv, installed with `go install` into a
// cache directory the first time (they are reused afterwards).
func pebbleBinaries(t *testing.T) (pebble, challtestsrv string) {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "ftpsproxy-test-bin", "pebble-"+pebbleVersion)
	pebble = filepath.Join(dir, "pebble")
	challtestsrv = filepath.Join(dir, "pebble-challtestsrv")
	if isFile(pebble) && isFile(challtestsrv) {
		return pebble, challtestsrv
	}
	t0 := time.Now()
	goTool(t, []string{"GOBIN=" + dir}, "install",
		pebbleModule+"/cmd/pebble@"+pebbleVersion,
		pebbleModule+"/cmd/pebble-challtestsrv@"+pebbleVersion)
	if !isFile(pebble) || !isFile(challtestsrv) {
		t.Fatalf("go install did not produce %s and %s", pebble, challtestsrv)
	}
	t.Logf("installed pebble %s into %s in %v", pebbleVersion, dir, time.Since(t0).Round(time.Millisecond))
	return pebble, challtestsrv
}

// pebbleModuleDir returns pebble's module directory (its test certificates), downloading
// the module if needed, outside this module so go.mod is not touched.
func pebbleModuleDir(t *testing.T) string {
	t.Helper()
	out := goTool(t, nil, "mod", "download", "-json", pebbleModule+"@"+pebbleVersion)
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("locating %s@%s: %v %s\n%s", pebbleModule, pebbleVersion, err, m.Error, out)
	}
	return m.Dir
}

// goTool runs the go command in an empty directory (no go.mod in scope).
func goTool(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cannot get pebble: go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeUDPTCPPort returns a loopback port free for both UDP and TCP (a DNS server binds both).
func freeUDPTCPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
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
