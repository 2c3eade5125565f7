package admin

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestWithProxy runs a real proxy.Server with Metrics as its Observer in front of an
// in-process FTP server, drives it with a real client, and checks what the admin side sees:
// counters, the transfer log, ProxySource's view and /healthz.
func TestWithProxy(t *testing.T) {
	root := t.TempDir()
	be, err := demoftp.Start(demoftp.Config{Addr: "127.0.0.1:0", Root: root, User: "demo", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Stop() })

	pool, err := balancer.NewPool(balancer.PoolConfig{Name: "default", Policy: "round_robin",
		Backends: []balancer.BackendConfig{{Address: be.Addr(), FixPasvAddress: true, MaxSessions: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	xlog := filepath.Join(t.TempDir(), "xferlog")
	tl, err := OpenTransferLog(xlog)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	m := NewMetrics()
	m.SetTransferLog(tl)
	srv := runProxy(t, proxy.Config{
		// No name: the proxy and ProxySource must both fall back to the address.
		Listeners: []proxy.ListenerConfig{{Address: "127.0.0.1:0", Pool: "default", Banner: "admin test"}},
		Data:      proxy.DataConfig{PortRange: nat.PortRange{First: 43100, Last: 43199}, ConnectTimeout: 5 * time.Second},
		Pools:     []*balancer.Pool{pool},
		Limits:    proxy.Limits{IdleTimeout: time.Minute, LoginTimeout: 10 * time.Second, BackendTimeout: 5 * time.Second},
	}, m)
	src := ServerSource(srv)
	as := startServer(t, src, m)
	base := "http://" + as.Addr().String()
	proxyAddr := srv.Addrs()[0].String()

	ls := src.Listeners()
	if len(ls) != 1 || ls[0].Name != "127.0.0.1:0" || ls[0].Address != proxyAddr || ls[0].TLS != "none" || ls[0].Pool != "default" {
		t.Errorf("Listeners() = %+v", ls)
	}
	if r := src.PortRange(); r.Len() != 100 {
		t.Errorf("PortRange() = %v", r)
	}

	c, err := ftp.Dial(proxyAddr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("demo", "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	c.Quit()
	c, err = ftp.Dial(proxyAddr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("demo", "secret"); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("ftpsproxy "), 1000)
	if err := c.Stor("hello world.txt", bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("hello world.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, payload) {
		t.Fatalf("download differs: %d bytes", len(got))
	}
	if _, err := c.List("/"); err != nil {
		t.Fatal(err)
	}
	// The failed login's session ends when the proxy has read its QUIT, which the client does
	// not wait for: give it a moment.
	for deadline := time.Now().Add(2 * time.Second); src.Sessions() != 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if src.Sessions() != 1 || pool.Backends[0].Active() != 1 {
		t.Errorf("during the session: Sessions() = %d, backend active %d", src.Sessions(), pool.Backends[0].Active())
	}
	_, _, page := get(t, base+"/")
	if !strings.Contains(page, be.Addr()) || backendRows(t, page)[be.Addr()] != "UP" {
		t.Error("status page does not show the backend UP")
	}
	c.Quit()
	waitFor(t, func() bool { return src.Sessions() == 0 })

	code, _, body := get(t, base+"/metrics")
	e, err := parseExposition(body)
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	n := int64(len(payload))
	for k, v := range map[string]float64{
		key("ftpsproxy_sessions_total", "listener", "127.0.0.1:0"):                        2,
		key("ftpsproxy_sessions_active", "listener", "127.0.0.1:0"):                       0,
		key("ftpsproxy_logins_total", "outcome", "ok"):                                    1,
		key("ftpsproxy_logins_total", "outcome", "failed"):                                1,
		key("ftpsproxy_backend_sessions_total", "pool", "default", "backend", be.Addr()):  1,
		key("ftpsproxy_backend_active_sessions", "pool", "default", "backend", be.Addr()): 0,
		key("ftpsproxy_backend_up", "pool", "default", "backend", be.Addr()):              1,
		key("ftpsproxy_backend_max_sessions", "pool", "default", "backend", be.Addr()):    5,
		key("ftpsproxy_transfers_total", "direction", "upload", "result", "complete"):     1,
		key("ftpsproxy_transfers_total", "direction", "download", "result", "complete"):   2, // RETR and LIST
		key("ftpsproxy_transfer_bytes_total", "direction", "upload"):                      float64(n),
		"ftpsproxy_data_ports_in_use":                                                     0,
		"ftpsproxy_data_ports_range_size":                                                 100,
	} {
		if got, ok := e.values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if dl := e.values[key("ftpsproxy_transfer_bytes_total", "direction", "download")]; dl <= float64(n) {
		t.Errorf("download bytes %v, want the file (%d) plus the listing", dl, n)
	}

	lines := readLines(t, xlog)
	if len(lines) != 2 {
		t.Fatalf("transfer log has %d lines, want 2 (STOR, RETR):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, dir := range []string{"i", "o"} {
		x := parseXferlog(t, lines[i])
		if x.Direction != dir || x.Filename != "hello_world.txt" || x.Size != n || x.Host != "127.0.0.1" ||
			x.User != "demo" || x.Done != "c" || x.Type != "b" {
			t.Errorf("line %d: %+v", i, x)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "hello world.txt")); err != nil {
		t.Errorf("upload did not reach the backend: %v", err)
	}

	// Health follows the backend and draining.
	if code, _, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	setHealth(t, pool, pool.Backends[0], false)
	if code, _, _ := get(t, base+"/healthz"); code != 503 {
		t.Errorf("/healthz with the only backend down = %d, want 503", code)
	}
	if code, _, _ := get(t, base+"/healthz/default"); code != 503 {
		t.Errorf("/healthz/default with its only backend down = %d, want 503", code)
	}
	setHealth(t, pool, pool.Backends[0], true)
	src.Draining.Store(true)
	if code, _, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/healthz while draining = %d %q", code, body)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
